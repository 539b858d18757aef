// Sealed bundles (planb-seal): a bundle encrypted to the server's X25519 key
// and signed by the appliance's Ed25519 key, streamed in constant memory.
// Format: doc/formats.md, "Sealed bundle".
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "bundle.hpp"
#include "hash.hpp"
#include "keys.hpp"
#include "result.hpp"

namespace planb {

inline constexpr uint8_t kSealVersion = 2;  // 1 (BLAKE2b-256 as H) is refused
inline constexpr size_t kSealChunk = 1 << 20;  // plaintext bytes per chunk

// The canonical header, signed (through its hash) by the appliance.
struct SealHeader {
  std::string appliance;   // appliance key id
  std::string server_key;  // server key id
  std::string host;
  uint64_t sequence = 0;
  Hash parent;             // parent manifest id (zero if none)
  int64_t time_ns = 0;     // sealing time
  std::string encode() const;
  static Result<SealHeader> decode(std::string_view text);
};

struct SealOptions {
  std::string in = "-", out = "-";
  // Overrides of (or, for a non-bundle input, required) header fields.
  std::optional<std::string> host;
  std::optional<uint64_t> sequence;
  std::optional<std::string> parent;  // hex, or empty for none
};

struct SealResult {
  SealHeader header;
  bool from_bundle = false;
  uint64_t plain_bytes = 0, sealed_bytes = 0, chunks = 0;
  double seconds = 0;
};

Result<SealResult> seal(const Key& server_public, const Key& appliance_secret, const SealOptions& opt);

struct OpenOptions {
  std::string in = "-", out = "-";
  std::string signers;  // directory of enrolled appliance keys
};

struct OpenResult {
  SealHeader header;
  uint64_t plain_bytes = 0, sealed_bytes = 0, chunks = 0;
  double seconds = 0;
};

Result<OpenResult> open_sealed(const Key& server_secret, const OpenOptions& opt);

// The PLANB-BUNDLE header of a (possibly truncated) bundle prefix, if it is one.
std::optional<BundleHeader> sniff_bundle_header(const char* data, size_t n);

}  // namespace planb
