#include "memory.hpp"

#include <malloc.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>

namespace planb {

void tune_memory() {
  if (std::getenv("PLANB_NO_MEMORY_TUNING")) return;
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
  const size_t n = size_t(512) << 20, huge = size_t(2) << 20;
  char* p = static_cast<char*>(std::malloc(n));
  if (!p) return;
  uintptr_t start = (reinterpret_cast<uintptr_t>(p) + huge - 1) & ~uintptr_t(huge - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) & ~uintptr_t(huge - 1);
  if (end > start) madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);
  std::free(p);  // stays in the heap (trim threshold) for the allocations to come
}

}  // namespace planb
