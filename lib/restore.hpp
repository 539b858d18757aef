// Restoring snapshot entries onto a directory tree, with all metadata.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "store.hpp"

namespace planb {

// "/etc/hosts/" -> "etc/hosts"; "/" -> "". Rejects "..".
Result<std::string> normalize_path(const std::string& p);

// Writes the logical content of a file entry to fd (holes kept for sparse files).
Status write_content(ObjectStore& objects, const Entry& e, int fd, const std::string& what);
// Streams the logical content of a file entry.
Status read_content(ObjectStore& objects, const Entry& e,
                    const std::function<Status(std::string_view)>& sink);

struct RestoreOptions {
  std::string dest;                 // directory the snapshot's root maps to
  std::vector<std::string> paths;   // normalized; "" = everything
  bool force = false;               // replace existing files
  bool progress = true;
  bool fresh = false;               // dest is a new empty staging tree: write in place, no temp
                                    // names, no sync (planb-convert)
};

struct RestoreResult {
  uint64_t entries = 0, files = 0, bytes = 0;
  std::vector<std::string> warnings;
  double seconds = 0;
};

Result<RestoreResult> restore_entries(Store& store, const Manifest& m, const RestoreOptions& opt);

}  // namespace planb
