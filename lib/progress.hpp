// A progress line on stderr, only when stderr is a TTY; silent otherwise.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace planb {

class Progress {
 public:
  explicit Progress(std::string label, bool enabled = true);
  ~Progress() { done(); }
  // total may be 0 (unknown).
  void update(uint64_t items, uint64_t bytes, uint64_t total_bytes = 0);
  void done();

 private:
  std::string label_;
  bool on_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

std::string human_bytes(uint64_t n);

}  // namespace planb
