// Streams a file's bytes into the object store: one blob if it ends up
// smaller than kChunkThreshold, else CDC chunks plus a chunk index. The
// content id is the blob's or the index's hash.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "object_store.hpp"

namespace planb {

class ContentWriter {
 public:
  explicit ContentWriter(ObjectStore& objects) : obj_(objects) {}
  Status add(std::string_view data);
  struct Done {
    Hash id;
    uint64_t size = 0;
    uint64_t stored_bytes = 0;  // new bytes written to the store
    uint64_t new_objects = 0;
  };
  Result<Done> finish();

 private:
  Status cut(bool eof);
  Status put(std::string_view data, Hash& id, ObjKind kind);
  ObjectStore& obj_;
  std::string buf_;
  size_t pos_ = 0;        // start of unconsumed bytes in buf_
  bool chunking_ = false; // total already past the threshold
  std::vector<ChunkRef> chunks_;
  Done done_;
};

}  // namespace planb
