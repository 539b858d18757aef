// Retention: drop the oldest snapshots beyond the store's quota (count, age,
// size), never a host's newest, then delete objects no snapshot references.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store.hpp"

namespace planb {

struct RetentionPolicy {
  std::optional<uint64_t> keep_last;        // per host
  std::optional<int64_t> keep_within_sec;   // per host, by snapshot time
  std::optional<uint64_t> max_size;         // bytes of objects in the whole store
  bool any() const { return keep_last || keep_within_sec || max_size; }
};

// STORE/config: "keep-last = 30", "keep-within = 90d", "max-size = 200G".
Result<RetentionPolicy> load_retention(const Store& store);
Result<uint64_t> parse_size(const std::string& s);       // 10G, 512M, 1024
Result<int64_t> parse_duration(const std::string& s);
Result<uint64_t> parse_count(const std::string& s, const std::string& what);  // >= 1    // 90d, 12h, 2w, 30m, 45s

struct PruneResult {
  std::vector<std::pair<std::string, uint64_t>> removed;  // host, sequence
  uint64_t objects_removed = 0, bytes_freed = 0, objects_kept = 0, bytes_kept = 0;
  double seconds = 0;
};

Result<PruneResult> prune(Store& store, const RetentionPolicy& policy, bool dry_run);

}  // namespace planb
