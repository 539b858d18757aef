#include "capture.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "chunker.hpp"
#include "content_writer.hpp"
#include "names.hpp"
#include "progress.hpp"
#include "xattrs.hpp"

namespace planb {

std::vector<std::string> default_excludes() {
  return {"/proc/*", "/sys/*", "/dev/*", "/run/*", "/tmp/*"};
}

bool excluded(const std::vector<std::string>& patterns, const std::string& rel) {
  if (rel.empty()) return false;
  std::string abs = "/" + rel;
  auto slash = rel.find_last_of('/');
  const char* base = rel.c_str() + (slash == std::string::npos ? 0 : slash + 1);
  for (auto& p : patterns) {
    if (p.find('/') != std::string::npos) {
      std::string pat = p[0] == '/' ? p : "/" + p;
      while (pat.size() > 1 && pat.back() == '/') pat.pop_back();
      if (fnmatch(pat.c_str(), abs.c_str(), FNM_PATHNAME) == 0) return true;
    } else if (fnmatch(p.c_str(), base, 0) == 0) {
      return true;
    }
  }
  return false;
}

namespace {

struct DevIno {
  uint64_t dev, ino;
  bool operator==(const DevIno&) const = default;
};
struct DevInoHash {
  size_t operator()(const DevIno& d) const { return d.dev * 1000003u ^ d.ino; }
};

class Capturer {
 public:
  Capturer(Store& store, const CaptureOptions& opt, Manifest* prev, const std::atomic<size_t>* ready,
           const std::atomic<bool>* done)
      : store_(store), obj_(store.objects()), opt_(opt), prev_(prev), ready_(ready), done_(done), names_(opt.source),
        progress_("capture " + opt.host, opt.progress) {
    patterns_ = opt.excludes;
    if (opt.default_excludes)
      for (auto& p : default_excludes()) patterns_.push_back(p);
    buf_.resize(1 << 20);
    if (prev_) out_.reserve(prev_->entries.size() + prev_->entries.size() / 8 + 1024);
  }

