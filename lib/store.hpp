// The snapshot store shared by the appliance and the server:
//   STORE/planb-store                 marker and format version
//   STORE/config                      retention quota (key = value)
//   STORE/objects/xx/<hex>            content-addressed objects
//   STORE/hosts/<host>/manifests/<seq>.pbm
//   STORE/hosts/<host>/refs/<name>    "<seq> <manifest id>\n" (latest, candidate, good)
//   STORE/tmp/                        temp files (pid-named; stale ones removed)
//   STORE/lock                        shared by writers, exclusive by prune
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "manifest.hpp"
#include "object_store.hpp"

namespace planb {

std::string default_store_path();
Status validate_host_name(const std::string& host);

struct Ref {
  uint64_t sequence = 0;
  Hash manifest;
};

struct SnapshotInfo {
  uint64_t sequence;
  ManifestHeader header;
  uint64_t file_bytes;  // manifest file size
};

class Store {
 public:
  // Open an existing store; create it when create=true and the directory is
  // missing or empty.
  static Result<Store> open(const std::string& root, bool create);

  const std::string& root() const { return root_; }
  ObjectStore& objects() { return *objects_; }
  std::string host_dir(const std::string& host) const;
  std::string manifest_path(const std::string& host, uint64_t seq) const;
  std::vector<std::string> hosts() const;
  bool has_host(const std::string& host) const;
  Status require_host(const std::string& host) const;

  Result<std::optional<Ref>> read_ref(const std::string& host, const std::string& name) const;
  Status write_ref(const std::string& host, const std::string& name, const Ref& ref);

  // Sequences that have a manifest, ascending (up to the latest ref only when
  // committed_only, so a manifest left by a killed capture is not shown).
  Result<std::vector<uint64_t>> sequences(const std::string& host, bool committed_only = true) const;
  Result<std::string> read_manifest_bytes(const std::string& host, uint64_t seq) const;
  Result<Manifest> load_manifest(const std::string& host, uint64_t seq) const;
  Result<std::vector<SnapshotInfo>> list_snapshots(const std::string& host) const;

  Result<FileLock> lock_store(bool exclusive) const;
  Result<FileLock> lock_host(const std::string& host) const;

 private:
  std::string root_;
  std::unique_ptr<ObjectStore> objects_;
};

}  // namespace planb
