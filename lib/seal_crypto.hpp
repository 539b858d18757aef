// The primitives of sealed bundles (doc/formats.md, "Sealed bundle", version 2):
//
// * Blake3: BLAKE3-256, the official C implementation with its SSE2/SSE4.1/AVX2/
//   AVX-512 kernels (third_party/blake3), ~7 GB/s per core against ~0.55 GB/s for
//   BLAKE2b. The store keeps BLAKE2b (ARCHITECTURE.md says why).
// * SecretStream: crypto_secretstream_xchacha20poly1305, byte for byte what
//   libsodium writes and reads, but with the bulk ChaCha20 and Poly1305 done by
//   OpenSSL (AVX-512: ~4 GB/s per core for both, against ~1 GB/s for libsodium
//   1.0.18). libsodium derives the state (init_push/init_pull, rekey); if OpenSSL
//   cannot provide the two primitives, libsodium does everything.
#pragma once
#include <openssl/types.h>
#include <sodium.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "hash.hpp"

namespace planb {

class Blake3 {
 public:
  Blake3();
  void update(const void* p, size_t n);
  Hash final();

 private:
  alignas(16) unsigned char st_[2048];  // a blake3_hasher (size checked in the .cpp)
};

Hash blake3(std::string_view data);

class SecretStream {
 public:
  static constexpr size_t kHeaderBytes = crypto_secretstream_xchacha20poly1305_HEADERBYTES;
  static constexpr size_t kKeyBytes = crypto_secretstream_xchacha20poly1305_KEYBYTES;
  static constexpr size_t kAbytes = crypto_secretstream_xchacha20poly1305_ABYTES;
  static constexpr unsigned char kTagMessage = crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;
  static constexpr unsigned char kTagFinal = crypto_secretstream_xchacha20poly1305_TAG_FINAL;

  // use_openssl=false: libsodium only (the tests compare the two).
  explicit SecretStream(bool use_openssl = true);
  ~SecretStream();
  SecretStream(const SecretStream&) = delete;
  SecretStream& operator=(const SecretStream&) = delete;

  void init_push(unsigned char header[kHeaderBytes], const unsigned char key[kKeyBytes]);
  bool init_pull(const unsigned char header[kHeaderBytes], const unsigned char key[kKeyBytes]);
  // out receives mlen + kAbytes bytes. False only if OpenSSL fails.
  bool push(unsigned char* out, const unsigned char* m, size_t mlen, const unsigned char* ad, size_t adlen,
            unsigned char tag);
  // m receives inlen - kAbytes bytes. False if the message is not authentic
  // (m is then zeroed) or too short.
  bool pull(unsigned char* m, unsigned char* tag, const unsigned char* in, size_t inlen, const unsigned char* ad,
            size_t adlen);
  bool accelerated() const { return cctx_ != nullptr; }

 private:
  bool begin(unsigned char ks1[64]);  // Poly1305 key from block 0, keystream block 1
  bool chacha(unsigned char* out, const unsigned char* in, size_t n);
  bool finish(size_t adlen, size_t mlen, unsigned char mac[16]);  // padding, lengths, tag
  void advance(const unsigned char mac[16], unsigned char tag);

  crypto_secretstream_xchacha20poly1305_state st_{};
  EVP_CIPHER* cipher_ = nullptr;
  EVP_CIPHER_CTX* cctx_ = nullptr;
  EVP_MAC* mac_ = nullptr;
  EVP_MAC_CTX* mctx_ = nullptr;
};

}  // namespace planb
