#include "object_store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "bytes.hpp"
#include "chunker.hpp"

namespace planb {

namespace {
constexpr char kMagic[4] = {'P', 'B', 'O', '1'};
constexpr size_t kHeader = 16;
constexpr uint8_t kCodecRaw = 0, kCodecZstd = 1;
constexpr int kZstdLevel = 3;
}  // namespace

std::string encode_index(const std::vector<ChunkRef>& chunks) {
  ByteWriter w;
  w.raw("PBIX", 4);
  w.u8(1);
  w.varint(chunks.size());
  for (auto& c : chunks) {
    w.raw(c.id.b.data(), 32);
    w.varint(c.size);
  }
  return std::move(w.buf());
}

Result<std::vector<ChunkRef>> decode_index(std::string_view raw, const std::string& what) {
  ByteReader r(raw);
  auto magic = r.bytes(4);
  if (r.bad() || magic != "PBIX" || r.u8() != 1)
    return make_error(kExitCorrupt, "failed to read chunk index " + what + ": bad header");
  uint64_t n = r.varint();
  if (n > raw.size()) return make_error(kExitCorrupt, "failed to read chunk index " + what + ": bad count");
  std::vector<ChunkRef> out(n);
  for (auto& c : out) {
    r.raw(c.id.b.data(), 32);
    c.size = r.varint();
  }
  if (r.bad() || !r.done())
    return make_error(kExitCorrupt, "failed to read chunk index " + what + ": truncated");
  return out;
}

ObjectStore::ObjectStore(std::string root)
    : root_(std::move(root)),
      objdir_(join_path(root_, "objects")),
      tmpdir_(join_path(root_, "tmp")),
      batch_(root_) {}

std::string ObjectStore::path_of(const Hash& id) const {
  std::string h = id.hex();
  return objdir_ + "/" + h.substr(0, 2) + "/" + h.substr(2);
}

bool ObjectStore::has(const Hash& id) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (staged_.count(id)) return true;
  }
  struct stat st;
  return ::stat(path_of(id).c_str(), &st) == 0;
}

Result<uint64_t> ObjectStore::put(const Hash& id, std::string_view raw, ObjKind kind) {
  if (has(id)) return uint64_t(0);
  std::string buf(kHeader, '\0');
  std::memcpy(buf.data(), kMagic, 4);
  buf[4] = char(kind);
  put_le64(buf.data() + 8, raw.size());
  uint8_t codec = kCodecRaw;
  if (raw.size() >= 64) {
    size_t bound = ZSTD_compressBound(raw.size());
    buf.resize(kHeader + bound);
    size_t n = ZSTD_compress(buf.data() + kHeader, bound, raw.data(), raw.size(), kZstdLevel);
    if (!ZSTD_isError(n) && n < raw.size() - raw.size() / 16) {
      codec = kCodecZstd;
      buf.resize(kHeader + n);
    }
  }
  if (codec == kCodecRaw) {
    buf.resize(kHeader);
    buf.append(raw);
  }
  buf[5] = char(codec);

  std::string hex = id.hex();
  std::string tmp = temp_name(tmpdir_, hex.substr(0, 16));
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
  if (!fd.valid() && errno == ENOENT) {
    PB_TRY(mkdir_p(tmpdir_));
    fd = Fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
  }
  if (!fd.valid()) return fail("failed to create object " + tmp + ": " + errstr(errno));
  auto st = write_all(fd.get(), buf.data(), buf.size(), "object " + hex);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st.error();
  }
  std::string dst = path_of(id);
  // The 256 fan-out directories: created once, then remembered.
  uint8_t fan = id.b[0];
  if (!subdir_ok_[fan].load(std::memory_order_relaxed)) {
    std::string sub = dirname_of(dst);
    if (::mkdir(sub.c_str(), 0755) != 0 && errno != EEXIST) {
      if (errno == ENOENT) {
        PB_TRY(mkdir_p(sub));
      } else {
        ::unlink(tmp.c_str());
        return fail("failed to create directory " + sub + ": " + errstr(errno));
      }
    }
    subdir_ok_[fan].store(true, std::memory_order_relaxed);
  }
  std::lock_guard<std::mutex> g(mu_);
  if (!staged_.insert(id).second) {
    ::unlink(tmp.c_str());
    return uint64_t(0);
  }
  batch_.add(tmp, dst);
  pending_bytes_ += buf.size();
  return uint64_t(buf.size());
}

Status ObjectStore::commit() {
  std::lock_guard<std::mutex> g(mu_);
  auto st = batch_.commit();
  staged_.clear();
  pending_bytes_ = 0;
  return st;
}

