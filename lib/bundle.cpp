#include "bundle.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <unordered_set>

#include "chunker.hpp"
#include "delta.hpp"
#include "progress.hpp"
#include "restore.hpp"

namespace planb {

std::string BundleHeader::encode() const {
  std::ostringstream o;
  o << "planb-bundle " << format << "\n"
    << "host=" << host << "\n"
    << "sequence=" << sequence << "\n"
    << "kind=" << (full ? "full" : "incremental") << "\n"
    << "parent-sequence=" << parent_sequence << "\n"
    << "parent-manifest=" << (full ? "" : parent_manifest.hex()) << "\n"
    << "manifest=" << manifest.hex() << "\n"
    << "created=" << created_ns << "\n";
  return o.str();
}

Result<BundleHeader> BundleHeader::decode(std::string_view text) {
  auto bad = [](const std::string& why) { return make_error(kExitCorrupt, "failed to read bundle header: " + why); };
  std::istringstream in{std::string(text)};
  std::string line;
  BundleHeader h;
  if (!std::getline(in, line) || line.rfind("planb-bundle ", 0) != 0) return bad("not a Plan B bundle");
  if (line != "planb-bundle 1") return bad("unsupported bundle format '" + line.substr(13) + "'");
  bool have_manifest = false, have_seq = false, have_kind = false;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) return bad("malformed line '" + line + "'");
    std::string k = line.substr(0, eq), v = line.substr(eq + 1);
    try {
      if (k == "host") h.host = v;
      else if (k == "sequence") h.sequence = std::stoull(v), have_seq = true;
      else if (k == "parent-sequence") h.parent_sequence = std::stoull(v);
      else if (k == "created") h.created_ns = std::stoll(v);
      else if (k == "kind") {
        if (v != "full" && v != "incremental") return bad("unknown kind '" + v + "'");
        h.full = v == "full";
        have_kind = true;
      } else if (k == "manifest" || k == "parent-manifest") {
        if (k == "parent-manifest" && v.empty()) continue;
        auto x = Hash::from_hex(v);
        if (!x) return bad("bad hash in " + k);
        (k == "manifest" ? h.manifest : h.parent_manifest) = *x;
        if (k == "manifest") have_manifest = true;
      }
      // Unknown keys are ignored (forward compatible within format 1).
    } catch (...) {
      return bad("bad number in " + k);
    }
  }
  if (!have_manifest || !have_seq || !have_kind || h.host.empty()) return bad("missing fields");
  if (!h.full && h.parent_manifest.is_zero()) return bad("incremental bundle without parent-manifest");
  PB_TRY(validate_host_name(h.host));
  return h;
}

namespace {

struct Writer {
  struct archive* a = nullptr;
  int fd = -1;
  uint64_t bytes = 0;
  std::string what;
  Error err;
  bool failed = false;
  int64_t mtime = 0;

  static la_ssize_t write_cb(struct archive*, void* self_v, const void* buf, size_t n) {
    auto* self = static_cast<Writer*>(self_v);
    auto st = write_all(self->fd, buf, n, self->what);
    if (!st.ok()) {
      self->err = st.error();
      self->failed = true;
      return -1;
    }
    self->bytes += n;
    return la_ssize_t(n);
  }

  Status check(int r, const std::string& doing) {
    if (r == ARCHIVE_OK || r == ARCHIVE_WARN) return {};
    if (failed) return err;
    return fail("failed to " + doing + ": " + (archive_error_string(a) ? archive_error_string(a) : "libarchive error"));
  }

  Status open(int level) {
    a = archive_write_new();
    PB_TRY(check(archive_write_set_format_pax_restricted(a), "set bundle format"));
    PB_TRY(check(archive_write_add_filter_zstd(a), "set bundle compression"));
    archive_write_set_filter_option(a, "zstd", "compression-level", std::to_string(level).c_str());
    archive_write_set_bytes_in_last_block(a, 1);
    return check(archive_write_open2(a, this, nullptr, &Writer::write_cb, nullptr, nullptr), "open bundle");
  }

