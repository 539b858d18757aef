#include "chunker.hpp"

#include <array>

namespace planb {
namespace {

constexpr std::array<uint64_t, 256> make_gear() {
  std::array<uint64_t, 256> g{};
  uint64_t x = 0x706c616e62636463ULL;  // "planbcdc": fixed forever (format)
  for (auto& v : g) {
    x += 0x9e3779b97f4a7c15ULL;  // splitmix64
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    v = z ^ (z >> 31);
  }
  return g;
}
constexpr auto kGear = make_gear();
constexpr uint64_t top_bits(int n) { return ((uint64_t(1) << n) - 1) << (64 - n); }
constexpr uint64_t kMaskHard = top_bits(18);  // before the average size
constexpr uint64_t kMaskEasy = top_bits(14);  // after it

}  // namespace

size_t cdc_cut(const uint8_t* p, size_t n) {
  if (n <= kChunkMin) return n;
  size_t limit = n < kChunkMax ? n : kChunkMax;
  size_t normal = limit < kChunkAvg ? limit : kChunkAvg;
  uint64_t h = 0;
  size_t i = kChunkMin;
  for (; i < normal; ++i) {
    h = (h << 1) + kGear[p[i]];
    if (!(h & kMaskHard)) return i + 1;
  }
  for (; i < limit; ++i) {
    h = (h << 1) + kGear[p[i]];
    if (!(h & kMaskEasy)) return i + 1;
  }
  return limit;
}

}  // namespace planb
