#include "hash.hpp"

#include <cstdlib>

namespace planb {

static const unsigned char kIndexKey[] = "planb chunk index v1";

void ensure_sodium() {
  static bool ok = [] { return sodium_init() >= 0; }();
  if (!ok) std::abort();
}

bool Hash::is_zero() const {
  for (auto c : b)
    if (c) return false;
  return true;
}

std::string Hash::hex() const {
  static const char* d = "0123456789abcdef";
  std::string s(64, '0');
  for (size_t i = 0; i < 32; ++i) {
    s[2 * i] = d[b[i] >> 4];
    s[2 * i + 1] = d[b[i] & 15];
  }
  return s;
}

std::optional<Hash> Hash::from_hex(std::string_view s) {
  if (s.size() != 64) return std::nullopt;
  Hash h;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    int hi = val(s[2 * i]), lo = val(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    h.b[i] = uint8_t(hi << 4 | lo);
  }
  return h;
}

Hasher::Hasher(HashDomain d) {
  ensure_sodium();
  if (d == HashDomain::Index)
    crypto_generichash_init(&st_, kIndexKey, sizeof kIndexKey - 1, 32);
  else
    crypto_generichash_init(&st_, nullptr, 0, 32);
}

void Hasher::update(const void* p, size_t n) {
  crypto_generichash_update(&st_, static_cast<const unsigned char*>(p), n);
}

Hash Hasher::final() {
  Hash h;
  crypto_generichash_final(&st_, h.b.data(), 32);
  return h;
}

Hash hash_bytes(std::string_view data, HashDomain d) {
  Hasher h(d);
  h.update(data.data(), data.size());
  return h.final();
}

}  // namespace planb
