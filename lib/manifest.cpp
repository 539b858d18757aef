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

namespace {

// One entry; the path is stored as its common prefix with `prev` plus the rest.
void encode_record(ByteWriter& w, const Entry& e, std::string_view prev) {
  size_t common = 0;
  size_t lim = std::min(prev.size(), e.path.size());
  while (common < lim && prev[common] == e.path[common]) ++common;
  w.varint(common);
  w.str(std::string_view(e.path).substr(common));
  w.u8(uint8_t(e.type));
  w.u8(e.flags);
  w.varint(e.mode);
  w.varint(e.uid);
  w.varint(e.gid);
  w.str(e.uname);
  w.str(e.gname);
  w.varint(e.size);
  w.svarint(e.mtime_sec);
  w.varint(e.mtime_nsec);
  w.svarint(e.ctime_sec);
  w.varint(e.ctime_nsec);
  w.varint(e.ino);
  w.varint(e.rdev);
  w.str(e.target);
  if (e.has_content()) w.raw(e.content.b.data(), 32);
  w.varint(e.extents.size());
  for (auto& [o, l] : e.extents) {
    w.varint(o);
    w.varint(l);
  }
  w.varint(e.xattrs.size());
  for (auto& [k, v] : e.xattrs) {
    w.str(k);
    w.str(v);
  }
}

// Returns an error text, or "" when the record decoded.
std::string decode_record(ByteReader& b, Entry& e, const std::string& prev, uint64_t limit) {
  uint64_t common = b.varint();
  auto suffix = b.str();
  if (common > prev.size()) return "bad path prefix";
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
  if (ne > limit) return "bad extent count";
  e.extents.resize(ne);
  for (auto& [o, l] : e.extents) {
    o = b.varint();
    l = b.varint();
  }
  uint64_t nx = b.varint();
  if (nx > limit) return "bad xattr count";
  e.xattrs.resize(nx);
  for (auto& [k, v] : e.xattrs) {
    k = b.str();
    v = b.str();
  }
  if (b.bad()) return "truncated entry list";
  switch (e.type) {
    case EntryType::File: case EntryType::Dir: case EntryType::Symlink: case EntryType::Hardlink:
    case EntryType::Fifo: case EntryType::Socket: case EntryType::Char: case EntryType::Block:
      return "";
  }
  return "unknown entry type at " + e.path;
}

// The manifest id: BLAKE2b-256 of the canonical form, header then raw body,
// so it does not depend on how the body is compressed.
Hash canonical_id(std::string_view header, std::string_view raw) {
  Hasher h;
  h.update(header.data(), header.size());
  h.update(raw.data(), raw.size());
  return h.final();
}

}  // namespace

std::string encode_manifest(const Manifest& m) {
  ByteWriter body;
  body.buf().reserve(m.entries.size() * 96);
  std::string_view prev;
  for (const Entry& e : m.entries) {
    encode_record(body, e, prev);
    prev = e.path;
  }
  ManifestHeader h = m.header;
  h.entries = m.entries.size();
  ByteWriter out;
  encode_header(out, h);
  size_t header_size = out.buf().size();
  std::string& raw = body.buf();
  Hash id = canonical_id(out.buf(), raw);
  out.varint(raw.size());
  size_t bound = ZSTD_compressBound(raw.size());
  size_t at = out.buf().size();
  out.buf().resize(at + bound);
  size_t n = ZSTD_compress(out.buf().data() + at, bound, raw.data(), raw.size(), 3);
  out.buf().resize(at + (ZSTD_isError(n) ? 0 : n));
  (void)header_size;
  out.raw(id.b.data(), 32);
  Hash sum = hash_bytes(out.buf());  // any damaged byte, even one that decodes the same
  out.raw(sum.b.data(), 32);
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
  if (data.size() >= 64) std::memcpy(h.b.data(), data.data() + data.size() - 64, 32);
  return h;
}

