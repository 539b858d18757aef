#include "fsutil.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace planb {

std::string errstr(int err) { return std::strerror(err); }

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}
Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::string> read_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return fail("failed to open " + path + ": " + errstr(errno));
  std::string out;
  struct stat st;
  if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) out.reserve(st.st_size);
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("failed to read " + path + ": " + errstr(errno));
    }
    if (n == 0) break;
    out.append(buf, n);
  }
  return out;
}

Status write_all(int fd, const void* data, size_t len, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("failed to write " + what + ": " + errstr(errno));
    }
    p += n;
    len -= n;
  }
  return {};
}

Result<size_t> read_full(int fd, void* buf, size_t len, const std::string& what) {
  size_t got = 0;
  char* p = static_cast<char*>(buf);
  while (got < len) {
    ssize_t n = ::read(fd, p + got, len - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("failed to read " + what + ": " + errstr(errno));
    }
    if (n == 0) break;
    got += n;
  }
  return got;
}

std::string dirname_of(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

std::string join_path(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  if (a.back() == '/') return a + b;
  return a + "/" + b;
}

std::string temp_name(const std::string& dir, std::string_view stem) {
  static std::atomic<unsigned> counter{0};
  static const std::string pid = std::to_string(::getpid());
  return join_path(dir, "." + std::string(stem) + ".tmp." + pid + "." + std::to_string(counter++));
}

Status fsync_dir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return fail("failed to open directory " + dir + ": " + errstr(errno));
  if (::fsync(fd.get()) != 0) return fail("failed to sync directory " + dir + ": " + errstr(errno));
  return {};
}

Result<AtomicFile> AtomicFile::create(const std::string& path, mode_t mode) {
  AtomicFile f;
  f.path_ = path;
  f.mode_ = mode;
  f.tmp_ = temp_name(dirname_of(path), "w");
  f.fd_ = Fd(::open(f.tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!f.fd_.valid()) {
    int err = errno;
    f.tmp_.clear();
    return fail("failed to create " + path + ": " + errstr(err));
  }
  return f;
}

AtomicFile::~AtomicFile() {
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

Status AtomicFile::commit() {
  if (::fchmod(fd_.get(), mode_) != 0) return fail("failed to chmod " + tmp_ + ": " + errstr(errno));
  if (::fsync(fd_.get()) != 0) return fail("failed to sync " + tmp_ + ": " + errstr(errno));
  fd_ = Fd();
  if (::rename(tmp_.c_str(), path_.c_str()) != 0)
    return fail("failed to rename " + tmp_ + " to " + path_ + ": " + errstr(errno));
  tmp_.clear();
  return fsync_dir(dirname_of(path_));
}

Result<OutputFile> OutputFile::open(const std::string& path, mode_t mode) {
  OutputFile out;
  if (path.empty() || path == "-") {
    out.name_ = "standard output";
    return out;
  }
  PB_ASSIGN(AtomicFile f, AtomicFile::create(path, mode));
  out.file_.emplace(std::move(f));
  out.name_ = path;
  return out;
}

Status write_file_atomic(const std::string& path, std::string_view data, mode_t mode) {
  PB_ASSIGN(AtomicFile f, AtomicFile::create(path, mode));
  PB_TRY(write_all(f.fd(), data.data(), data.size(), path));
  return f.commit();
}

Status mkdir_p(const std::string& path, mode_t mode) {
  if (path.empty()) return {};
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return {};
    return fail("failed to create directory " + path + ": exists and is not a directory");
  }
  std::string parent = dirname_of(path);
  if (parent != path && parent != "." && parent != "/") PB_TRY(mkdir_p(parent, mode));
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
    return fail("failed to create directory " + path + ": " + errstr(errno));
  return {};
}

bool path_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

Status sync_filesystem(const std::string& any_path) {
  Fd fd(::open(any_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return fail("failed to open " + any_path + ": " + errstr(errno));
  if (::syncfs(fd.get()) != 0) return fail("failed to sync file system of " + any_path + ": " + errstr(errno));
  return {};
}

Status DurableBatch::commit() {
  if (items_.empty()) return {};
  PB_TRY(sync_filesystem(root_));
  for (auto& it : items_) {
    if (::rename(it.tmp.c_str(), it.dst.c_str()) != 0)
      return fail("failed to rename " + it.tmp + " to " + it.dst + ": " + errstr(errno));
  }
  items_.clear();
  return sync_filesystem(root_);
}

void DurableBatch::abandon() {
  for (auto& it : items_) ::unlink(it.tmp.c_str());
  items_.clear();
}

Result<FileLock> FileLock::acquire(const std::string& path, bool exclusive, bool wait,
                                   const std::string& what) {
  FileLock l;
  l.fd_ = Fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!l.fd_.valid()) return fail("failed to open lock " + path + ": " + errstr(errno));
  int op = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
  while (::flock(l.fd_.get(), op) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK)
      return make_error(kExitLocked, "failed to lock " + what + ": in use by another planb process");
    return fail("failed to lock " + what + ": " + errstr(errno));
  }
  return l;
}

}  // namespace planb
