#include "manifest.hpp"

#include <zstd.h>

#include <algorithm>
#include <cstring>

#include "bytes.hpp"

namespace planb {

namespace {
constexpr char kMagic[4] = {'P', 'B', 'M', 'F'};
constexpr uint32_t kVersion = 1;

Error corrupt(const std::string& what, const std::string& why) {
  return make_error(kExitCorrupt, "failed to read manifest " + what + ": " + why);
}
}  // namespace

bool Entry::same_metadata(const Entry& o) const {
  return path == o.path && type == o.type && mode == o.mode && uid == o.uid && gid == o.gid &&
         uname == o.uname && gname == o.gname && size == o.size && mtime_sec == o.mtime_sec &&
         mtime_nsec == o.mtime_nsec && rdev == o.rdev && target == o.target &&
         content == o.content && extents == o.extents && xattrs == o.xattrs;
}

int path_compare(std::string_view a, std::string_view b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char ca = a[i], cb = b[i];
    if (ca == cb) continue;
    if (ca == '/') return -1;
    if (cb == '/') return 1;
    return ca < cb ? -1 : 1;
  }
  if (a.size() == b.size()) return 0;
  return a.size() < b.size() ? -1 : 1;
}

bool path_within(std::string_view p, std::string_view dir) {
  if (dir.empty()) return true;
  if (p.size() < dir.size() || p.compare(0, dir.size(), dir) != 0) return false;
  return p.size() == dir.size() || p[dir.size()] == '/';
}

size_t Manifest::lower_bound(std::string_view path) const {
  auto it = std::lower_bound(entries.begin(), entries.end(), path,
                             [](const Entry& e, std::string_view p) { return path_less(e.path, p); });
  return size_t(it - entries.begin());
}

const Entry* Manifest::find(std::string_view path) const {
  size_t i = lower_bound(path);
  if (i < entries.size() && entries[i].path == path) return &entries[i];
  return nullptr;
}

static void encode_header(ByteWriter& w, const ManifestHeader& h) {
  w.raw(kMagic, 4);
  w.varint(kVersion);
  w.str(h.host);
  w.varint(h.sequence);
  w.svarint(h.created_ns);
  w.str(h.source);
  w.raw(h.parent.b.data(), 32);
  w.varint(h.entries);
  w.varint(h.total_bytes);
}

static bool decode_header(ByteReader& r, ManifestHeader& h, std::string& why) {
  auto magic = r.bytes(4);
  if (r.bad() || magic != std::string_view(kMagic, 4)) {
    why = "not a Plan B manifest (bad magic)";
    return false;
  }
  h.version = uint32_t(r.varint());
  if (h.version != kVersion) {
    why = "unsupported manifest version " + std::to_string(h.version);
    return false;
  }
  h.host = r.str();
  h.sequence = r.varint();
  h.created_ns = r.svarint();
  h.source = r.str();
  r.raw(h.parent.b.data(), 32);
  h.entries = r.varint();
  h.total_bytes = r.varint();
  if (r.bad()) {
    why = "truncated header";
    return false;
  }
  return true;
}

std::string encode_manifest(const Manifest& m) {
  ByteWriter body;
  std::string_view prev;
  for (const Entry& e : m.entries) {
    size_t common = 0;
    size_t lim = std::min(prev.size(), e.path.size());
    while (common < lim && prev[common] == e.path[common]) ++common;
    body.varint(common);
    body.str(std::string_view(e.path).substr(common));
    prev = e.path;
    body.u8(uint8_t(e.type));
    body.u8(e.flags);
    body.varint(e.mode);
    body.varint(e.uid);
    body.varint(e.gid);
    body.str(e.uname);
    body.str(e.gname);
    body.varint(e.size);
    body.svarint(e.mtime_sec);
    body.varint(e.mtime_nsec);
    body.svarint(e.ctime_sec);
    body.varint(e.ctime_nsec);
    body.varint(e.ino);
    body.varint(e.rdev);
    body.str(e.target);
    if (e.has_content()) body.raw(e.content.b.data(), 32);
    body.varint(e.extents.size());
    for (auto& [o, l] : e.extents) {
      body.varint(o);
      body.varint(l);
    }
    body.varint(e.xattrs.size());
    for (auto& [k, v] : e.xattrs) {
      body.str(k);
      body.str(v);
    }
  }
  ManifestHeader h = m.header;
  h.entries = m.entries.size();
  ByteWriter out;
  encode_header(out, h);
  std::string& raw = body.buf();
  out.varint(raw.size());
  size_t bound = ZSTD_compressBound(raw.size());
  std::string z(bound, '\0');
  size_t n = ZSTD_compress(z.data(), bound, raw.data(), raw.size(), 3);
  z.resize(ZSTD_isError(n) ? 0 : n);
  out.raw(z.data(), z.size());
  Hash trailer = hash_bytes(out.buf());
  out.raw(trailer.b.data(), 32);
  return std::move(out.buf());
}

