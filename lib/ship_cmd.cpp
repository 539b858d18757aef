#include "ship_cmd.hpp"

#include <cstdio>
#include <cstdlib>

#include "cli.hpp"
#include "json.hpp"
#include "progress.hpp"

namespace planb {

Result<uint64_t> parse_rate(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end == s.c_str() || v < 0)
    return make_error(kExitUsage, "failed to parse --limit-rate " + s + ": expected a number like 500k or 10M");
  std::string unit(end);
  if (!unit.empty() && (unit.back() == 's' || unit.back() == 'S') && unit.size() > 1 && unit[unit.size() - 2] == '/')
    unit.resize(unit.size() - 2);
  double mul = 1;
  if (unit == "" || unit == "B") mul = 1;
  else if (unit == "k" || unit == "K" || unit == "KiB") mul = 1024;
  else if (unit == "m" || unit == "M" || unit == "MiB") mul = 1024.0 * 1024;
  else if (unit == "g" || unit == "G" || unit == "GiB") mul = 1024.0 * 1024 * 1024;
  else return make_error(kExitUsage, "failed to parse --limit-rate " + s + ": unknown unit '" + unit + "' (use k, M or G)");
  return uint64_t(v * mul);
}

Status ship_main(ShipCmdOptions& o) {
  if (o.ship.outbox.empty()) {
    const char* env = std::getenv("PLANB_OUTBOX");
    o.ship.outbox = env && *env ? env : "/var/spool/planb/outbox";
  }
  if (!o.limit_rate.empty()) {
    PB_ASSIGN(uint64_t r, parse_rate(o.limit_rate));
    o.ship.transport.limit_rate = r;
  }
  o.ship.progress = !o.json;
  PB_ASSIGN(ShipReport rep, ship(o.ship));
  double mbps = rep.seconds > 0 ? double(rep.bytes_sent) / 1e6 / rep.seconds : 0;
  if (o.json) {
    std::string items = "[";
    for (size_t i = 0; i < rep.bundles.size(); ++i) {
      const auto& b = rep.bundles[i];
      JsonObject j;
      j.add("name", b.name).add("host", b.host).add("sequence", b.sequence).add("bytes", b.bytes)
          .add("state", b.state).add("attempts", int64_t(b.attempts)).add("resumed_from", b.resumed_from)
          .add("seconds", b.seconds);
      if (!b.error.empty()) j.add("error", b.error);
      items += (i ? "," : "") + j.str();
    }
    items += "]";
    std::printf("%s\n", JsonObject()
                            .add("destination", rep.destination)
                            .add("bundles", int64_t(rep.sent))
                            .add("already_there", int64_t(rep.already))
                            .add("failed", int64_t(rep.failed))
                            .add("bytes", rep.bytes_sent)
                            .add("seconds", rep.seconds)
                            .add("throughput_mbps", mbps)
                            .add_raw("items", items)
                            .add_raw("full_bundle_requested", [&] {
                              std::string a = "[";
                              for (size_t i = 0; i < rep.full_bundle_requested.size(); ++i)
                                a += (i ? "," : "") + json_escape(rep.full_bundle_requested[i]);
                              return a + "]";
                            }())
                            .str().c_str());
  } else {
    for (const auto& b : rep.bundles) {
      if (b.state == "sent")
        std::printf("sent %s (%s snapshot %llu, %s%s) in %.2f s\n", b.name.c_str(), b.host.c_str(),
                    static_cast<unsigned long long>(b.sequence), human_bytes(b.bytes).c_str(),
                    b.resumed_from ? (", resumed at " + human_bytes(b.resumed_from)).c_str() : "", b.seconds);
      else if (b.state == "already-there")
        std::printf("already there %s (delivered by an earlier run)\n", b.name.c_str());
      else if (b.state == "held-back")
        std::printf("held back %s (an earlier bundle was not delivered)\n", b.name.c_str());
      else if (!b.error.empty() && !(b.error == rep.first_error.message && rep.sent + rep.already == 0))
        print_warning("planb-ship", b.error);  // (the one error of a run that sent nothing is the final message)
    }
    for (const auto& h : rep.full_bundle_requested)
      std::printf("the server asks for a full bundle of %s (recorded in %s/requests/)\n", h.c_str(),
                  o.ship.outbox.c_str());
    if (rep.bundles.empty())
      std::printf("nothing to ship in %s\n", o.ship.outbox.c_str());
    else
      std::printf("%d sent, %d already there, %d not delivered: %s in %.2f s (%.1f MB/s) to %s\n", rep.sent,
                  rep.already, rep.failed, human_bytes(rep.bytes_sent).c_str(), rep.seconds, mbps,
                  rep.destination.c_str());
  }
  std::fflush(stdout);
  if (rep.failed == 0) return {};
  if (rep.sent + rep.already > 0)
    return make_error(kExitPartial, "failed to ship " + std::to_string(rep.failed) + " of " +
                                        std::to_string(rep.bundles.size()) + " bundles: " + rep.first_error.message);
  return rep.first_error;
}

}  // namespace planb