Result<std::string> manifest_begin(std::string_view data, const std::string& what, Manifest& m) {
  if (data.size() < 68) return corrupt(what, "too short");
  Hash sum;
  std::memcpy(sum.b.data(), data.data() + data.size() - 32, 32);
  if (hash_bytes(data.substr(0, data.size() - 32)) != sum) return corrupt(what, "checksum mismatch (damaged file)");
  Hash want = manifest_id(data);
  data.remove_suffix(64);
  ByteReader r(data);
  std::string why;
  if (!decode_header(r, m.header, why)) return corrupt(what, why);
  std::string_view header = data.substr(0, r.pos());
  uint64_t raw_size = r.varint();
  if (r.bad() || raw_size > (uint64_t(1) << 36)) return corrupt(what, "bad body size");
  std::string raw(raw_size, '\0');
  size_t n = ZSTD_decompress(raw.data(), raw_size, data.data() + r.pos(), data.size() - r.pos());
  if (ZSTD_isError(n) || n != raw_size) return corrupt(what, "corrupt compressed body");
  if (canonical_id(header, raw) != want) return corrupt(what, "checksum mismatch (damaged file)");
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
    std::string why = decode_record(b, e, prev, raw_size);
    if (!why.empty()) return corrupt(what, why);
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

namespace {
constexpr char kDiffMagic[4] = {'P', 'B', 'M', 'D'};

bool identical(const Entry& a, const Entry& b) {
  return a.same_metadata(b) && a.flags == b.flags && a.ctime_sec == b.ctime_sec && a.ctime_nsec == b.ctime_nsec &&
         a.ino == b.ino;
}
}  // namespace

std::string encode_manifest_diff(const Manifest& parent, const Manifest& m) {
  ByteWriter ops;
  uint64_t nops = 0;
  char run_kind = 0;
  uint64_t run = 0;
  auto flush = [&] {
    if (run) {
      ops.u8(uint8_t(run_kind));
      ops.varint(run);
      ++nops;
    }
    run = 0;
  };
  auto count = [&](char kind) {
    if (run_kind != kind) flush();
    run_kind = kind;
    ++run;
  };
  size_t i = 0;
  std::string_view prev_new;
  const auto& pe = parent.entries;
  for (const Entry& e : m.entries) {
    while (i < pe.size() && path_less(pe[i].path, e.path)) {
      count('D');
      ++i;
    }
    if (i < pe.size() && pe[i].path == e.path && identical(pe[i], e)) {
      count('K');
      ++i;
      continue;
    }
    if (i < pe.size() && pe[i].path == e.path) {
      count('D');
      ++i;
    }
    flush();
    run_kind = 0;
    ops.u8('N');
    encode_record(ops, e, prev_new);  // paths prefix-compressed among new records
    prev_new = e.path;
    ++nops;
  }
  while (i < pe.size()) {
    count('D');
    ++i;
  }
  flush();
  ManifestHeader h = m.header;
  h.entries = m.entries.size();
  ByteWriter out;
  out.raw(kDiffMagic, 4);
  out.varint(1);
  encode_header(out, h);
  out.varint(nops);
  out.raw(ops.buf().data(), ops.buf().size());
  return std::move(out.buf());
}

Result<Manifest> apply_manifest_diff(const Manifest& parent, std::string_view diff, const std::string& what) {
  ByteReader r(diff);
  auto magic = r.bytes(4);
  if (r.bad() || magic != std::string_view(kDiffMagic, 4)) return corrupt(what, "not a manifest diff (bad magic)");
  uint64_t version = r.varint();
  if (version != 1) return corrupt(what, "unsupported manifest diff version " + std::to_string(version));
  Manifest m;
  std::string why;
  if (!decode_header(r, m.header, why)) return corrupt(what, why);
  if (m.header.entries > parent.entries.size() + diff.size()) return corrupt(what, "bad entry count");
  m.entries.reserve(m.header.entries);
  uint64_t nops = r.varint();
  size_t i = 0;
  std::string prev_new;
  for (uint64_t k = 0; k < nops; ++k) {
    uint8_t kind = r.u8();
    if (kind == 'K' || kind == 'D') {
      uint64_t n = r.varint();
      if (n > parent.entries.size() - i) return corrupt(what, "edit runs past the parent's entries");
      if (kind == 'K') m.entries.insert(m.entries.end(), parent.entries.begin() + i, parent.entries.begin() + i + n);
      i += n;
    } else if (kind == 'N') {
      Entry e;
      why = decode_record(r, e, prev_new, diff.size());
      if (!why.empty()) return corrupt(what, why);
      prev_new = e.path;
      m.entries.push_back(std::move(e));
    } else {
      return corrupt(what, "unknown edit");
    }
    if (r.bad()) return corrupt(what, "truncated");
  }
  if (!r.done()) return corrupt(what, "trailing data");
  if (i != parent.entries.size()) return corrupt(what, "edits do not cover the parent's entries");
  if (m.entries.size() != m.header.entries) return corrupt(what, "entry count does not match its header");
  for (size_t k = 1; k < m.entries.size(); ++k)
    if (!path_less(m.entries[k - 1].path, m.entries[k].path))
      return corrupt(what, "entries out of order at " + m.entries[k].path);
  return m;
}

}  // namespace planb
