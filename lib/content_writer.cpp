#include "content_writer.hpp"

#include <cstdlib>
#include <thread>

#include "chunker.hpp"

namespace planb {

namespace {
// Cut in batches this big, so hashing and storing a batch's chunks can be
// split across two threads.
constexpr size_t kBatch = 8u << 20;
}  // namespace

Status ContentWriter::put(std::string_view data, Hash& id, ObjKind kind) {
  id = hash_bytes(data, kind == ObjKind::Index ? HashDomain::Index : HashDomain::Blob);
  PB_ASSIGN(uint64_t stored, obj_.put(id, data, kind));
  if (stored) ++done_.new_objects;
  done_.stored_bytes += stored;
  return {};
}

Status ContentWriter::cut(bool eof) {
  // Cut points first (sequential by nature), then hash and store the pieces.
  std::vector<std::pair<size_t, size_t>> pieces;
  while (buf_.size() - pos_ >= kChunkMax || (eof && pos_ < buf_.size())) {
    size_t n = cdc_cut(reinterpret_cast<const uint8_t*>(buf_.data() + pos_), buf_.size() - pos_);
    pieces.emplace_back(pos_, n);
    pos_ += n;
  }
  std::vector<ChunkRef> refs(pieces.size());
  struct Tally {
    uint64_t bytes = 0, objects = 0;
    Status st;
  };
  auto work = [&](size_t a, size_t b, Tally& t) {
    for (size_t i = a; i < b && t.st.ok(); ++i) {
      std::string_view d(buf_.data() + pieces[i].first, pieces[i].second);
      refs[i].size = d.size();
      refs[i].id = hash_bytes(d);
      auto r = obj_.put(refs[i].id, d, ObjKind::Blob);
      if (!r.ok()) t.st = r.error();
      else if (*r) t.bytes += *r, ++t.objects;
    }
  };
  Tally t1, t2;
  size_t half = pieces.size() / 2;
  static const bool serial = std::getenv("PLANB_SERIAL") != nullptr;
  if (!serial && pieces.size() >= 8 && std::thread::hardware_concurrency() > 1) {
    std::thread helper(work, half, pieces.size(), std::ref(t2));
    work(0, half, t1);
    helper.join();
  } else {
    work(0, pieces.size(), t1);
  }
  PB_TRY(t1.st);
  PB_TRY(t2.st);
  done_.stored_bytes += t1.bytes + t2.bytes;
  done_.new_objects += t1.objects + t2.objects;
  chunks_.insert(chunks_.end(), refs.begin(), refs.end());
  buf_.erase(0, pos_);
  pos_ = 0;
  return {};
}

Status ContentWriter::add(std::string_view data) {
  buf_.append(data);
  done_.size += data.size();
  if (!chunking_ && done_.size >= kChunkThreshold) chunking_ = true;
  if (chunking_ && buf_.size() - pos_ >= kBatch) PB_TRY(cut(false));
  return {};
}

Result<ContentWriter::Done> ContentWriter::finish() {
  if (!chunking_) {
    PB_TRY(put(buf_, done_.id, ObjKind::Blob));
  } else {
    PB_TRY(cut(true));
    std::string idx = encode_index(chunks_);
    PB_TRY(put(idx, done_.id, ObjKind::Index));
  }
  buf_.clear();
  pos_ = 0;
  return done_;
}

}  // namespace planb