  Status run(Manifest& out) {
    struct stat st;
    if (::stat(opt_.source.c_str(), &st) != 0)
      return make_error(kExitNotFound, "failed to read source " + opt_.source + ": " + errstr(errno));
    if (!S_ISDIR(st.st_mode))
      return make_error(kExitUsage, "failed to read source " + opt_.source + ": not a directory");
    root_dev_ = st.st_dev;
    Fd fd(::open(opt_.source.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return fail("failed to open source " + opt_.source + ": " + errstr(errno));
    Entry root;
    fill_meta(root, "", st);
    PB_TRY(finish_entry(root, st, -1, "", opt_.source));
    out_.push_back(std::move(root));
    PB_TRY(walk_dir(fd.get(), ""));
    PB_TRY(obj_.commit());
    progress_.done();
    out.entries = std::move(out_);
    return {};
  }

  CaptureResult res;

 private:
  std::string abs_path(const std::string& rel) const {
    return rel.empty() ? opt_.source : join_path(opt_.source, rel);
  }

  // Is previous entry i decoded yet? Waits for the decoding thread.
  bool prev_ready(size_t i) {
    for (;;) {
      if (i < ready_->load(std::memory_order_acquire)) return true;
      if (done_->load(std::memory_order_acquire)) return i < ready_->load(std::memory_order_acquire);
      std::this_thread::yield();
    }
  }

  // The previous snapshot's entry for `path`: a cursor, as both are sorted.
  // Entries behind the cursor are never looked at again, so their fields
  // may be moved out.
  Entry* prev_entry(const std::string& path) {
    if (!prev_) return nullptr;
    auto& v = prev_->entries;
    while (prev_ready(pi_) && path_less(v[pi_].path, path)) ++pi_;
    if (prev_ready(pi_) && v[pi_].path == path) return &v[pi_];
    return nullptr;
  }

  void fill_meta(Entry& e, const std::string& rel, const struct stat& st) {
    e.path = rel;
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.mtime_sec = st.st_mtim.tv_sec;
    e.mtime_nsec = uint32_t(st.st_mtim.tv_nsec);
    e.ctime_sec = st.st_ctim.tv_sec;
    e.ctime_nsec = uint32_t(st.st_ctim.tv_nsec);
    e.ino = st.st_ino;
    switch (st.st_mode & S_IFMT) {
      case S_IFREG: e.type = EntryType::File; e.size = st.st_size; break;
      case S_IFDIR: e.type = EntryType::Dir; break;
      case S_IFLNK: e.type = EntryType::Symlink; e.size = st.st_size; break;
      case S_IFIFO: e.type = EntryType::Fifo; break;
      case S_IFSOCK: e.type = EntryType::Socket; break;
      case S_IFCHR: e.type = EntryType::Char; e.rdev = st.st_rdev; break;
      case S_IFBLK: e.type = EntryType::Block; e.rdev = st.st_rdev; break;
    }
  }

  static bool stat_cache_hit(const Entry& e, const Entry* p) {
    return p && p->type == e.type && p->ino == e.ino && p->ctime_sec == e.ctime_sec &&
           p->ctime_nsec == e.ctime_nsec && p->mtime_sec == e.mtime_sec &&
           p->mtime_nsec == e.mtime_nsec && p->size == e.size && p->mode == e.mode &&
           p->uid == e.uid && p->gid == e.gid &&
           !(p->flags & (kFlagChanging | kFlagStale | kFlagUnreadable));
  }

  // Names, xattrs and link target: reused from the previous snapshot when the
  // inode's ctime says nothing changed.
  // A short path for a (directory fd, name) pair: the real one when it is
  // short, else through /proc/self/fd, so paths beyond PATH_MAX still work.
  static std::string short_path(int dirfd, const std::string& name, const std::string& abs) {
    if (dirfd < 0 || abs.size() < 2048) return abs;
    return "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
  }

  Status finish_entry(Entry& e, const struct stat& st, int dirfd, const std::string& name, const std::string& abs) {
    Entry* p = prev_entry(e.path);
    if (p && p->type == e.type && p->ino == e.ino && p->ctime_sec == e.ctime_sec &&
        p->ctime_nsec == e.ctime_nsec && p->uid == e.uid && p->gid == e.gid) {
      e.uname = std::move(p->uname);
      e.gname = std::move(p->gname);
      e.xattrs = std::move(p->xattrs);
      if (e.type == EntryType::Symlink) e.target = std::move(p->target);
      return {};
    }
    e.uname = names_.user(st.st_uid);
    e.gname = names_.group(st.st_gid);
    auto x = read_xattrs(short_path(dirfd, name, abs), abs);
    if (x.ok()) e.xattrs = std::move(*x);
    else warn(x.error().message);
    if (e.type == EntryType::Symlink) {
      std::string t(st.st_size + 1, '\0');
      ssize_t n = dirfd >= 0 ? ::readlinkat(dirfd, name.c_str(), t.data(), t.size())
                             : ::readlink(abs.c_str(), t.data(), t.size());
      if (n < 0) {
        warn("failed to read symlink " + abs + ": " + errstr(errno));
        ++res.unreadable;
        n = 0;
      }
      t.resize(n);
      e.target = t;
      e.size = t.size();
    }
    return {};
  }

  void warn(std::string msg) { res.warnings.push_back(std::move(msg)); }

  Status walk_dir(int dirfd, const std::string& rel) {
    std::vector<std::string> names;
    {
      int dup = ::dup(dirfd);
      DIR* d = ::fdopendir(dup);
      if (!d) {
        ::close(dup);
        return fail("failed to list " + abs_path(rel) + ": " + errstr(errno));
      }
      errno = 0;
      while (auto* de = ::readdir(d)) {
        const char* n = de->d_name;
        if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0))) continue;
        names.emplace_back(n);
      }
      ::closedir(d);
    }
    std::sort(names.begin(), names.end());
    for (auto& name : names) {
      std::string crel = rel.empty() ? name : rel + "/" + name;
      if (excluded(patterns_, crel)) continue;
      struct stat st;
      if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // vanished since listed
        warn("failed to stat " + abs_path(crel) + ": " + errstr(errno));
        ++res.unreadable;
        continue;
      }
      Entry e;
      fill_meta(e, crel, st);
      std::string abs = abs_path(crel);
      if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
        auto [it, fresh] = links_.emplace(DevIno{st.st_dev, st.st_ino}, crel);
        if (!fresh) {
          e.type = EntryType::Hardlink;
          e.target = it->second;
          e.size = 0;
          prev_entry(crel);
          ++res.hardlinks;
          out_.push_back(std::move(e));
          continue;
        }
      }
      PB_TRY(finish_entry(e, st, dirfd, name, abs));
      ++res.entries;
      switch (e.type) {
        case EntryType::File:
          PB_TRY(capture_file(dirfd, name, e, st));
          if (vanished_) {  // deleted between listing and reading: not part of this snapshot
            vanished_ = false;
            --res.files;
            --res.entries;
            res.bytes_total -= e.size;
            continue;
          }
          break;
        case EntryType::Dir: ++res.dirs; break;
        case EntryType::Symlink: ++res.symlinks; break;
        default: ++res.specials; break;
      }
      bool descend = e.type == EntryType::Dir && (!opt_.one_file_system || st.st_dev == root_dev_);
      out_.push_back(std::move(e));
      progress_.update(out_.size(), res.bytes_read);
      if (descend) {
        int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
        Fd sub(::openat(dirfd, name.c_str(), flags));
        if (!sub.valid()) {
          warn("failed to open directory " + abs + ": " + errstr(errno));
          ++res.unreadable;
          continue;
        }
        PB_TRY(walk_dir(sub.get(), crel));
      }
    }
    return {};
  }

  Status capture_file(int dirfd, const std::string& name, Entry& e, const struct stat& st0) {
    ++res.files;
    res.bytes_total += e.size;
    Entry* p = prev_entry(e.path);
    if (stat_cache_hit(e, p)) {
      e.content = p->content;
      e.extents = std::move(p->extents);
      e.flags = p->flags & kFlagSparse;
      ++res.files_unchanged;
      return {};
    }
    struct stat st = st0;
    for (int attempt = 0;; ++attempt) {
      bool changed = false;
      auto r = read_content(dirfd, name, e, st, changed);
      if (!r.ok()) {
        warn(r.error().message);
        ++res.unreadable;
        if (p && p->type == EntryType::File && !(p->flags & kFlagUnreadable)) {
          e.content = p->content;
          e.extents = p->extents;
          e.size = p->size;
          e.flags = kFlagStale | (p->flags & kFlagSparse);
        } else {
          e.flags = kFlagUnreadable;
        }
        return {};
      }
      if (vanished_) return {};
      if (!changed) break;
      if (attempt >= opt_.change_retries) {
        e.flags |= kFlagChanging;
        ++res.changing;
        warn("file changed while being read (" + std::to_string(attempt + 1) +
             " attempts), recorded as changing: " + abs_path(e.path));
        break;
      }
      if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) break;
      fill_meta(e, e.path, st);
    }
    ++res.files_read;
    return {};
  }

  // Reads, hashes and stores one file. Sets `changed` if it changed meanwhile.
  Status read_content(int dirfd, const std::string& name, Entry& e, const struct stat& st, bool& changed) {
    std::string abs = abs_path(e.path);
    int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    Fd fd(::openat(dirfd, name.c_str(), flags | O_NOATIME));
    if (!fd.valid() && errno == EPERM) fd = Fd(::openat(dirfd, name.c_str(), flags));
    if (!fd.valid() && errno == ENOENT) {
      vanished_ = true;
      return {};
    }
    if (!fd.valid()) return fail("failed to read " + abs + ": " + errstr(errno));
    struct stat fst;
    if (::fstat(fd.get(), &fst) != 0 || fst.st_ino != st.st_ino) {
      changed = true;
      return {};
    }
    e.extents.clear();
    e.flags &= ~kFlagSparse;
    if (fst.st_size > 0 && uint64_t(fst.st_blocks) * 512 < uint64_t(fst.st_size)) scan_holes(fd.get(), e, fst.st_size);
    // Read in blocks into the content writer; read one byte past the stat
    // size so a file that grew is noticed.
    ContentWriter w(obj_);
    uint64_t total = 0;
    for (;;) {
      PB_ASSIGN(size_t n, read_full(fd.get(), buf_.data(), buf_.size(), abs));
      total += n;
      res.bytes_read += n;
      if (n) PB_TRY(w.add(std::string_view(buf_.data(), n)));
      if (n < buf_.size()) break;
      progress_.update(out_.size(), res.bytes_read);
    }
    PB_ASSIGN(auto done, w.finish());
    e.content = done.id;
    res.objects_new += done.new_objects;
    res.bytes_new += done.stored_bytes;
    struct stat after;
    if (::fstat(fd.get(), &after) != 0 || total != uint64_t(st.st_size) ||
        after.st_size != st.st_size || after.st_mtim.tv_sec != st.st_mtim.tv_sec ||
        after.st_mtim.tv_nsec != st.st_mtim.tv_nsec || after.st_ctim.tv_sec != st.st_ctim.tv_sec ||
        after.st_ctim.tv_nsec != st.st_ctim.tv_nsec) {
      changed = true;
      e.size = total;
    }
    if (obj_.pending() > 50000 || obj_.pending_bytes() > (512u << 20)) PB_TRY(obj_.commit());
    return {};
  }

  void scan_holes(int fd, Entry& e, off_t size) {
    off_t pos = 0;
    while (pos < size) {
      off_t data = ::lseek(fd, pos, SEEK_DATA);
      if (data < 0) break;  // ENXIO: only a hole remains
      off_t hole = ::lseek(fd, data, SEEK_HOLE);
      if (hole < 0) hole = size;
      e.extents.emplace_back(uint64_t(data), uint64_t(hole - data));
      pos = hole;
    }
    ::lseek(fd, 0, SEEK_SET);
    if (e.extents.size() == 1 && e.extents[0].first == 0 && e.extents[0].second == uint64_t(size)) {
      e.extents.clear();
      return;
    }
    e.flags |= kFlagSparse;
  }

  Store& store_;
  ObjectStore& obj_;
  const CaptureOptions& opt_;
  Manifest* prev_;
  const std::atomic<size_t>* ready_;
  const std::atomic<bool>* done_;
  NameMap names_;
  Progress progress_;
  std::vector<std::string> patterns_;
  std::vector<Entry> out_;
  std::unordered_map<DevIno, std::string, DevInoHash> links_;
  std::string buf_;
  size_t pi_ = 0;
  dev_t root_dev_ = 0;
  bool vanished_ = false;
};

}  // namespace

