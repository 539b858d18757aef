// Failback, the receiving side: check and apply a failback delivery to the
// target's root directory (lib/failback.hpp).
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <unordered_map>

#include "bundle.hpp"
#include "cli.hpp"
#include "content_writer.hpp"
#include "failback.hpp"
#include "fsutil.hpp"
#include "json.hpp"
#include "progress.hpp"
#include "restore.hpp"
#include "store.hpp"

namespace planb {

namespace {

using Clock = std::chrono::steady_clock;

// The target tree, resolved without following any symlink on the way (a
// symlink at /var/lib on the target must not redirect writes or checks).
class Target {
 public:
  Status open(const std::string& dir) {
    root_ = Fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root_.valid()) return make_error(kExitNotFound, "failed to open target directory " + dir + ": " + errstr(errno));
    dir_ = dir;
    return {};
  }
  // Parent directory fd of `rel` and its last component; errno-style result.
  int parent(const std::string& rel, Fd& out, std::string& name) const {
    auto slash = rel.find_last_of('/');
    std::string dir = slash == std::string::npos ? "." : rel.substr(0, slash);
    name = slash == std::string::npos ? rel : rel.substr(slash + 1);
    struct open_how how {};
    how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long fd;
    do fd = ::syscall(SYS_openat2, root_.get(), dir.c_str(), &how, sizeof how);
    while (fd < 0 && errno == EAGAIN);
    if (fd < 0) return errno;
    out = Fd(int(fd));
    return 0;
  }
  // lstat of rel: 0, ENOENT, ELOOP (a symlink on the way), ...
  int stat(const std::string& rel, struct stat& st) const {
    if (rel.empty()) return ::fstat(root_.get(), &st) == 0 ? 0 : errno;
    Fd p;
    std::string name;
    if (int e = parent(rel, p, name)) return e == ENOTDIR ? ENOENT : e;
    return ::fstatat(p.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
  }
  Result<std::string> readlink(const std::string& rel) const {
    Fd p;
    std::string name;
    if (int e = parent(rel, p, name)) return fail(errstr(e));
    char b[4096];
    ssize_t n = ::readlinkat(p.get(), name.c_str(), b, sizeof b);
    if (n < 0) return fail(errstr(errno));
    return std::string(b, size_t(n));
  }
  Result<Fd> open_file(const std::string& rel) const {
    Fd p;
    std::string name;
    if (int e = parent(rel, p, name)) return fail(errstr(e));
    Fd f(::openat(p.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (!f.valid()) return fail(errstr(errno));
    return f;
  }
  int remove(const std::string& rel, bool dir) const {
    Fd p;
    std::string name;
    if (int e = parent(rel, p, name)) return e;
    return ::unlinkat(p.get(), name.c_str(), dir ? AT_REMOVEDIR : 0) == 0 ? 0 : errno;
  }
  const std::string& dir() const { return dir_; }

 private:
  Fd root_;
  std::string dir_;
};

std::string shown(const std::string& rel) { return "/" + rel; }

char type_of(const struct stat& st) {
  if (S_ISREG(st.st_mode)) return 'f';
  if (S_ISDIR(st.st_mode)) return 'd';
  if (S_ISLNK(st.st_mode)) return 'l';
  if (S_ISFIFO(st.st_mode)) return 'p';
  if (S_ISSOCK(st.st_mode)) return 's';
  if (S_ISCHR(st.st_mode)) return 'c';
  return 'b';
}

// Streams a target file into the object store; its content id.
Result<Hash> store_target_file(const Target& t, const std::string& rel, ObjectStore& objects, uint64_t& bytes) {
  PB_ASSIGN(Fd fd, t.open_file(rel));
  ContentWriter w(objects);
  std::string buf(1 << 20, '\0');
  for (;;) {
    PB_ASSIGN(size_t n, read_full(fd.get(), buf.data(), buf.size(), shown(rel)));
    if (n == 0) break;
    bytes += n;
    PB_TRY(w.add(std::string_view(buf.data(), n)));
    if (n < buf.size()) break;
  }
  PB_ASSIGN(auto done, w.finish());
  return done.id;
}

struct Loaded {
  Manifest m;
  std::unordered_map<std::string, const Entry*> by_path;
  void index() {
    by_path.clear();
    for (auto& e : m.entries) by_path[e.path] = &e;
  }
};

// The file entry holding a (hard link) entry's content.
const Entry* content_entry(const Loaded& l, const Entry& e) {
  if (e.type != EntryType::Hardlink) return &e;
  auto it = l.by_path.find(e.target);
  return it == l.by_path.end() ? nullptr : it->second;
}

// Checks the target against base (and seeds the store with the base contents
// found there). Mismatches are collected, not errors.
Status check_base(const Target& t, const Loaded& base, ObjectStore& objects, std::vector<ReceiveMismatch>& mm,
                  uint64_t& bytes_read, bool progress) {
  Progress prog("failback check", progress);
  uint64_t n = 0;
  for (const Entry& e : base.m.entries) {
    struct stat st;
    int err = t.stat(e.path, st);
    prog.update(++n, bytes_read);
    if (err == ELOOP) {
      mm.push_back({shown(e.path), "a symlink on the way on the target"});
      continue;
    }
    if (err == ENOENT) {
      mm.push_back({shown(e.path), "missing on the target"});
      continue;
    }
    if (err) return fail("failed to check " + shown(e.path) + " on the target: " + errstr(err));
    char want = e.type == EntryType::Hardlink ? 'f' : char(e.type);
    if (type_of(st) != want) {
      mm.push_back({shown(e.path), std::string("is of another type on the target ('") + type_of(st) + "', the image has '" +
                                       want + "')"});
      continue;
    }
    if (e.type == EntryType::Symlink) {
      auto l = t.readlink(e.path);
      if (!l.ok() || *l != e.target) mm.push_back({shown(e.path), "symlink target differs on the target"});
      continue;
    }
    if (e.type != EntryType::File && e.type != EntryType::Hardlink) continue;
    const Entry* c = content_entry(base, e);
    if (!c || !c->has_content()) continue;  // sent whole (--force)
    if (uint64_t(st.st_size) != c->size) {
      mm.push_back({shown(e.path), "content differs on the target (size " + std::to_string(st.st_size) + ", the image has " +
                                       std::to_string(c->size) + ")"});
      continue;
    }
    auto id = store_target_file(t, e.path, objects, bytes_read);
    if (!id.ok()) return fail("failed to read " + shown(e.path) + " on the target: " + id.error().message);
    if (*id != c->content) mm.push_back({shown(e.path), "content differs on the target"});
  }
  prog.done();
  return objects.commit();
}

// Paths next adds must be free on the target (a directory may stay a directory).
Status check_new(const Target& t, const Loaded& base, const Loaded& next, std::vector<ReceiveMismatch>& mm) {
  for (const Entry& e : next.m.entries) {
    if (base.by_path.count(e.path)) continue;
    struct stat st;
    int err = t.stat(e.path, st);
    if (err == ENOENT) continue;
    if (err == ELOOP) {
      mm.push_back({shown(e.path), "a symlink on the way on the target"});
      continue;
    }
    if (err) return fail("failed to check " + shown(e.path) + " on the target: " + errstr(err));
    if (S_ISDIR(st.st_mode) && e.type == EntryType::Dir) continue;
    mm.push_back({shown(e.path), "exists on the target but not in the image"});
  }
  return {};
}

Error refuse(const std::vector<ReceiveMismatch>& mm) {
  std::string list;
  for (size_t i = 0; i < mm.size() && i < 5; ++i) list += (i ? "; " : "") + mm[i].path + ": " + mm[i].why;
  if (mm.size() > 5) list += "; and " + std::to_string(mm.size() - 5) + " more";
  return make_error(kExitExists, "failed to fail back: the target differs from what the rescue VM started from at " +
                                     std::to_string(mm.size()) + " path(s): " + list + " (use --force to replace them)");
}

Result<Loaded> load(const std::string& bytes, const std::string& what) {
  Loaded l;
  PB_ASSIGN(l.m, decode_manifest(bytes, what));
  l.index();
  return l;
}

Status fresh_dir(const std::string& d) {
  std::error_code ec;
  std::filesystem::remove_all(d, ec);
  return mkdir_p(d, 0700);
}

}  // namespace

Result<ReceiveResult> failback_receive_check(const std::string& base_bytes, const std::string& next_bytes,
                                             const ReceiveOptions& opt) {
  auto t0 = Clock::now();
  ReceiveResult r;
  PB_ASSIGN(Loaded base, load(base_bytes, "the base manifest"));
  PB_ASSIGN(Loaded next, load(next_bytes, "the new manifest"));
  Target t;
  PB_TRY(t.open(opt.dir));
  PB_TRY(fresh_dir(opt.work));
  {
    PB_ASSIGN(Store store, Store::open(opt.work + "/store", true));
    uint64_t bytes = 0;
    PB_TRY(check_base(t, base, store.objects(), r.mismatches, bytes, opt.progress));
    PB_TRY(check_new(t, base, next, r.mismatches));
  }
  std::error_code ec;
  std::filesystem::remove_all(opt.work, ec);
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

Result<ReceiveResult> failback_receive_apply(const std::string& base_bytes, const std::string& bundle_path,
                                             const ReceiveOptions& opt) {
  auto t0 = Clock::now();
  ReceiveResult r;
  PB_ASSIGN(Loaded base, load(base_bytes, "the base manifest"));
  const std::string host = base.m.header.host;
  PB_TRY(validate_host_name(host));
  Target t;
  PB_TRY(t.open(opt.dir));
  std::string store_dir = opt.work + "/store";
  {
    std::error_code ec;
    std::filesystem::remove_all(store_dir, ec);
  }
  PB_ASSIGN(Store store, Store::open(store_dir, true));
  // The base manifest under its own host and sequence, as the bundle's parent.
  std::string mpath = store.manifest_path(host, base.m.header.sequence);
  PB_TRY(mkdir_p(dirname_of(mpath)));
  PB_TRY(write_file_atomic(mpath, base_bytes));
  PB_TRY(store.write_ref(host, "latest", {base.m.header.sequence, manifest_id(base_bytes)}));
  // Seed the base contents from the target (and check it holds the base).
  uint64_t read = 0;
  PB_TRY(check_base(t, base, store.objects(), r.mismatches, read, opt.progress));
  if (!r.mismatches.empty() && !opt.force) return refuse(r.mismatches);
  PB_ASSIGN(ApplyResult ar, apply_bundle(store, bundle_path));
  PB_ASSIGN(Loaded next, load(*store.read_manifest_bytes(host, ar.header.sequence), "the new manifest"));
  if (!opt.force) {
    std::vector<ReceiveMismatch> mm;
    PB_TRY(check_new(t, base, next, mm));
    if (!mm.empty()) return refuse(mm);
  }
  r.mismatches.clear();
  // Deletions (deepest first): gone on the VM, or a directory that became something else.
  for (auto it = base.m.entries.rbegin(); it != base.m.entries.rend(); ++it) {
    const Entry& e = *it;
    if (e.path.empty()) continue;
    auto n = next.by_path.find(e.path);
    bool gone = n == next.by_path.end();
    bool dir_replaced = !gone && e.type == EntryType::Dir && n->second->type != EntryType::Dir;
    if (!gone && !dir_replaced) continue;
    int err = t.remove(e.path, e.type == EntryType::Dir);
    if (err == 0) ++r.deleted;
    else if (err == ENOTEMPTY || err == EEXIST)
      r.warnings.push_back("not deleting " + shown(e.path) + ": the directory holds files on the target that the image did not have");
    else if (err != ENOENT)
      return fail("failed to delete " + shown(e.path) + " on the target: " + errstr(err));
  }
  // Restore what is new or changed, with its metadata.
  RestoreOptions ro;
  ro.dest = opt.dir;
  ro.force = true;
  ro.progress = opt.progress;
  for (const Entry& e : next.m.entries) {
    auto b = base.by_path.find(e.path);
    if (b != base.by_path.end() && b->second->same_metadata(e)) continue;
    if (e.path.empty()) continue;
    // Selection is by prefix: a changed directory brings its (changed) children.
    if (!ro.paths.empty() && path_within(e.path, ro.paths.back())) continue;
    ro.paths.push_back(e.path);
  }
  if (!ro.paths.empty()) {
    PB_ASSIGN(RestoreResult rr, restore_entries(store, next.m, ro));
    r.files = rr.files;
    r.entries = rr.entries;
    r.bytes = rr.bytes;
    for (auto& w : rr.warnings) r.warnings.push_back(w);
  }
  // The root directory's own metadata changed.
  if (auto b = base.by_path.find(""), n = next.by_path.find(""); b != base.by_path.end() && n != next.by_path.end() &&
                                                                  !b->second->same_metadata(*n->second))
    r.warnings.push_back("the root directory's metadata changed on the VM; left as it is on the target");
  std::error_code ec;
  std::filesystem::remove_all(opt.work, ec);
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

// ------------------------------------------------------------ the stream

namespace {

class Reader {
 public:
  explicit Reader(int fd) : fd_(fd) {}
  Result<std::string> line() {
    std::string l;
    for (;;) {
      PB_ASSIGN(int c, get());
      if (c < 0) return make_error(kExitCorrupt, "failed to read the failback stream: truncated");
      if (c == '\n') return l;
      if (l.size() > 256) return make_error(kExitCorrupt, "failed to read the failback stream: malformed line");
      l += char(c);
    }
  }
  Status bytes(uint64_t n, const std::function<Status(std::string_view)>& sink) {
    while (n > 0) {
      if (pos_ == len_) {
        PB_TRY(fill());
        if (len_ == 0) return make_error(kExitCorrupt, "failed to read the failback stream: truncated");
      }
      size_t k = size_t(std::min<uint64_t>(n, len_ - pos_));
      PB_TRY(sink(std::string_view(buf_ + pos_, k)));
      pos_ += k;
      n -= k;
    }
    return {};
  }

 private:
  Result<int> get() {
    if (pos_ == len_) {
      PB_TRY(fill());
      if (len_ == 0) return -1;
    }
    return int(static_cast<unsigned char>(buf_[pos_++]));
  }
  Status fill() {
    pos_ = 0;
    for (;;) {
      ssize_t n = ::read(fd_, buf_, sizeof buf_);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail("failed to read the failback stream: " + errstr(errno));
      len_ = size_t(n);
      return {};
    }
  }
  int fd_;
  char buf_[1 << 16];
  size_t pos_ = 0, len_ = 0;
};

Status section(int fd, const std::string& name, std::string_view data) {
  std::string h = name + " " + std::to_string(data.size()) + "\n";
  PB_TRY(write_all(fd, h.data(), h.size(), "the failback stream"));
  return write_all(fd, data.data(), data.size(), "the failback stream");
}

}  // namespace

Status write_failback_stream(int fd, const FailbackStream& s) {
  std::string h = "planb-failback 1\n";
  PB_TRY(write_all(fd, h.data(), h.size(), "the failback stream"));
  PB_TRY(section(fd, "kind", s.kind));
  PB_TRY(section(fd, "base", s.base));
  if (s.kind == "check") PB_TRY(section(fd, "next", s.next));
  if (s.kind == "apply") {
    Fd in(::open(s.bundle_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in.valid()) return fail("failed to open " + s.bundle_path + ": " + errstr(errno));
    struct stat st;
    if (::fstat(in.get(), &st) != 0) return fail("failed to stat " + s.bundle_path + ": " + errstr(errno));
    std::string hh = "bundle " + std::to_string(st.st_size) + "\n";
    PB_TRY(write_all(fd, hh.data(), hh.size(), "the failback stream"));
    std::string buf(1 << 20, '\0');
    uint64_t left = uint64_t(st.st_size);
    while (left > 0) {
      PB_ASSIGN(size_t n, read_full(in.get(), buf.data(), std::min<uint64_t>(left, buf.size()), s.bundle_path));
      if (n == 0) return fail("failed to read " + s.bundle_path + ": it shrank");
      PB_TRY(write_all(fd, buf.data(), n, "the failback stream"));
      left -= n;
    }
  }
  std::string e = "end\n";
  return write_all(fd, e.data(), e.size(), "the failback stream");
}

Result<FailbackStream> read_failback_stream(int fd, const std::string& work) {
  Reader r(fd);
  PB_ASSIGN(std::string magic, r.line());
  if (magic.rfind("planb-failback ", 0) != 0)
    return make_error(kExitCorrupt, "failed to read the failback stream: not a failback stream");
  if (magic != "planb-failback 1")
    return make_error(kExitCorrupt, "failed to read the failback stream: unsupported version '" + magic.substr(15) + "'");
  FailbackStream s;
  for (;;) {
    PB_ASSIGN(std::string l, r.line());
    if (l == "end") break;
    auto sp = l.find(' ');
    if (sp == std::string::npos) return make_error(kExitCorrupt, "failed to read the failback stream: malformed section '" + l + "'");
    std::string name = l.substr(0, sp);
    uint64_t len = 0;
    try {
      len = std::stoull(l.substr(sp + 1));
    } catch (...) {
      return make_error(kExitCorrupt, "failed to read the failback stream: bad length in '" + l + "'");
    }
    if (name == "bundle") {
      PB_TRY(mkdir_p(work, 0700));
      s.bundle_path = work + "/delivery.bundle";
      PB_ASSIGN(AtomicFile f, AtomicFile::create(s.bundle_path, 0600));
      PB_TRY(r.bytes(len, [&](std::string_view d) { return write_all(f.fd(), d.data(), d.size(), s.bundle_path); }));
      PB_TRY(f.commit());
      continue;
    }
    if (len > (1ull << 32)) return make_error(kExitCorrupt, "failed to read the failback stream: section " + name + " too big");
    std::string data;
    PB_TRY(r.bytes(len, [&](std::string_view d) -> Status {
      data.append(d);
      return {};
    }));
    if (name == "kind") s.kind = data;
    else if (name == "base") s.base = std::move(data);
    else if (name == "next") s.next = std::move(data);
    // Unknown sections are skipped (forward compatible within version 1).
  }
  if (s.kind != "check" && s.kind != "apply")
    return make_error(kExitCorrupt, "failed to read the failback stream: unknown kind '" + s.kind + "'");
  if (s.base.empty() || (s.kind == "check" && s.next.empty()) || (s.kind == "apply" && s.bundle_path.empty()))
    return make_error(kExitCorrupt, "failed to read the failback stream: missing sections");
  return s;
}

std::string receive_result_json(const ReceiveResult& r) {
  std::vector<std::string> mm, w;
  for (auto& m : r.mismatches) mm.push_back(JsonObject().add("path", m.path).add("why", m.why).str());
  for (auto& x : r.warnings) w.push_back(json_escape(x));
  return JsonObject()
      .add("files", r.files)
      .add("entries", r.entries)
      .add("deleted", r.deleted)
      .add("bytes", r.bytes)
      .add("seconds", r.seconds)
      .add_raw("mismatches", json_array(mm))
      .add_raw("warnings", json_array(w))
      .str();
}

Status failback_receive_main(const FailbackReceiveCmdOptions& o) {
  if (o.dir.empty()) return make_error(kExitUsage, "failed to parse arguments: failback-receive needs DIR");
  std::string work = o.work.empty() ? "/var/tmp/planb-failback-receive-" + std::to_string(::getpid()) : o.work;
  PB_ASSIGN(FailbackStream s, read_failback_stream(0, work));
  ReceiveOptions ro;
  ro.dir = o.dir;
  ro.work = work;
  ro.force = o.force;
  ro.progress = false;
  Result<ReceiveResult> r = s.kind == "check" ? failback_receive_check(s.base, s.next, ro)
                                              : failback_receive_apply(s.base, s.bundle_path, ro);
  if (!r.ok()) {
    std::error_code ec;
    std::filesystem::remove_all(work, ec);
    return r.error();
  }
  if (o.json) std::printf("%s\n", receive_result_json(*r).c_str());
  else if (s.kind == "check")
    std::printf("%zu mismatches\n", r->mismatches.size());
  else
    std::printf("failed back %llu entries (%llu files, %s), %llu deleted, to %s\n",
                static_cast<unsigned long long>(r->entries), static_cast<unsigned long long>(r->files),
                human_bytes(r->bytes).c_str(), static_cast<unsigned long long>(r->deleted), o.dir.c_str());
  for (auto& w : r->warnings) print_warning("planb-invoke", w);
  return {};
}

}  // namespace planb
