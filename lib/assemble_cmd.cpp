#include "assemble_cmd.hpp"

#include <cstdio>

#include "catalog.hpp"
#include "cli.hpp"
#include "json.hpp"
#include "progress.hpp"

namespace planb {

Status assemble_main(AssembleCmdOptions& o) {
  o.assemble.progress = !o.json;
  PB_ASSIGN(AssembleReport rep, assemble(o.assemble));
  if (o.json) {
    std::vector<std::string> items;
    for (const auto& b : rep.bundles) {
      JsonObject j;
      j.add("name", b.name).add("host", b.host).add("sequence", b.sequence).add("bytes", b.bytes).add("state", b.state);
      if (!b.kind.empty()) j.add("kind", b.kind);
      if (!b.manifest.empty()) j.add("manifest", b.manifest).add("full", b.full);
      if (b.state == "applied") j.add("objects", b.objects).add("deltas", b.deltas);
      if (b.ticket) j.add("ticket", b.ticket);
      if (b.code) j.add("exit_code", b.code);
      if (!b.reason.empty()) j.add("reason", b.reason);
      j.add("seconds", b.seconds);
      items.push_back(j.str());
    }
    std::vector<std::string> locked;
    for (const auto& h : rep.locked_hosts) locked.push_back("\"" + json_escape(h) + "\"");
    std::printf("%s\n", JsonObject()
                            .add("server", rep.server)
                            .add("applied", int64_t(rep.applied))
                            .add("already_applied", int64_t(rep.already))
                            .add("refused", int64_t(rep.refused))
                            .add("failed", int64_t(rep.failed))
                            .add_raw("locked_hosts", json_array(locked))
                            .add("seconds", rep.seconds)
                            .add_raw("bundles", json_array(items))
                            .str().c_str());
  } else {
    for (const auto& b : rep.bundles) {
      if (b.state == "applied")
        std::printf("applied %s (%s snapshot %llu, %s, %s, %llu objects, %llu deltas) in %.2f s\n", b.name.c_str(),
                    b.host.c_str(), static_cast<unsigned long long>(b.sequence), b.full ? "full" : "incremental",
                    human_bytes(b.bytes).c_str(), static_cast<unsigned long long>(b.objects),
                    static_cast<unsigned long long>(b.deltas), b.seconds);
      else if (b.state == "already_applied")
        std::printf("already applied %s (%s snapshot %llu: recorded by this run)\n", b.name.c_str(), b.host.c_str(),
                    static_cast<unsigned long long>(b.sequence));
      else if (b.state == "full_bundle_needed")
        std::printf("full bundle needed %s (%s snapshot %llu, ticket %lld): %s\n", b.name.c_str(), b.host.c_str(),
                    static_cast<unsigned long long>(b.sequence), static_cast<long long>(b.ticket), b.reason.c_str());
      else if (b.state == "refused")
        std::printf("refused %s (%s, ticket %lld): %s\n", b.name.c_str(), b.kind.c_str(),
                    static_cast<long long>(b.ticket), b.reason.c_str());
      else
        print_warning("planb-assemble", b.reason);
    }
    for (const auto& h : rep.locked_hosts)
      std::printf("skipped host %s: another planb-assemble is working on it\n", h.c_str());
    if (rep.bundles.empty() && rep.locked_hosts.empty())
      std::printf("nothing to assemble in %s/inbox\n", rep.server.c_str());
    else
      std::printf("%d applied, %d already applied, %d refused, %d failed in %.2f s\n", rep.applied, rep.already,
                  rep.refused, rep.failed, rep.seconds);
  }
  std::fflush(stdout);
  int code = assemble_exit_code(rep);
  if (code == kExitOk) return {};
  if (rep.failed) return rep.first_failure;
  if (code == kExitLocked) return make_error(code, "failed to lock " + std::to_string(rep.locked_hosts.size()) +
                                                       " host(s): in use by another planb-assemble");
  return make_error(code, "failed to assemble " + std::to_string(rep.refused) + " of " +
                              std::to_string(rep.bundles.size()) + " bundles: refused (see inbox/refused/ and the tickets)");
}

}  // namespace planb
