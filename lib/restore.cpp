#include "restore.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "chunker.hpp"
#include "progress.hpp"
#include "xattrs.hpp"

namespace planb {

Result<std::string> normalize_path(const std::string& p) {
  std::string out;
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    std::string comp = p.substr(i, j - i);
    if (comp == "..") return make_error(kExitUsage, "failed to use path '" + p + "': '..' is not allowed");
    if (!comp.empty() && comp != ".") out += (out.empty() ? "" : "/") + comp;
    i = j + 1;
  }
  return out;
}

Status read_content(ObjectStore& objects, const Entry& e,
                    const std::function<Status(std::string_view)>& sink) {
  if (!e.has_content()) return {};
  PB_ASSIGN(auto chunks, objects.expand(e.content, e.size));
  uint64_t total = 0;
  for (auto& c : chunks) {
    PB_ASSIGN(std::string data, objects.get(c.id));
    total += data.size();
    PB_TRY(sink(data));
  }
  if (total != e.size)
    return make_error(kExitCorrupt, "failed to read content of " + e.path + ": size " +
                                        std::to_string(total) + " does not match manifest size " + std::to_string(e.size));
  return {};
}

Status write_content(ObjectStore& objects, const Entry& e, int fd, const std::string& what) {
  uint64_t off = 0;
  const bool sparse = e.flags & kFlagSparse;
  size_t ext = 0;
  PB_TRY(read_content(objects, e, [&](std::string_view data) -> Status {
    if (!sparse) {
      PB_TRY(write_all(fd, data.data(), data.size(), what));
      off += data.size();
      return {};
    }
    // Write only the parts of this piece inside data extents.
    uint64_t end = off + data.size();
    while (ext < e.extents.size()) {
      auto [eo, el] = e.extents[ext];
      uint64_t a = std::max(eo, off), b = std::min(eo + el, end);
      if (a < b) {
        const char* p = data.data() + (a - off);
        size_t n = b - a;
        while (n > 0) {
          ssize_t w = ::pwrite(fd, p, n, off_t(a));
          if (w < 0) {
            if (errno == EINTR) continue;
            return fail("failed to write " + what + ": " + errstr(errno));
          }
          p += w;
          a += w;
          n -= w;
        }
      }
      if (eo + el <= end) ++ext;
      else break;
    }
    off = end;
    return {};
  }));
  if (sparse && ::ftruncate(fd, off_t(e.size)) != 0)
    return fail("failed to size " + what + ": " + errstr(errno));
  return {};
}

namespace {

Status apply_metadata(const Entry& e, const std::string& path, int fd, std::vector<std::string>& warnings) {
  bool root = ::geteuid() == 0;
  int r = fd >= 0 ? ::fchown(fd, e.uid, e.gid) : ::lchown(path.c_str(), e.uid, e.gid);
  if (r != 0) {
    if (root || errno != EPERM) return fail("failed to set owner of " + path + ": " + errstr(errno));
    warnings.push_back("cannot set owner " + std::to_string(e.uid) + ":" + std::to_string(e.gid) + " of " + path + " (not root)");
  }
  auto xs = write_xattrs(path, e.xattrs);
  if (!xs.ok()) {
    if (root) return xs;
    warnings.push_back(xs.error().message);
  }
  if (e.type != EntryType::Symlink) {
    r = fd >= 0 ? ::fchmod(fd, e.mode) : ::chmod(path.c_str(), e.mode);
    if (r != 0) return fail("failed to set mode of " + path + ": " + errstr(errno));
  }
  struct timespec ts[2];
  ts[0].tv_sec = ts[1].tv_sec = e.mtime_sec;
  ts[0].tv_nsec = ts[1].tv_nsec = e.mtime_nsec;
  r = fd >= 0 ? ::futimens(fd, ts) : ::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW);
  if (r != 0) return fail("failed to set times of " + path + ": " + errstr(errno));
  return {};
}

