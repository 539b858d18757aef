// Receiving a bundle: strict entry names (nothing can land outside the
// store), every object and patch result re-hashed, sequence and parent
// checked against the head ref, ref moved only after everything is durable.
#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cstring>

#include "bundle.hpp"
#include "chunker.hpp"
#include "content_writer.hpp"
#include "delta.hpp"

namespace planb {

namespace {

constexpr uint64_t kMaxEntry = 64ull << 30;

Error corrupt(const std::string& path, const std::string& why) {
  return make_error(kExitCorrupt, "failed to apply bundle " + path + ": " + why);
}

struct Reader {
  struct archive* a = archive_read_new();
  ~Reader() { archive_read_free(a); }
  std::string err() const { return archive_error_string(a) ? archive_error_string(a) : "unreadable archive"; }
};

Result<std::string> read_body(Reader& r, uint64_t size, const std::string& path, const std::string& name) {
  if (size > kMaxEntry) return corrupt(path, "entry " + name + " is too large");
  std::string data(size, '\0');
  size_t got = 0;
  while (got < size) {
    la_ssize_t n = archive_read_data(r.a, data.data() + got, size - got);
    if (n < 0) return corrupt(path, "entry " + name + ": " + r.err());
    if (n == 0) return corrupt(path, "entry " + name + " is truncated");
    got += n;
  }
  return data;
}

// Random access to a stored content (blob or chunked) for rs_patch.
class ContentReader {
 public:
  ContentReader(ObjectStore& o, std::vector<ChunkRef> chunks) : obj_(o), chunks_(std::move(chunks)) {
    uint64_t off = 0;
    for (auto& c : chunks_) {
      offs_.push_back(off);
      off += c.size;
    }
    size_ = off;
  }
  Result<size_t> read(uint64_t pos, char* buf, size_t len) {
    if (pos >= size_) return size_t(0);
    size_t i = size_t(std::upper_bound(offs_.begin(), offs_.end(), pos) - offs_.begin()) - 1;
    if (i != cached_) {
      PB_ASSIGN(cache_, obj_.get(chunks_[i].id));
      cached_ = i;
    }
    uint64_t within = pos - offs_[i];
    size_t n = std::min<uint64_t>(len, cache_.size() - within);
    std::memcpy(buf, cache_.data() + within, n);
    return n;
  }

 private:
  ObjectStore& obj_;
  std::vector<ChunkRef> chunks_;
  std::vector<uint64_t> offs_;
  uint64_t size_ = 0;
  size_t cached_ = SIZE_MAX;
  std::string cache_;
};

Result<std::vector<ChunkRef>> chunks_of(ObjectStore& obj, const Hash& id) {
  PB_ASSIGN(ObjKind kind, obj.kind_of(id));
  if (kind == ObjKind::Blob) {
    PB_ASSIGN(std::string data, obj.get(id));
    return std::vector<ChunkRef>{{id, data.size()}};
  }
  PB_ASSIGN(std::string raw, obj.get(id));
  return decode_index(raw, id.hex());
}

}  // namespace

Result<ApplyResult> apply_bundle(Store& store, const std::string& path, const std::string& extra_ref) {
  ApplyResult res;
  Reader r;
  archive_read_support_filter_zstd(r.a);
  archive_read_support_filter_none(r.a);
  archive_read_support_format_tar(r.a);
  if (archive_read_open_filename(r.a, path.c_str(), 1 << 20) != ARCHIVE_OK)
    return make_error(kExitNotFound, "failed to open bundle " + path + ": " + r.err());
  struct archive_entry* ae;
  auto next = [&](std::string& name, uint64_t& size) -> Result<bool> {
    int rc = archive_read_next_header(r.a, &ae);
    if (rc == ARCHIVE_EOF) return false;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) return corrupt(path, r.err());
    name = archive_entry_pathname(ae) ? archive_entry_pathname(ae) : "";
    if (archive_entry_filetype(ae) != AE_IFREG)
      return corrupt(path, "entry " + name + " is not a regular file (links and devices are refused)");
    size = uint64_t(archive_entry_size(ae));
    return true;
  };
  std::string name;
  uint64_t size;
  PB_ASSIGN(bool have, next(name, size));
  if (!have || name != "PLANB-BUNDLE") return corrupt(path, "first entry is not PLANB-BUNDLE");
  PB_ASSIGN(std::string htext, read_body(r, std::min<uint64_t>(size, 1 << 16), path, name));
  PB_ASSIGN(BundleHeader h, BundleHeader::decode(htext));
  res.header = h;
  PB_ASSIGN(FileLock slock, store.lock_store(false));
  PB_ASSIGN(FileLock hlock, store.lock_host(h.host));
  PB_ASSIGN(auto head, store.read_ref(h.host, "latest"));
  if (head && h.sequence <= head->sequence)
    return make_error(kExitRefused, "failed to apply bundle " + path + ": sequence " + std::to_string(h.sequence) +
                                        " is not after the current " + std::to_string(head->sequence) + " (replay)");
  if (!h.full) {
    if (!head || head->manifest != h.parent_manifest)
      return make_error(kExitRefused, "failed to apply bundle " + path + ": its parent is not host " + h.host +
                                          "'s current snapshot (a full bundle is needed)");
  }

