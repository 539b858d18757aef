// Content-defined chunking (FastCDC-style gear hash, normalized). Parameters are
// part of the store format ("chunker v1"): changing them changes chunk ids.
#pragma once
#include <cstddef>
#include <cstdint>

namespace planb {

constexpr size_t kChunkMin = 16 * 1024;
constexpr size_t kChunkAvg = 64 * 1024;
constexpr size_t kChunkMax = 256 * 1024;
// Files at least this big are stored as a chunk index; smaller ones as one blob.
constexpr uint64_t kChunkThreshold = 1024 * 1024;

// Length of the next chunk at p. n must be >= kChunkMax unless p..p+n is the
// end of the file.
size_t cdc_cut(const uint8_t* p, size_t n);

}  // namespace planb