// The destination, resolved without ever following a symlink below its root:
// directories are opened one component at a time with O_NOFOLLOW, and system
// calls use /proc/self/fd/<parent>/<name> (short, whatever the depth). A
// stack of open directories makes consecutive paths in manifest order cheap.
class DestTree {
 public:
  Status open(const std::string& root) {
    root_path_ = root;
    root_ = Fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root_.valid()) return fail("failed to open " + root + ": " + errstr(errno));
    return {};
  }
  std::string display(const std::string& rel) const { return rel.empty() ? root_path_ : join_path(root_path_, rel); }

  // Path of `rel` for system calls; valid until the next call.
  Result<std::string> at(const std::string& rel) {
    if (rel.empty()) return proc(root_.get()) + "/.";
    auto slash = rel.find_last_of('/');
    std::string parent = slash == std::string::npos ? "" : rel.substr(0, slash);
    PB_ASSIGN(int fd, parent_fd(parent));
    return proc(fd) + "/" + rel.substr(slash == std::string::npos ? 0 : slash + 1);
  }

  // Like at(), but holding its own directory open (for a second path).
  Result<ShortPath> hold(const std::string& rel) {
    PB_ASSIGN(std::string p, at(rel));
    ShortPath sp;
    auto slash = p.find_last_of('/');
    sp.dir = Fd(::open(p.substr(0, slash).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!sp.dir.valid()) return fail("failed to open directory of " + display(rel) + ": " + errstr(errno));
    sp.path = proc(sp.dir.get()) + p.substr(slash);
    return sp;
  }

  enum class Kind { Missing, Dir, Other };
  // What stands at `rel` now (a missing parent means Missing).
  Result<Kind> probe(const std::string& rel) {
    auto p = at(rel);
    if (!p.ok()) {
      if (p.error().code == kExitNotFound) return Kind::Missing;
      return p.error();
    }
    struct stat st;
    if (::lstat(p->c_str(), &st) != 0) return Kind::Missing;
    return S_ISDIR(st.st_mode) ? Kind::Dir : Kind::Other;
  }

 private:
  static std::string proc(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

  Result<int> parent_fd(const std::string& dir) {
    while (!stack_.empty() && !path_within(dir, stack_.back().first)) stack_.pop_back();
    std::string have = stack_.empty() ? "" : stack_.back().first;
    int fd = stack_.empty() ? root_.get() : stack_.back().second.get();
    size_t pos = have.empty() ? 0 : have.size() + 1;
    while (pos < dir.size()) {
      size_t end = dir.find('/', pos);
      if (end == std::string::npos) end = dir.size();
      std::string comp = dir.substr(pos, end - pos);
      std::string sub = dir.substr(0, end);
      Fd next(::openat(fd, comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!next.valid()) {
        if (errno == ENOENT) return make_error(kExitNotFound, "failed to open " + display(sub) + ": no such directory");
        if (errno == ELOOP || errno == ENOTDIR)
          return make_error(kExitExists, "failed to restore below " + display(sub) +
                                             ": it is not a directory (a symlink?); refusing to write through it (use --force to replace it)");
        return fail("failed to open " + display(sub) + ": " + errstr(errno));
      }
      fd = next.get();
      stack_.emplace_back(sub, std::move(next));
      pos = end + 1;
    }
    return fd;
  }

  std::string root_path_;
  Fd root_;
  std::vector<std::pair<std::string, Fd>> stack_;
};

class Restorer {
 public:
  Restorer(Store& store, const Manifest& m, const RestoreOptions& opt)
      : store_(store), m_(m), opt_(opt), progress_("restore", opt.progress) {}

  Status run(RestoreResult& res) {
    // Selection: entries within any requested path, plus their ancestors.
    std::vector<const Entry*> sel;
    std::unordered_set<std::string> ancestors;
    for (auto& p : opt_.paths) {
      if (!m_.find(p))
        return make_error(kExitNotFound, "failed to find " + (p.empty() ? "/" : "/" + p) + " in snapshot " +
                                             std::to_string(m_.header.sequence) + " of host " + m_.header.host);
      for (size_t pos = p.find('/'); pos != std::string::npos; pos = p.find('/', pos + 1))
        ancestors.insert(p.substr(0, pos));
      if (!p.empty()) ancestors.insert("");
    }
    for (const Entry& e : m_.entries) {
      bool in = false;
      for (auto& p : opt_.paths) in = in || path_within(e.path, p);
      if (in) sel.push_back(&e);
      else if (ancestors.count(e.path)) parents_.push_back(&e);
    }
    // Refuse before writing anything if files would be overwritten, or a
    // directory's place is taken by something else (such as a symlink).
    if (!opt_.force && path_exists(opt_.dest)) {
      PB_TRY(tree_.open(opt_.dest));
      std::vector<std::string> clash;
      auto check = [&](const Entry* e) -> Status {
        if (clash.size() >= 3) return {};
        PB_ASSIGN(DestTree::Kind k, tree_.probe(e->path));
        if (k == DestTree::Kind::Other || (k == DestTree::Kind::Dir && e->type != EntryType::Dir))
          clash.push_back(tree_.display(e->path) + (k == DestTree::Kind::Other && e->type == EntryType::Dir
                                                        ? " (not a directory)" : ""));
        return {};
      };
      for (const Entry* e : parents_) PB_TRY(check(e));
      for (const Entry* e : sel) {
        auto st = check(e);
        if (!st.ok() && st.error().code == kExitExists) {
          clash.push_back(st.error().message);
          break;
        }
        PB_TRY(st);
      }
      if (!clash.empty()) {
        std::string list;
        for (auto& c : clash) list += (list.empty() ? "" : ", ") + c;
        return make_error(kExitExists, "failed to restore: destination exists: " + list + " (use --force to replace)");
      }
    }
    PB_TRY(mkdir_p(opt_.dest));
    PB_TRY(tree_.open(opt_.dest));
    for (const Entry* e : parents_) {
      if (e->path.empty()) continue;  // the destination itself
      PB_ASSIGN(DestTree::Kind k, tree_.probe(e->path));
      if (k == DestTree::Kind::Dir) continue;
      PB_ASSIGN(std::string P, tree_.at(e->path));
      if (k == DestTree::Kind::Other && ::unlink(P.c_str()) != 0)
        return fail("failed to replace " + tree_.display(e->path) + ": " + errstr(errno));
      if (::mkdir(P.c_str(), 0700) != 0)
        return fail("failed to create directory " + tree_.display(e->path) + ": " + errstr(errno));
      dirs_.push_back(e);
      touched_.push_back(e->path);
    }
    for (const Entry* e : sel) {
      PB_TRY(restore_one(*e, res));
      ++res.entries;
      progress_.update(res.entries, res.bytes);
    }
    // Directory metadata last, deepest first, so children don't touch mtimes.
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) PB_TRY(dir_metadata(**it, res));
    progress_.done();
    return make_durable();
  }

 private:
  Status dir_metadata(const Entry& e, RestoreResult& res) {
    PB_ASSIGN(std::string P, tree_.at(e.path));
    Fd fd(::open(P.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) return fail("failed to open directory " + tree_.display(e.path) + ": " + errstr(errno));
    return apply_metadata(e, P, fd.get(), res.warnings);
  }

  // A few files: fsync each and its directory (a syncfs would also wait for
  // unrelated dirty data on the same file system). Many: one syncfs.
  Status make_durable() {
    if (opt_.fresh) return {};
    if (touched_.size() > 512) return sync_filesystem(opt_.dest);
    std::set<std::string> dirs;
    for (auto& rel : touched_) {
      PB_ASSIGN(std::string P, tree_.at(rel));
      struct stat st;
      // Only files and directories are opened (never a device node or fifo);
      // the parent directory's sync covers the others' names.
      if (::lstat(P.c_str(), &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
        Fd fd(::open(P.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
        if (fd.valid() && ::fsync(fd.get()) != 0) return fail("failed to sync " + tree_.display(rel) + ": " + errstr(errno));
      }
      if (!rel.empty()) dirs.insert(rel.find('/') == std::string::npos ? "" : rel.substr(0, rel.find_last_of('/')));
    }
    for (auto& d : dirs) {
      PB_ASSIGN(std::string P, tree_.at(d));
      PB_TRY(fsync_dir(P));
    }
    return {};
  }

  Status restore_one(const Entry& e, RestoreResult& res) {
    std::string d = tree_.display(e.path);
    // Hold the parent open for the whole entry (temp file, links, rename).
    PB_ASSIGN(ShortPath H, tree_.hold(e.path));
    const std::string& D = H.path;
    struct stat st;
    bool exists = ::lstat(D.c_str(), &st) == 0;
    if (e.type == EntryType::Dir) {
      if (exists && !S_ISDIR(st.st_mode)) {
        if (::unlink(D.c_str()) != 0) return fail("failed to replace " + d + ": " + errstr(errno));
        exists = false;
      }
      if (!exists && ::mkdir(D.c_str(), 0700) != 0) return fail("failed to create directory " + d + ": " + errstr(errno));
      dirs_.push_back(&e);
      if (touched_.size() <= 512) touched_.push_back(e.path);
      return {};
    }
    if (exists && S_ISDIR(st.st_mode)) {
      res.warnings.push_back("not replacing directory " + d + " with a " + std::string(1, char(e.type)) + " entry");
      return {};
    }
    // Build under a temp name beside the destination, then rename over it.
    std::string T = opt_.fresh ? D : temp_name(dirname_of(D), "planb-restore");
    switch (e.type) {
      case EntryType::File: {
        Fd fd(::open(T.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!fd.valid()) return fail("failed to create a temporary file beside " + d + ": " + errstr(errno));
        auto st2 = e.has_content() ? write_content(store_.objects(), e, fd.get(), d) : Status{};
        if (st2.ok()) st2 = apply_metadata(e, T, fd.get(), res.warnings);
        if (!st2.ok()) {
          ::unlink(T.c_str());
          return st2;
        }
        if (e.flags & (kFlagUnreadable | kFlagStale | kFlagChanging))
          res.warnings.push_back(d + ": captured " +
                                 ((e.flags & kFlagUnreadable) ? "as unreadable (empty)"
                                  : (e.flags & kFlagStale)   ? "unreadable; content is from an earlier snapshot"
                                                             : "while it kept changing"));
        ++res.files;
        res.bytes += e.size;
        written_.insert(e.path);
        break;
      }
      case EntryType::Hardlink: {
        if (written_.count(e.target)) {
          PB_ASSIGN(ShortPath L, tree_.hold(e.target));
          if (::link(L.c_str(), T.c_str()) != 0)
            return fail("failed to link " + d + " to " + tree_.display(e.target) + ": " + errstr(errno));
          break;
        }
        // First link not restored with it: restore as a copy of its content.
        const Entry* t = m_.find(e.target);
        if (!t || t->type != EntryType::File)
          return make_error(kExitCorrupt, "failed to restore " + d + ": hard link target " + e.target + " is not in the snapshot");
        Entry copy = *t;
        copy.path = e.path;
        return restore_one(copy, res);
      }
      case EntryType::Symlink:
        if (::symlink(e.target.c_str(), T.c_str()) != 0) return fail("failed to create symlink " + d + ": " + errstr(errno));
        PB_TRY(apply_metadata(e, T, -1, res.warnings));
        break;
      default: {
        mode_t type = e.type == EntryType::Fifo ? S_IFIFO : e.type == EntryType::Socket ? S_IFSOCK
                      : e.type == EntryType::Char ? S_IFCHR : S_IFBLK;
        if (::mknod(T.c_str(), type | 0600, dev_t(e.rdev)) != 0)
          return fail("failed to create " + d + ": " + errstr(errno));
        PB_TRY(apply_metadata(e, T, -1, res.warnings));
      }
    }
    if (!opt_.fresh && ::rename(T.c_str(), D.c_str()) != 0) {
      ::unlink(T.c_str());
      return fail("failed to rename a temporary file to " + d + ": " + errstr(errno));
    }
    if (touched_.size() <= 512) touched_.push_back(e.path);
    return {};
  }

  Store& store_;
  const Manifest& m_;
  const RestoreOptions& opt_;
  Progress progress_;
  DestTree tree_;
  std::vector<const Entry*> parents_, dirs_;
  std::unordered_set<std::string> written_;
  std::vector<std::string> touched_;
};

}  // namespace

Result<RestoreResult> restore_entries(Store& store, const Manifest& m, const RestoreOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  RestoreResult res;
  Restorer r(store, m, opt);
  PB_TRY(r.run(res));
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace planb
