// Content-addressed object store: STORE/objects/xx/<rest of hex id>.
// An object is a 16-byte header then the payload, raw or zstd-compressed.
#pragma once
#include <array>
#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "fsutil.hpp"
#include "hash.hpp"

namespace planb {

enum class ObjKind : uint8_t { Blob = 0, Index = 1 };

struct ChunkRef {
  Hash id;
  uint64_t size;
};

// A chunk index: the ordered chunks of one big file.
std::string encode_index(const std::vector<ChunkRef>& chunks);
Result<std::vector<ChunkRef>> decode_index(std::string_view raw, const std::string& what);

class ObjectStore {
 public:
  explicit ObjectStore(std::string root);
  const std::string& root() const { return root_; }
  std::string path_of(const Hash& id) const;
  bool has(const Hash& id);
  // Stage an object for the current batch (no-op if present). Returns stored bytes.
  Result<uint64_t> put(const Hash& id, std::string_view raw, ObjKind kind);
  // Make every staged object durable and visible.
  Status commit();
  size_t pending() const { return batch_.size(); }
  uint64_t pending_bytes() const { return pending_bytes_; }
  // Read an object's raw payload, verifying its id unless verify=false.
  Result<std::string> get(const Hash& id, bool verify = true);
  Result<ObjKind> kind_of(const Hash& id);
  // All chunk refs of a content id: itself if a blob, its chunks if an index.
  Result<std::vector<ChunkRef>> expand(const Hash& id, uint64_t size);
  // Every file under objects/: its id (nullopt for a stray name), path and size.
  using ScanFn = std::function<void(const std::optional<Hash>& id, const std::string& path, uint64_t size)>;
  Status scan(const ScanFn& fn) const;
  // Remove temp files of dead processes from dir (default: STORE/tmp).
  void clean_stale_temps(const std::string& dir = "") const;

 private:
  std::string root_, objdir_, tmpdir_;
  DurableBatch batch_;
  std::unordered_set<Hash, HashHasher> staged_;
  uint64_t pending_bytes_ = 0;
  std::mutex mu_;
  std::array<std::atomic<bool>, 256> subdir_ok_{};
};

}  // namespace planb