Result<std::string> ObjectStore::get(const Hash& id, bool verify) {
  std::string path = path_of(id);
  auto data = read_file(path);
  if (!data.ok()) {
    if (!path_exists(path))
      return make_error(kExitCorrupt, "failed to read object " + id.hex() + ": missing from store");
    return data.error();
  }
  std::string& d = *data;
  if (d.size() < kHeader || std::memcmp(d.data(), kMagic, 4) != 0)
    return make_error(kExitCorrupt, "failed to read object " + id.hex() + ": bad header (" + path + ")");
  ObjKind kind = ObjKind(d[4]);
  uint8_t codec = uint8_t(d[5]);
  uint64_t size = get_le64(d.data() + 8);
  std::string out;
  if (codec == kCodecRaw) {
    if (d.size() - kHeader != size)
      return make_error(kExitCorrupt, "failed to read object " + id.hex() + ": truncated (" + path + ")");
    out = d.substr(kHeader);
  } else if (codec == kCodecZstd) {
    if (size > (uint64_t(1) << 34))
      return make_error(kExitCorrupt, "failed to read object " + id.hex() + ": implausible size");
    out.resize(size);
    size_t n = ZSTD_decompress(out.data(), size, d.data() + kHeader, d.size() - kHeader);
    if (ZSTD_isError(n) || n != size)
      return make_error(kExitCorrupt, "failed to read object " + id.hex() + ": corrupt compressed data (" + path + ")");
  } else {
    return make_error(kExitCorrupt, "failed to read object " + id.hex() + ": unknown codec");
  }
  if (verify) {
    Hash h = hash_bytes(out, kind == ObjKind::Index ? HashDomain::Index : HashDomain::Blob);
    if (h != id)
      return make_error(kExitCorrupt, "failed to verify object " + id.hex() + ": hash mismatch (" + path + ")");
  }
  return out;
}

Result<ObjKind> ObjectStore::kind_of(const Hash& id) {
  Fd fd(::open(path_of(id).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return make_error(kExitCorrupt, "failed to read object " + id.hex() + ": missing from store");
  char h[kHeader];
  PB_ASSIGN(size_t n, read_full(fd.get(), h, kHeader, "object " + id.hex()));
  if (n != kHeader || std::memcmp(h, kMagic, 4) != 0)
    return make_error(kExitCorrupt, "failed to read object " + id.hex() + ": bad header");
  return ObjKind(h[4]);
}

Result<std::vector<ChunkRef>> ObjectStore::expand(const Hash& id, uint64_t size) {
  if (size < kChunkThreshold) return std::vector<ChunkRef>{{id, size}};
  PB_ASSIGN(std::string raw, get(id));
  return decode_index(raw, id.hex());
}

Status ObjectStore::scan(const ScanFn& fn) const {
  DIR* top = ::opendir(objdir_.c_str());
  if (!top) return fail("failed to list " + objdir_ + ": " + errstr(errno));
  std::vector<std::string> subs;
  auto is_hex2 = [](const char* n) {
    return std::strlen(n) == 2 && std::isxdigit(static_cast<unsigned char>(n[0])) &&
           std::isxdigit(static_cast<unsigned char>(n[1]));
  };
  while (auto* e = ::readdir(top)) {
    if (e->d_name[0] == '.') continue;
    if (is_hex2(e->d_name)) subs.push_back(e->d_name);
    else fn(std::nullopt, objdir_ + "/" + e->d_name, 0);
  }
  ::closedir(top);
  std::sort(subs.begin(), subs.end());
  for (auto& sub : subs) {
    std::string dpath = objdir_ + "/" + sub;
    DIR* d = ::opendir(dpath.c_str());
    if (!d) return fail("failed to list " + dpath + ": " + errstr(errno));
    while (auto* e = ::readdir(d)) {
      if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0))) continue;
      struct stat st;
      if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      auto h = e->d_name[0] == '.' ? std::nullopt : Hash::from_hex(sub + e->d_name);
      fn(h, dpath + "/" + e->d_name, uint64_t(st.st_size));
    }
    ::closedir(d);
  }
  return {};
}

void ObjectStore::clean_stale_temps(const std::string& dir_in) const {
  const std::string& dir = dir_in.empty() ? tmpdir_ : dir_in;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (auto* e = ::readdir(d)) {
    std::string name = e->d_name;
    // .<stem>.tmp.<pid>.<n>
    auto p = name.find(".tmp.");
    if (p == std::string::npos) continue;
    pid_t pid = pid_t(std::atoll(name.c_str() + p + 5));
    if (pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM)) continue;
    ::unlinkat(::dirfd(d), name.c_str(), 0);
  }
  ::closedir(d);
}

}  // namespace planb