Result<ManifestHeader> decode_manifest_header(std::string_view data, const std::string& what) {
  ByteReader r(data);
  ManifestHeader h;
  std::string why;
  if (!decode_header(r, h, why)) return corrupt(what, why);
  return h;
}

Hash manifest_id(std::string_view data) {
  Hash h;
  if (data.size() >= 32) std::memcpy(h.b.data(), data.data() + data.size() - 32, 32);
  return h;
}

Result<std::string> manifest_begin(std::string_view data, const std::string& what, Manifest& m) {
  if (data.size() < 36) return corrupt(what, "too short");
  if (hash_bytes(data.substr(0, data.size() - 32)) != manifest_id(data))
    return corrupt(what, "checksum mismatch (damaged file)");
  data.remove_suffix(32);
  ByteReader r(data);
  std::string why;
  if (!decode_header(r, m.header, why)) return corrupt(what, why);
  uint64_t raw_size = r.varint();
  if (r.bad() || raw_size > (uint64_t(1) << 36)) return corrupt(what, "bad body size");
  std::string raw(raw_size, '\0');
  size_t n = ZSTD_decompress(raw.data(), raw_size, data.data() + r.pos(), data.size() - r.pos());
  if (ZSTD_isError(n) || n != raw_size) return corrupt(what, "corrupt compressed body");
  if (m.header.entries > raw_size) return corrupt(what, "bad entry count");
  m.entries.clear();
  m.entries.resize(m.header.entries);
  return raw;
}

Status manifest_decode_entries(std::string_view raw, Manifest& m, const std::string& what,
                               const std::function<void(size_t)>& published) {
  ByteReader b(raw);
  uint64_t raw_size = raw.size();
  std::string prev;
  for (Entry& e : m.entries) {
    uint64_t common = b.varint();
    auto suffix = b.str();
    if (common > prev.size()) return corrupt(what, "bad path prefix");
    e.path.assign(prev, 0, common);
    e.path.append(suffix);
    e.type = EntryType(b.u8());
    e.flags = b.u8();
    e.mode = uint32_t(b.varint());
    e.uid = uint32_t(b.varint());
    e.gid = uint32_t(b.varint());
    e.uname = b.str();
    e.gname = b.str();
    e.size = b.varint();
    e.mtime_sec = b.svarint();
    e.mtime_nsec = uint32_t(b.varint());
    e.ctime_sec = b.svarint();
    e.ctime_nsec = uint32_t(b.varint());
    e.ino = b.varint();
    e.rdev = b.varint();
    e.target = b.str();
    if (e.has_content()) b.raw(e.content.b.data(), 32);
    uint64_t ne = b.varint();
    if (ne > raw_size) return corrupt(what, "bad extent count");
    e.extents.resize(ne);
    for (auto& [o, l] : e.extents) {
      o = b.varint();
      l = b.varint();
    }
    uint64_t nx = b.varint();
    if (nx > raw_size) return corrupt(what, "bad xattr count");
    e.xattrs.resize(nx);
    for (auto& [k, v] : e.xattrs) {
      k = b.str();
      v = b.str();
    }
    if (b.bad()) return corrupt(what, "truncated entry list");
    switch (e.type) {
      case EntryType::File: case EntryType::Dir: case EntryType::Symlink: case EntryType::Hardlink:
      case EntryType::Fifo: case EntryType::Socket: case EntryType::Char: case EntryType::Block:
        break;
      default:
        return corrupt(what, "unknown entry type at " + e.path);
    }
    if (!prev.empty() || &e != &m.entries[0]) {
      if (!path_less(prev, e.path)) return corrupt(what, "entries out of order at " + e.path);
    }
    prev = e.path;
    if (published) published(size_t(&e - m.entries.data()) + 1);
  }
  if (!b.done()) return corrupt(what, "trailing data");
  return {};
}

Result<Manifest> decode_manifest(std::string_view data, const std::string& what) {
  Manifest m;
  PB_ASSIGN(std::string raw, manifest_begin(data, what, m));
  PB_TRY(manifest_decode_entries(raw, m, what, nullptr));
  return m;
}

}  // namespace planb
