// file:// transport: an inbox directory on a local or mounted file system.
// Each temp file is fsynced before the rename and the directory after it, so a
// bundle under its final name is durable.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <vector>

#include "fsutil.hpp"
#include "hash_file.hpp"
#include "transport.hpp"

namespace planb {

namespace {

// ENOSPC/EDQUOT/EROFS/EACCES cannot be cured by retrying.
Error io_error(const std::string& what, int err) {
  std::string msg = what + ": " + errstr(err);
  if (err == ENOSPC || err == EDQUOT) msg = what + ": disk full on the server (" + errstr(err) + ")";
  if (err == EIO || err == ESTALE || err == ETIMEDOUT || err == EINTR) return transient(msg);
  return fail(msg);
}

class FileTransport : public Transport {
 public:
  FileTransport(std::string dir, const TransportOptions& opt) : dir_(std::move(dir)), opt_(opt) {}

  std::string describe() const override { return "file://" + dir_; }

  Result<std::optional<uint64_t>> size_of(const std::string& name) override {
    struct stat st;
    if (::stat(path(name).c_str(), &st) != 0) {
      if (errno == ENOENT) return std::optional<uint64_t>{};
      return io_error("failed to stat " + path(name), errno);
    }
    return std::optional<uint64_t>{uint64_t(st.st_size)};
  }

  bool can_resume() const override { return true; }

  Status upload(int fd, uint64_t offset, uint64_t total, const std::string& name,
                const XferProgress& progress) override {
    std::string p = path(name);
    Fd out(::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!out.valid()) return io_error("failed to create " + p, errno);
    if (::ftruncate(out.get(), off_t(offset)) != 0) return io_error("failed to truncate " + p, errno);
    std::vector<char> buf(1 << 20);
    uint64_t pos = offset;
    auto start = std::chrono::steady_clock::now();
    while (pos < total) {
      size_t want = size_t(std::min<uint64_t>(buf.size(), total - pos));
      ssize_t n = ::pread(fd, buf.data(), want, off_t(pos));
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail("failed to read the bundle: " + errstr(errno));
      }
      if (n == 0) return fail("failed to read the bundle: it shrank while being sent");
      size_t done = 0;
      while (done < size_t(n)) {
        ssize_t w = ::pwrite(out.get(), buf.data() + done, size_t(n) - done, off_t(pos + done));
        if (w < 0) {
          if (errno == EINTR) continue;
          return io_error("failed to write " + p, errno);
        }
        done += size_t(w);
      }
      pos += uint64_t(n);
      if (progress) progress(pos - offset);
      if (opt_.limit_rate)
        throttle(pos - offset, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                 opt_.limit_rate);
    }
    if (::fsync(out.get()) != 0) return io_error("failed to sync " + p, errno);
    return {};
  }

  Result<Hash> hash_of(const std::string& name) override { return hash_file(path(name)); }

  Status rename(const std::string& from, const std::string& to) override {
    // RENAME_NOREPLACE: a bundle already in the inbox is never replaced.
    if (::renameat2(AT_FDCWD, path(from).c_str(), AT_FDCWD, path(to).c_str(), RENAME_NOREPLACE) != 0) {
      if (errno == EEXIST) return fail("failed to move " + from + " into place: " + to + " already exists");
      return io_error("failed to rename " + path(from), errno);
    }
    return fsync_dir(dir_);
  }

  Status remove(const std::string& name) override {
    if (::unlink(path(name).c_str()) != 0 && errno != ENOENT) return io_error("failed to remove " + path(name), errno);
    return {};
  }

  Result<std::optional<uint64_t>> free_space() override {
    struct statvfs v;
    if (::statvfs(dir_.c_str(), &v) != 0) {
      if (errno == ENOENT) return fail("failed to reach the inbox " + dir_ + ": no such directory");
      return io_error("failed to reach the inbox " + dir_, errno);
    }
    return std::optional<uint64_t>{uint64_t(v.f_bavail) * v.f_frsize};
  }

 private:
  std::string path(const std::string& name) const { return join_path(dir_, name); }
  std::string dir_;
  TransportOptions opt_;
};

}  // namespace

std::unique_ptr<Transport> make_file_transport(std::string dir, const TransportOptions& opt) {
  return std::make_unique<FileTransport>(std::move(dir), opt);
}

void throttle(uint64_t sent, double elapsed_s, uint64_t rate) {
  if (!rate) return;
  double due = double(sent) / double(rate);
  if (due > elapsed_s) ::usleep(useconds_t((due - elapsed_s) * 1e6));
}

}  // namespace planb
