#pragma once
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <random>
#include <string>

// A temp directory removed at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/var/tmp/planb-unit-XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

inline std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937_64 g(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = g();
    for (size_t k = 0; k < 8 && i + k < n; ++k) s[i + k] = char(v >> (8 * k));
  }
  return s;
}
