// File-system helpers. Every file Plan B writes goes through write_file_atomic()
// (temp file, fsync, rename, fsync dir) or, for many small files at once,
// DurableBatch (temp files, one syncfs, renames, one syncfs).
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "result.hpp"

namespace planb {

std::string errstr(int err);

// Owning file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

Result<std::string> read_file(const std::string& path);
Status write_all(int fd, const void* data, size_t len, const std::string& what);
// Read up to len bytes; returns bytes read (short only at EOF).
Result<size_t> read_full(int fd, void* buf, size_t len, const std::string& what);

// The one atomic-write helper, for streams: a temp file beside `path`;
// commit() fsyncs it, renames it over `path` and fsyncs the directory.
// Destroyed without commit(), the temp file is removed.
class AtomicFile {
 public:
  static Result<AtomicFile> create(const std::string& path, mode_t mode = 0644);
  AtomicFile(AtomicFile&& o) noexcept
      : path_(std::move(o.path_)), tmp_(std::exchange(o.tmp_, {})), mode_(o.mode_), fd_(std::move(o.fd_)) {}
  AtomicFile& operator=(AtomicFile&&) = delete;
  ~AtomicFile();
  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  Status commit();

 private:
  AtomicFile() = default;
  std::string path_, tmp_;
  mode_t mode_ = 0644;
  Fd fd_;
};

// A command's output: standard output for "-" (or ""), else an AtomicFile.
class OutputFile {
 public:
  static Result<OutputFile> open(const std::string& path, mode_t mode = 0644);
  int fd() const { return file_ ? file_->fd() : 1; }
  bool is_stdout() const { return !file_; }
  const std::string& name() const { return name_; }  // the path, or "standard output"
  Status commit() { return file_ ? file_->commit() : Status{}; }

 private:
  std::optional<AtomicFile> file_;
  std::string name_;
};

// The same for a whole buffer.
Status write_file_atomic(const std::string& path, std::string_view data, mode_t mode = 0644);
Status fsync_dir(const std::string& dir);
Status mkdir_p(const std::string& path, mode_t mode = 0755);
bool path_exists(const std::string& path);
std::string dirname_of(const std::string& path);
std::string join_path(const std::string& a, const std::string& b);
// A unique temp-file name inside dir.
std::string temp_name(const std::string& dir, std::string_view stem);

// Many files made durable together: each was written to a temp path; commit()
// syncs the file system once, renames each into place and syncs again, so a
// file under its final name is always complete.
class DurableBatch {
 public:
  explicit DurableBatch(std::string sync_root) : root_(std::move(sync_root)) {}
  void add(std::string tmp, std::string final_path) {
    items_.push_back({std::move(tmp), std::move(final_path)});
  }
  size_t size() const { return items_.size(); }
  Status commit();
  void abandon();  // unlink temps
  ~DurableBatch() { abandon(); }

 private:
  struct Item { std::string tmp, dst; };
  std::string root_;
  std::vector<Item> items_;
};

Status sync_filesystem(const std::string& any_path);

// A path for system calls that holds its directory open:
// /proc/self/fd/<dir fd>/<name>, short whatever the depth.
struct ShortPath {
  Fd dir;
  std::string path;
  const char* c_str() const { return path.c_str(); }
};

// Advisory lock (flock) held for the object's lifetime.
class FileLock {
 public:
  static Result<FileLock> acquire(const std::string& path, bool exclusive, bool wait,
                                  const std::string& what);
  FileLock(FileLock&&) = default;
  FileLock& operator=(FileLock&&) = default;

 private:
  FileLock() = default;
  Fd fd_;
};

}  // namespace planb
