// BLAKE2b-256 content identifiers (libsodium crypto_generichash).
#pragma once
#include <sodium.h>

#include <array>
#include <cstring>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace planb {

struct Hash {
  std::array<uint8_t, 32> b{};
  bool operator==(const Hash&) const = default;
  auto operator<=>(const Hash&) const = default;
  bool is_zero() const;
  std::string hex() const;
  static std::optional<Hash> from_hex(std::string_view s);
};

struct HashHasher {
  size_t operator()(const Hash& h) const {
    size_t v;
    std::memcpy(&v, h.b.data(), sizeof v);
    return v;
  }
};

// Domain of a hash: plain content, or a chunk index (keyed, so an index can
// never share an id with a blob of the same bytes).
enum class HashDomain { Blob, Index };

class Hasher {
 public:
  explicit Hasher(HashDomain d = HashDomain::Blob);
  void update(const void* p, size_t n);
  Hash final();

 private:
  crypto_generichash_state st_;
};

Hash hash_bytes(std::string_view data, HashDomain d = HashDomain::Blob);
void ensure_sodium();

}  // namespace planb