Result<CaptureResult> capture(Store& store, const CaptureOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  PB_TRY(validate_host_name(opt.host));
  if (opt.source.rfind("ssh://", 0) == 0)
    return make_error(kExitUsage, "failed to read source " + opt.source + ": ssh:// sources are not supported yet");
  PB_ASSIGN(FileLock store_lock, store.lock_store(false));
  PB_ASSIGN(FileLock host_lock, store.lock_host(opt.host));
  store.objects().clean_stale_temps();
  store.objects().clean_stale_temps(store.host_dir(opt.host) + "/manifests");
  store.objects().clean_stale_temps(store.host_dir(opt.host) + "/refs");

  PB_ASSIGN(auto latest, store.read_ref(opt.host, "latest"));
  Manifest prev;
  Hash parent;
  uint64_t seq = 1;
  std::string prev_raw, prev_path;
  if (latest) {
    prev_path = store.manifest_path(opt.host, latest->sequence);
    PB_ASSIGN(std::string data, store.read_manifest_bytes(opt.host, latest->sequence));
    if (manifest_id(data) != latest->manifest)
      return make_error(kExitCorrupt, "failed to read snapshot " + std::to_string(latest->sequence) +
                                          " of host " + opt.host + ": manifest does not match the latest ref");
    PB_ASSIGN(prev_raw, manifest_begin(data, prev_path, prev));
    parent = latest->manifest;
    seq = latest->sequence + 1;
  }

  // The previous manifest decodes on a second thread while the walk, which
  // visits paths in the same order, consumes its entries.
  std::atomic<size_t> ready{0};
  std::atomic<bool> done{!latest};
  Status decoded;
  std::thread decoder;
  if (latest) {
    decoder = std::thread([&] {
      decoded = manifest_decode_entries(prev_raw, prev, prev_path,
                                        [&](size_t n) { ready.store(n, std::memory_order_release); });
      done.store(true, std::memory_order_release);
    });
  }
  struct Joiner {
    std::thread& t;
    ~Joiner() {
      if (t.joinable()) t.join();
    }
  } joiner{decoder};
  auto tprev = std::chrono::steady_clock::now();
  Capturer c(store, opt, latest ? &prev : nullptr, &ready, &done);
  Manifest m;
  Status walked = c.run(m);
  if (decoder.joinable()) decoder.join();
  PB_TRY(decoded);
  PB_TRY(walked);
  auto twalk = std::chrono::steady_clock::now();
  CaptureResult res = std::move(c.res);
  m.header.host = opt.host;
  m.header.sequence = seq;
  m.header.created_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
  char resolved[PATH_MAX];
  m.header.source = ::realpath(opt.source.c_str(), resolved) ? resolved : opt.source;
  m.header.parent = parent;
  m.header.total_bytes = res.bytes_total;
  res.entries = m.entries.size();

  // Objects are durable (commit in run()); now the manifest, then the ref.
  std::string data = encode_manifest(m);
  std::string mpath = store.manifest_path(opt.host, seq);
  PB_TRY(mkdir_p(dirname_of(mpath)));
  PB_TRY(write_file_atomic(mpath, data));
  res.sequence = seq;
  res.manifest = manifest_id(data);
  PB_TRY(store.write_ref(opt.host, "latest", Ref{seq, res.manifest}));
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (std::getenv("PLANB_TIMING")) {
    auto d = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    std::fprintf(stderr, "timing: load previous %.3f, walk %.3f, write %.3f\n", d(t0, tprev), d(tprev, twalk),
                 d(twalk, std::chrono::steady_clock::now()));
  }
  return res;
}

}  // namespace planb