  // An entry of known size whose body is produced by `body` through the sink.
  Status entry(const std::string& name, uint64_t size, const std::function<Status(const Sink&)>& body) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_size(e, la_int64_t(size));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, time_t(mtime), 0);
    int r = archive_write_header(a, e);
    archive_entry_free(e);
    PB_TRY(check(r, "write bundle entry " + name));
    uint64_t written = 0;
    PB_TRY(body([&](std::string_view d) -> Status {
      written += d.size();
      if (written > size) return fail("failed to write bundle entry " + name + ": more data than its size");
      la_ssize_t n = archive_write_data(a, d.data(), d.size());
      if (n < 0 || size_t(n) != d.size()) return check(ARCHIVE_FATAL, "write bundle entry " + name);
      return {};
    }));
    if (written != size) return fail("failed to write bundle entry " + name + ": size changed while writing");
    return {};
  }
  Status entry(const std::string& name, std::string_view data) {
    return entry(name, data.size(), [&](const Sink& s) { return s(data); });
  }
  Status close() {
    int r = archive_write_close(a);
    return check(r, "finish bundle");
  }
  ~Writer() {
    if (a) archive_write_free(a);
  }
};

// Every object id a manifest references (contents and their chunks).
Status referenced_objects(ObjectStore& objects, const Manifest& m, std::unordered_set<Hash, HashHasher>& out) {
  for (const Entry& e : m.entries) {
    if (!e.has_content() || !out.insert(e.content).second) continue;
    if (e.size >= kChunkThreshold) {
      PB_ASSIGN(auto chunks, objects.expand(e.content, e.size));
      for (auto& c : chunks) out.insert(c.id);
    }
  }
  return {};
}

Result<std::string> whole_content(ObjectStore& objects, const Entry& e) {
  std::string s;
  s.reserve(e.size);
  PB_TRY(read_content(objects, e, [&](std::string_view d) -> Status {
    s.append(d);
    return {};
  }));
  return s;
}

constexpr uint64_t kRsyncMax = 64ull << 20;  // whole-file librsync in memory up to this

}  // namespace

