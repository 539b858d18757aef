#include "diff_cmd.hpp"

#include <cstdio>

#include "json.hpp"
#include "progress.hpp"

namespace planb {

Status diff_main(DiffCmdOptions& o) {
  if (o.store.empty()) o.store = default_store_path();
  if (!o.apply.empty()) {
    PB_ASSIGN(Store store, Store::open(o.store, true));
    PB_ASSIGN(ApplyResult r, apply_bundle(store, o.apply));
    if (o.json)
      std::printf("%s\n", JsonObject()
                              .add("host", r.header.host)
                              .add("sequence", r.header.sequence)
                              .add("kind", r.header.full ? "full" : "incremental")
                              .add("objects", r.objects)
                              .add("deltas", r.deltas)
                              .add("bytes", r.bytes)
                              .str().c_str());
    else
      std::printf("applied %s bundle of %s snapshot %llu: %llu objects, %llu deltas\n",
                  r.header.full ? "full" : "incremental", r.header.host.c_str(),
                  static_cast<unsigned long long>(r.header.sequence), static_cast<unsigned long long>(r.objects),
                  static_cast<unsigned long long>(r.deltas));
    return {};
  }
  if (o.diff.host.empty()) return make_error(kExitUsage, "failed to parse options: --host is required");
  PB_TRY(validate_host_name(o.diff.host));
  if (o.diff.out.empty()) o.diff.out = "-";
  PB_ASSIGN(Store store, Store::open(o.store, false));
  PB_ASSIGN(DiffResult r, write_bundle(store, o.diff));
  FILE* info = o.diff.out == "-" ? stderr : stdout;
  if (o.json) {
    std::fprintf(info, "%s\n", JsonObject()
                                   .add("host", r.header.host)
                                   .add("sequence", r.header.sequence)
                                   .add("parent_sequence", r.header.parent_sequence)
                                   .add("kind", r.header.full ? "full" : "incremental")
                                   .add("objects", r.objects)
                                   .add("object_bytes", r.object_bytes)
                                   .add("deltas", r.deltas)
                                   .add("delta_bytes", r.delta_bytes)
                                   .add("delta_target_bytes", r.delta_target_bytes)
                                   .add("bundle_bytes", r.bundle_bytes)
                                   .add("seconds", r.seconds)
                                   .str().c_str());
  } else if (o.diff.out != "-") {
    std::printf("%s bundle of %s snapshot %llu: %llu objects (%s), %llu deltas (%s for %s of changed files), %s written\n",
                r.header.full ? "full" : "incremental", r.header.host.c_str(),
                static_cast<unsigned long long>(r.header.sequence), static_cast<unsigned long long>(r.objects),
                human_bytes(r.object_bytes).c_str(), static_cast<unsigned long long>(r.deltas),
                human_bytes(r.delta_bytes).c_str(), human_bytes(r.delta_target_bytes).c_str(),
                human_bytes(r.bundle_bytes).c_str());
  }
  return {};
}

}  // namespace planb
