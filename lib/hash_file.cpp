#include "hash_file.hpp"

#include <fcntl.h>

#include <cerrno>
#include <vector>

#include "fsutil.hpp"

namespace planb {

Result<Hash> hash_file(const std::string& path) {
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid())
    return make_error(errno == ENOENT ? kExitNotFound : kExitFailure, "failed to open " + path + ": " + errstr(errno));
  ::posix_fadvise(in.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  Hasher h;
  std::vector<char> buf(1 << 20);
  for (;;) {
    PB_ASSIGN(size_t n, read_full(in.get(), buf.data(), buf.size(), path));
    if (n == 0) break;
    h.update(buf.data(), n);
  }
  return h.final();
}

}  // namespace planb
