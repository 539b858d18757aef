// Change bundles: a pax archive (zstd-compressed) of
//   PLANB-BUNDLE          header (key=value lines, format 1)
//   manifest.pbm          manifest of the target snapshot (full bundles), or
//   manifest.diff         its edits against the base's (incremental)
//   objects/<n>           raw contents the receiver lacks (blobs and chunks)
//   index/<n>             chunk indexes of new big files
//   deltas/<n>            base id, result id (32 bytes each), librsync delta
// See doc/formats.md.
#pragma once
#include <cstdint>
#include <string>

#include "store.hpp"

namespace planb {

struct BundleHeader {
  uint32_t format = 1;
  std::string host;
  uint64_t sequence = 0;
  uint64_t parent_sequence = 0;  // 0 for a full bundle
  Hash parent_manifest;          // zero for a full bundle
  Hash manifest;
  int64_t created_ns = 0;
  bool full = true;
  std::string encode() const;
  static Result<BundleHeader> decode(std::string_view text);
};

struct DiffOptions {
  std::string host;
  uint64_t from = 0;  // 0: to-1
  uint64_t to = 0;    // 0: latest
  bool full = false;
  std::string out;    // file, or "-" for stdout
  bool progress = true;
};

struct DiffResult {
  BundleHeader header;
  uint64_t objects = 0, object_bytes = 0;
  uint64_t deltas = 0, delta_bytes = 0, delta_target_bytes = 0;
  uint64_t unchanged_files = 0;
  uint64_t bundle_bytes = 0;
  double seconds = 0;
};

Result<DiffResult> write_bundle(Store& store, const DiffOptions& opt);

// Receiving side: verify and apply a bundle into `store`. The bundle must be
// newer than the host's `latest` (its head) and, if incremental, made against
// it. Moves `latest` (and `extra_ref`, e.g. "candidate") only when everything
// is durable.
struct ApplyResult {
  BundleHeader header;
  uint64_t objects = 0, deltas = 0, bytes = 0;
};
Result<ApplyResult> apply_bundle(Store& store, const std::string& path, const std::string& extra_ref = "");

}  // namespace planb
