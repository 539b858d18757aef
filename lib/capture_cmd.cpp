#include "capture_cmd.hpp"

#include <cstdio>

#include "cli.hpp"
#include "json.hpp"
#include "progress.hpp"
#include "retention.hpp"
#include "verify.hpp"

namespace planb {

namespace {

Result<RetentionPolicy> policy_for(const Store& store, const CaptureCmdOptions& o) {
  PB_ASSIGN(RetentionPolicy p, load_retention(store));
  if (!o.keep_last.empty()) {
    PB_ASSIGN(p.keep_last, parse_count(o.keep_last, "--keep-last"));
  }
  if (!o.keep_within.empty()) {
    PB_ASSIGN(p.keep_within_sec, parse_duration(o.keep_within));
  }
  if (!o.max_size.empty()) {
    PB_ASSIGN(p.max_size, parse_size(o.max_size));
  }
  return p;
}

Status run_prune(Store& store, const RetentionPolicy& p, const CaptureCmdOptions& o, JsonObject* j) {
  PB_ASSIGN(PruneResult r, prune(store, p, o.dry_run));
  std::vector<std::string> removed;
  for (auto& [h, s] : r.removed) {
    removed.push_back(JsonObject().add("host", h).add("sequence", s).str());
    if (!o.json)
      std::printf("%s snapshot %llu of %s\n", o.dry_run ? "would remove" : "removed",
                  static_cast<unsigned long long>(s), h.c_str());
  }
  if (j) {
    j->add_raw("pruned", json_array(removed))
        .add("objects_removed", r.objects_removed)
        .add("bytes_freed", r.bytes_freed)
        .add("store_bytes", r.bytes_kept);
  } else if (!o.json) {
    std::printf("%s %llu objects (%s); store holds %s\n", o.dry_run ? "would free" : "freed",
                static_cast<unsigned long long>(r.objects_removed), human_bytes(r.bytes_freed).c_str(),
                human_bytes(r.bytes_kept).c_str());
  }
  return {};
}

}  // namespace

Status capture_main(CaptureCmdOptions& o) {
  if (o.store.empty()) o.store = default_store_path();
  int modes = int(o.verify) + int(o.prune);
  if (modes > 1) return make_error(kExitUsage, "failed to parse options: --verify and --prune are exclusive");

  if (o.verify) {
    PB_ASSIGN(Store store, Store::open(o.store, false));
    if (!o.cap.host.empty()) PB_TRY(store.require_host(o.cap.host));
    PB_ASSIGN(VerifyResult r, verify_store(store, o.cap.host));
    for (auto& d : r.damage) print_warning("planb-capture", "damage: " + d);
    if (o.json) {
      std::vector<std::string> dmg;
      for (auto& d : r.damage) dmg.push_back(json_escape(d));
      std::printf("%s\n", JsonObject()
                              .add("manifests", r.manifests)
                              .add("objects", r.objects)
                              .add("bytes", r.bytes)
                              .add_raw("damage", json_array(dmg))
                              .add("seconds", r.seconds)
                              .str().c_str());
    } else {
      std::printf("checked %llu manifests, %llu objects (%s): %s\n",
                  static_cast<unsigned long long>(r.manifests), static_cast<unsigned long long>(r.objects),
                  human_bytes(r.bytes).c_str(),
                  r.damage.empty() ? "no damage" : (std::to_string(r.damage.size()) + " problems").c_str());
    }
    if (!r.damage.empty())
      return make_error(kExitCorrupt, "failed to verify store " + o.store + ": " +
                                          std::to_string(r.damage.size()) + " problems found");
    return {};
  }

  if (o.prune) {
    PB_ASSIGN(Store store, Store::open(o.store, false));
    PB_ASSIGN(RetentionPolicy p, policy_for(store, o));
    JsonObject j;
    PB_TRY(run_prune(store, p, o, o.json ? &j : nullptr));
    if (o.json) std::printf("%s\n", j.str().c_str());
    return {};
  }

  if (o.cap.host.empty()) return make_error(kExitUsage, "failed to parse options: --host is required");
  if (o.cap.source.empty()) return make_error(kExitUsage, "failed to parse options: SOURCE is required");
  PB_TRY(validate_host_name(o.cap.host));
  o.cap.default_excludes = !o.no_default_excludes;
  o.cap.one_file_system = !o.cross_fs;
  PB_ASSIGN(Store store, Store::open(o.store, true));
  PB_ASSIGN(RetentionPolicy policy, policy_for(store, o));
  PB_ASSIGN(CaptureResult r, capture(store, o.cap));
  for (auto& w : r.warnings) print_warning("planb-capture", w);

  JsonObject j;
  j.add("host", o.cap.host)
      .add("sequence", r.sequence)
      .add("manifest", r.manifest.hex())
      .add("entries", r.entries)
      .add("files", r.files)
      .add("dirs", r.dirs)
      .add("symlinks", r.symlinks)
      .add("hardlinks", r.hardlinks)
      .add("specials", r.specials)
      .add("files_read", r.files_read)
      .add("files_unchanged", r.files_unchanged)
      .add("bytes_total", r.bytes_total)
      .add("bytes_read", r.bytes_read)
      .add("bytes_new", r.bytes_new)
      .add("objects_new", r.objects_new)
      .add("changing", r.changing)
      .add("unreadable", r.unreadable)
      .add("seconds", r.seconds);
  if (policy.any() && !o.no_prune) {
    auto pr = run_prune(store, policy, o, o.json ? &j : nullptr);
    if (!pr.ok()) print_warning("planb-capture", pr.error().message);
  }
  if (o.json) {
    j.add("partial", r.partial());
    std::printf("%s\n", j.str().c_str());
  } else {
    std::printf("host %s: %llu entries, %llu files read (%s), %s new, %.2fs\n", o.cap.host.c_str(),
                static_cast<unsigned long long>(r.entries), static_cast<unsigned long long>(r.files_read),
                human_bytes(r.bytes_read).c_str(), human_bytes(r.bytes_new).c_str(), r.seconds);
    std::printf("%llu\n", static_cast<unsigned long long>(r.sequence));
  }
  if (r.partial())
    return make_error(kExitPartial, "failed to read " + std::to_string(r.unreadable) +
                                        " entries of " + o.cap.source + ": snapshot " +
                                        std::to_string(r.sequence) + " is partial");
  return {};
}

}  // namespace planb