Result<DiffResult> write_bundle(Store& store, const DiffOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  PB_TRY(store.require_host(opt.host));
  PB_ASSIGN(FileLock lock, store.lock_store(false));
  PB_ASSIGN(auto latest, store.read_ref(opt.host, "latest"));
  uint64_t to = opt.to ? opt.to : latest->sequence;
  if (to > latest->sequence)
    return make_error(kExitNotFound, "failed to find snapshot " + std::to_string(to) + " of host " + opt.host);
  PB_ASSIGN(std::string mbytes, store.read_manifest_bytes(opt.host, to));
  PB_ASSIGN(Manifest target, decode_manifest(mbytes, store.manifest_path(opt.host, to)));
  DiffResult res;
  BundleHeader& h = res.header;
  h.host = opt.host;
  h.sequence = to;
  h.manifest = manifest_id(mbytes);
  h.created_ns = target.header.created_ns;
  uint64_t from = opt.from ? opt.from : to - 1;
  if (opt.from && opt.from >= to)
    return make_error(kExitUsage, "failed to diff: --from " + std::to_string(opt.from) + " is not before --to " + std::to_string(to));
  Manifest base;
  h.full = opt.full || from == 0;
  if (!h.full) {
    PB_ASSIGN(std::string bbytes, store.read_manifest_bytes(opt.host, from));
    PB_ASSIGN(base, decode_manifest(bbytes, store.manifest_path(opt.host, from)));
    h.parent_sequence = from;
    h.parent_manifest = manifest_id(bbytes);
  }
  ObjectStore& objects = store.objects();
  std::unordered_set<Hash, HashHasher> have, sent;
  if (!h.full) PB_TRY(referenced_objects(objects, base, have));

  // Output: a temp file renamed into place when complete, or stdout.
  Writer w;
  w.mtime = h.created_ns / 1000000000;
  PB_ASSIGN(OutputFile out, OutputFile::open(opt.out, 0644));
  w.fd = out.fd();
  w.what = out.is_stdout() ? "bundle to stdout" : "bundle " + out.name();

  // Bytes the receiver lacks (new chunks only, for big files): small
  // bundles cross a WAN and get a stronger compression level.
  uint64_t payload = 0;
  {
    std::unordered_set<Hash, HashHasher> counted;
    for (const Entry& e : target.entries) {
      if (!e.has_content() || have.count(e.content) || !counted.insert(e.content).second) continue;
      if (e.size < kChunkThreshold) {
        payload += e.size;
        continue;
      }
      PB_ASSIGN(auto chunks, objects.expand(e.content, e.size));
      for (auto& c : chunks)
        if (!have.count(c.id) && counted.insert(c.id).second) payload += c.size;
    }
  }
  PB_TRY(w.open(payload < (64ull << 20) ? 9 : 3));
  PB_TRY(w.entry("PLANB-BUNDLE", h.encode()));
  // Incremental: the manifest as edits of the base's entries (the receiver
  // has the base), a few bytes per changed entry instead of the whole list.
  if (h.full) PB_TRY(w.entry("manifest.pbm", mbytes));
  else PB_TRY(w.entry("manifest.diff", encode_manifest_diff(base, target)));
  Progress prog("diff " + opt.host, opt.progress);

  uint64_t seqno = 0;  // numbers the content entries
  auto send_object = [&](const Hash& id, ObjKind kind) -> Status {
    if (have.count(id) || !sent.insert(id).second) return {};
    PB_ASSIGN(std::string data, objects.get(id));
    ++res.objects;
    res.object_bytes += data.size();
    return w.entry((kind == ObjKind::Index ? "index/" : "objects/") + std::to_string(++seqno), data);
  };

  size_t bi = 0;
  for (const Entry& e : target.entries) {
    if (!e.has_content()) continue;
    if (have.count(e.content) || sent.count(e.content)) {
      ++res.unchanged_files;
      continue;
    }
    const Entry* old = nullptr;
    if (!h.full) {
      while (bi < base.entries.size() && path_less(base.entries[bi].path, e.path)) ++bi;
      if (bi < base.entries.size() && base.entries[bi].path == e.path && base.entries[bi].has_content() &&
          base.entries[bi].size > 0 && e.size > 0)
        old = &base.entries[bi];
    }
    // A delta entry starts with the base and result ids (binary); short
    // numbered names keep the archive headers small.
    std::string ids, name = "deltas/" + std::to_string(seqno + 1);
    if (old) {
      ids.append(reinterpret_cast<const char*>(old->content.b.data()), 32);
      ids.append(reinterpret_cast<const char*>(e.content.b.data()), 32);
    }
    if (old && old->size >= kChunkThreshold && e.size >= kChunkThreshold) {
      PB_ASSIGN(auto bchunks, objects.expand(old->content, old->size));
      PB_ASSIGN(auto tchunks, objects.expand(e.content, e.size));
      auto ops = plan_chunk_delta(bchunks, tchunks);
      PB_TRY(refine_chunk_delta(objects, bchunks, ops));
      uint64_t size = chunk_delta_size(ops);
      if (size < e.size) {
        ++seqno;
        PB_TRY(w.entry(name, 64 + size, [&](const Sink& s) -> Status {
          PB_TRY(s(ids));
          return write_chunk_delta(objects, ops, s);
        }));
        sent.insert(e.content);
        ++res.deltas;
        res.delta_bytes += size;
        res.delta_target_bytes += e.size;
        prog.update(res.objects + res.deltas, w.bytes);
        continue;
      }
    } else if (old && old->size <= kRsyncMax && e.size <= kRsyncMax) {
      PB_ASSIGN(std::string b, whole_content(objects, *old));
      PB_ASSIGN(std::string t, whole_content(objects, e));
      PB_ASSIGN(std::string sig, rs_signature(b));
      PB_ASSIGN(std::string d, rs_delta(sig, t));
      if (d.size() < t.size()) {
        ++seqno;
        PB_TRY(w.entry(name, ids + d));
        sent.insert(e.content);
        ++res.deltas;
        res.delta_bytes += d.size();
        res.delta_target_bytes += e.size;
        prog.update(res.objects + res.deltas, w.bytes);
        continue;
      }
    }
    // Whole contents: the blob, or the index and the chunks the receiver lacks.
    if (e.size >= kChunkThreshold) {
      PB_ASSIGN(auto chunks, objects.expand(e.content, e.size));
      for (auto& c : chunks) PB_TRY(send_object(c.id, ObjKind::Blob));
      PB_TRY(send_object(e.content, ObjKind::Index));
    } else {
      PB_TRY(send_object(e.content, ObjKind::Blob));
    }
    prog.update(res.objects + res.deltas, w.bytes);
  }
  PB_TRY(w.close());
  prog.done();
  PB_TRY(out.commit());
  res.bundle_bytes = w.bytes;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace planb
