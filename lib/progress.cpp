#include "progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace planb {

std::string human_bytes(uint64_t n) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(n);
  int i = 0;
  while (v >= 1024 && i < 4) {
    v /= 1024;
    ++i;
  }
  char b[32];
  std::snprintf(b, sizeof b, i ? "%.1f %s" : "%.0f %s", v, u[i]);
  return b;
}

Progress::Progress(std::string label, bool enabled)
    : label_(std::move(label)), on_(enabled && ::isatty(2)) {
  start_ = last_ = std::chrono::steady_clock::now();
}

void Progress::update(uint64_t items, uint64_t bytes, uint64_t total_bytes) {
  if (!on_) return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  double secs = std::chrono::duration<double>(now - start_).count();
  std::string bar;
  if (total_bytes) {
    int filled = int(30.0 * double(bytes) / double(total_bytes));
    if (filled > 30) filled = 30;
    bar = "[" + std::string(filled, '#') + std::string(30 - filled, ' ') + "] ";
  }
  std::fprintf(stderr, "\r\033[K%s %s%llu items, %s, %.1fs", label_.c_str(), bar.c_str(),
               static_cast<unsigned long long>(items), human_bytes(bytes).c_str(), secs);
  drawn_ = true;
}

void Progress::done() {
  if (on_ && drawn_) std::fprintf(stderr, "\r\033[K");
  drawn_ = false;
}

}  // namespace planb
