#include "content_writer.hpp"

#include "chunker.hpp"

namespace planb {

Status ContentWriter::put(std::string_view data, Hash& id, ObjKind kind) {
  id = hash_bytes(data, kind == ObjKind::Index ? HashDomain::Index : HashDomain::Blob);
  PB_ASSIGN(uint64_t stored, obj_.put(id, data, kind));
  if (stored) ++done_.new_objects;
  done_.stored_bytes += stored;
  return {};
}

Status ContentWriter::cut(bool eof) {
  while (buf_.size() - pos_ >= kChunkMax || (eof && pos_ < buf_.size())) {
    size_t n = cdc_cut(reinterpret_cast<const uint8_t*>(buf_.data() + pos_), buf_.size() - pos_);
    ChunkRef c;
    c.size = n;
    PB_TRY(put(std::string_view(buf_.data() + pos_, n), c.id, ObjKind::Blob));
    chunks_.push_back(c);
    pos_ += n;
  }
  if (pos_ > (4u << 20)) {  // compact now and then
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  return {};
}

Status ContentWriter::add(std::string_view data) {
  buf_.append(data);
  done_.size += data.size();
  if (!chunking_ && done_.size >= kChunkThreshold) chunking_ = true;
  if (chunking_) PB_TRY(cut(false));
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
