// librsync deltas. Small files: rs_sig/rs_delta with a block size chosen by
// rs_sig_args() from the base size. Chunked files: the same delta format
// written directly from the two chunk maps (COPY for chunks the base has,
// LITERAL for new ones), so the base is never re-read. Both apply with
// librsync's rs_patch (or `rdiff patch`).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "object_store.hpp"

namespace planb {

Result<std::string> rs_signature(std::string_view base, size_t* block_len_out = nullptr);
Result<std::string> rs_delta(std::string_view signature, std::string_view target);

// Basis reader for patching: fills buf with up to len bytes at pos, returns count.
using BasisReader = std::function<Result<size_t>(uint64_t pos, char* buf, size_t len)>;
using Sink = std::function<Status(std::string_view)>;
// Applies a librsync delta (fed whole or in pieces via the returned feeder).
class RsPatcher {
 public:
  RsPatcher(BasisReader basis, Sink out);
  ~RsPatcher();
  RsPatcher(const RsPatcher&) = delete;
  Status feed(std::string_view delta, bool eof);

 private:
  friend struct PatchCallback;
  void* job_;
  BasisReader basis_;
  Sink out_;
  std::string outbuf_;
  Error cb_error_;
  bool cb_failed_ = false;
};

// A delta for chunked files, planned from chunk maps.
struct DeltaOp {
  bool copy;      // COPY from base (offset, len) or LITERAL chunk
  uint64_t off;   // base offset (copy)
  uint64_t len;
  Hash chunk;     // literal: chunk id in the store
  std::string encoded;  // if set: ready-made commands replacing a literal run
};
std::vector<DeltaOp> plan_chunk_delta(const std::vector<ChunkRef>& base, const std::vector<ChunkRef>& target);
// Chunks that straddle an edit are new as a whole, though most of their
// bytes are in the base. For each run of literal chunks, run librsync against
// the base bytes between the neighbouring COPYs and keep its commands when
// smaller, so only the truly new bytes travel. At most `budget` bytes of
// target data are examined (bounds memory).
Status refine_chunk_delta(ObjectStore& objects, const std::vector<ChunkRef>& base, std::vector<DeltaOp>& ops,
                          uint64_t budget = 256ull << 20);
uint64_t chunk_delta_size(const std::vector<DeltaOp>& ops);
// Streams the encoded delta (exactly chunk_delta_size bytes) to out.
Status write_chunk_delta(ObjectStore& objects, const std::vector<DeltaOp>& ops, const Sink& out);

}  // namespace planb