  PB_ASSIGN(have, next(name, size));
  std::string mbytes;
  Manifest m;
  if (have && name == "manifest.pbm") {
    PB_ASSIGN(mbytes, read_body(r, size, path, name));
    PB_ASSIGN(m, decode_manifest(mbytes, path + ":manifest.pbm"));
  } else if (have && name == "manifest.diff" && !h.full) {
    PB_ASSIGN(std::string diff, read_body(r, size, path, name));
    PB_ASSIGN(Manifest parent, store.load_manifest(h.host, head->sequence));
    PB_ASSIGN(m, apply_manifest_diff(parent, diff, path + ":manifest.diff"));
    mbytes = encode_manifest(m);
  } else {
    return corrupt(path, "second entry is not the manifest (manifest.pbm, or manifest.diff if incremental)");
  }
  if (manifest_id(mbytes) != h.manifest) return corrupt(path, "manifest does not match the header's hash");
  if (m.header.host != h.host || m.header.sequence != h.sequence)
    return corrupt(path, "manifest names host " + m.header.host + " snapshot " + std::to_string(m.header.sequence));

  ObjectStore& obj = store.objects();
  for (;;) {
    PB_ASSIGN(have, next(name, size));
    if (!have) break;
    auto slash = name.find('/');
    std::string kind = slash == std::string::npos ? "" : name.substr(0, slash);
    std::string rest = slash == std::string::npos ? "" : name.substr(slash + 1);
    bool numbered = !rest.empty() && rest.size() <= 12 && rest.find_first_not_of("0123456789") == std::string::npos;
    if ((kind == "objects" || kind == "index") && numbered) {
      // Content-addressed: the id is computed here. Damaged or foreign data
      // becomes an unreferenced object, and the final check reports what
      // the manifest needs and did not get.
      PB_ASSIGN(std::string data, read_body(r, size, path, name));
      ObjKind k = kind == "index" ? ObjKind::Index : ObjKind::Blob;
      if (k == ObjKind::Index && !decode_index(data, name).ok())
        return corrupt(path, "entry " + name + " is not a chunk index");
      Hash id = hash_bytes(data, k == ObjKind::Index ? HashDomain::Index : HashDomain::Blob);
      PB_TRY(obj.put(id, data, k));
      ++res.objects;
      res.bytes += size;
    } else if (kind == "deltas" && numbered) {
      if (size < 64) return corrupt(path, "delta " + name + " is truncated");
      Hash ids[2];
      for (auto& id : ids) {
        la_ssize_t n = archive_read_data(r.a, id.b.data(), 32);
        if (n != 32) return corrupt(path, "delta " + name + " is truncated");
      }
      const Hash& base = ids[0];
      const Hash& result = ids[1];
      size -= 64;
      if (!obj.has(base)) return corrupt(path, "delta " + name + ": base " + base.hex() + " is not in the store");
      PB_ASSIGN(auto bchunks, chunks_of(obj, base));
      ContentReader basis(obj, std::move(bchunks));
      ContentWriter out(obj);
      RsPatcher patch([&](uint64_t pos, char* buf, size_t len) { return basis.read(pos, buf, len); },
                      [&](std::string_view d) { return out.add(d); });
      uint64_t left = size;
      char buf[65536];
      while (left > 0) {
        la_ssize_t n = archive_read_data(r.a, buf, std::min<uint64_t>(left, sizeof buf));
        if (n <= 0) return corrupt(path, "delta " + name + " is truncated");
        left -= n;
        auto st = patch.feed(std::string_view(buf, n), left == 0);
        if (!st.ok()) return corrupt(path, "delta " + name + ": " + st.error().message);
      }
      if (size == 0) return corrupt(path, "delta " + name + " is empty");
      PB_ASSIGN(auto done, out.finish());
      if (done.id != result)
        return corrupt(path, "delta " + name + ": result does not match its hash");
      ++res.deltas;
      res.bytes += size;
    } else if (name == "PLANB-BUNDLE" || name == "manifest.pbm" || name == "manifest.diff") {
      return corrupt(path, "duplicate entry " + name);
    } else {
      return corrupt(path, "unexpected entry '" + name + "'");
    }
  }
  PB_TRY(obj.commit());
  // Every content the manifest references must now be present.
  for (const Entry& e : m.entries) {
    if (!e.has_content()) continue;
    if (!obj.has(e.content))
      return corrupt(path, "content of " + e.path + " (" + e.content.hex() + ") is neither in the bundle nor in the store");
    if (e.size >= kChunkThreshold) {
      PB_ASSIGN(auto chunks, obj.expand(e.content, e.size));
      for (auto& c : chunks)
        if (!obj.has(c.id)) return corrupt(path, "chunk " + c.id.hex() + " of " + e.path + " is missing");
    }
  }
  std::string mpath = store.manifest_path(h.host, h.sequence);
  PB_TRY(mkdir_p(dirname_of(mpath)));
  PB_TRY(write_file_atomic(mpath, mbytes));
  PB_TRY(store.write_ref(h.host, "latest", Ref{h.sequence, h.manifest}));
  if (!extra_ref.empty() && extra_ref != "latest") PB_TRY(store.write_ref(h.host, extra_ref, Ref{h.sequence, h.manifest}));
  return res;
}

}  // namespace planb
