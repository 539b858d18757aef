#include "seal_crypto.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>

#include "blake3.h"

namespace planb {

namespace {

blake3_hasher* b3(unsigned char* st) { return reinterpret_cast<blake3_hasher*>(st); }

const unsigned char kPad0[16] = {0};
constexpr size_t kSlice = 64 * 1024;  // ChaCha20 and Poly1305 take turns over slices this big

}  // namespace

Blake3::Blake3() {
  static_assert(sizeof(blake3_hasher) <= sizeof st_ && alignof(blake3_hasher) <= 16);
  blake3_hasher_init(b3(st_));
}

void Blake3::update(const void* p, size_t n) { blake3_hasher_update(b3(st_), p, n); }

Hash Blake3::final() {
  Hash h;
  blake3_hasher_finalize(b3(st_), h.b.data(), h.b.size());
  return h;
}

Hash blake3(std::string_view data) {
  Blake3 h;
  h.update(data.data(), data.size());
  return h.final();
}

SecretStream::SecretStream(bool use_openssl) {
  ensure_sodium();
  if (!use_openssl) return;
  cipher_ = EVP_CIPHER_fetch(nullptr, "ChaCha20", nullptr);
  mac_ = EVP_MAC_fetch(nullptr, "POLY1305", nullptr);
  if (cipher_ && mac_) {
    cctx_ = EVP_CIPHER_CTX_new();
    mctx_ = EVP_MAC_CTX_new(mac_);
  }
  if (!cctx_ || !mctx_) {  // libsodium alone, then
    EVP_CIPHER_CTX_free(cctx_);
    EVP_MAC_CTX_free(mctx_);
    cctx_ = nullptr;
    mctx_ = nullptr;
  }
}

SecretStream::~SecretStream() {
  EVP_CIPHER_CTX_free(cctx_);
  EVP_MAC_CTX_free(mctx_);
  EVP_CIPHER_free(cipher_);
  EVP_MAC_free(mac_);
  sodium_memzero(&st_, sizeof st_);
}

void SecretStream::init_push(unsigned char header[kHeaderBytes], const unsigned char key[kKeyBytes]) {
  crypto_secretstream_xchacha20poly1305_init_push(&st_, header, key);
}

bool SecretStream::init_pull(const unsigned char header[kHeaderBytes], const unsigned char key[kKeyBytes]) {
  return crypto_secretstream_xchacha20poly1305_init_pull(&st_, header, key) == 0;
}

// What libsodium's push and pull do before the message: the Poly1305 key is
// ChaCha20 block 0, the MAC covers the additional data padded to 16 bytes,
// and block 1 encrypts the tag byte. The message itself starts at block 2.
bool SecretStream::begin(unsigned char ks1[64]) {
  unsigned char blocks[128] = {0};
  crypto_stream_chacha20_ietf(blocks, sizeof blocks, st_.nonce, st_.k);
  bool ok = EVP_MAC_init(mctx_, blocks, 32, nullptr) == 1;
  std::memcpy(ks1, blocks + 64, 64);
  sodium_memzero(blocks, sizeof blocks);
  unsigned char iv[16] = {2, 0, 0, 0};  // block counter (LE) then the 12-byte nonce
  std::memcpy(iv + 4, st_.nonce, sizeof st_.nonce);
  return ok && EVP_EncryptInit_ex2(cctx_, cipher_, st_.k, iv, nullptr) == 1;
}

bool SecretStream::chacha(unsigned char* out, const unsigned char* in, size_t n) {
  int outl = 0;
  return EVP_EncryptUpdate(cctx_, out, &outl, in, int(n)) == 1 && size_t(outl) == n;
}

bool SecretStream::finish(size_t adlen, size_t mlen, unsigned char mac[16]) {
  // libsodium pads the ciphertext with (0x10 - 64 + mlen) & 0xf zero bytes
  // (that is mlen mod 16, not the RFC 8439 padding): reproduced as is.
  size_t pad = size_t((uint64_t(0x10) - 64 + uint64_t(mlen)) & 0xf);
  unsigned char tail[16 + 16];
  std::memset(tail, 0, pad);
  unsigned char* p = tail + pad;
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(uint64_t(adlen) >> (8 * i));
  for (int i = 0; i < 8; ++i) p[8 + i] = uint8_t((64 + uint64_t(mlen)) >> (8 * i));
  size_t outl = 0;
  return EVP_MAC_update(mctx_, tail, pad + 16) == 1 && EVP_MAC_final(mctx_, mac, &outl, 16) == 1 && outl == 16;
}

void SecretStream::advance(const unsigned char mac[16], unsigned char tag) {
  for (size_t i = 0; i < 8; ++i) st_.nonce[4 + i] ^= mac[i];
  sodium_increment(st_.nonce, 4);
  if ((tag & crypto_secretstream_xchacha20poly1305_TAG_REKEY) != 0 || sodium_is_zero(st_.nonce, 4))
    crypto_secretstream_xchacha20poly1305_rekey(&st_);
}

bool SecretStream::push(unsigned char* out, const unsigned char* m, size_t mlen, const unsigned char* ad, size_t adlen,
                        unsigned char tag) {
  if (!cctx_) return crypto_secretstream_xchacha20poly1305_push(&st_, out, nullptr, m, mlen, ad, adlen, tag) == 0;
  unsigned char block[64];
  if (!begin(block)) return false;
  bool ok = adlen == 0 || EVP_MAC_update(mctx_, ad, adlen) == 1;
  if (size_t pad = (0x10 - adlen) & 0xf) ok = ok && EVP_MAC_update(mctx_, kPad0, pad) == 1;
  block[0] ^= tag;
  ok = ok && EVP_MAC_update(mctx_, block, sizeof block) == 1;
  out[0] = block[0];
  unsigned char* c = out + 1;
  for (size_t off = 0; ok && off < mlen; off += kSlice) {
    size_t n = std::min(kSlice, mlen - off);
    ok = chacha(c + off, m + off, n) && EVP_MAC_update(mctx_, c + off, n) == 1;
  }
  unsigned char* mac = c + mlen;
  if (!ok || !finish(adlen, mlen, mac)) return false;
  advance(mac, tag);
  return true;
}

bool SecretStream::pull(unsigned char* m, unsigned char* tag, const unsigned char* in, size_t inlen,
                        const unsigned char* ad, size_t adlen) {
  if (inlen < kAbytes) return false;
  size_t mlen = inlen - kAbytes;
  if (!cctx_) {
    unsigned long long got = 0;
    return crypto_secretstream_xchacha20poly1305_pull(&st_, m, &got, tag, in, inlen, ad, adlen) == 0;
  }
  unsigned char block[64];
  if (!begin(block)) return false;
  bool ok = adlen == 0 || EVP_MAC_update(mctx_, ad, adlen) == 1;
  if (size_t pad = (0x10 - adlen) & 0xf) ok = ok && EVP_MAC_update(mctx_, kPad0, pad) == 1;
  unsigned char t = block[0] ^ in[0];
  block[0] = in[0];
  ok = ok && EVP_MAC_update(mctx_, block, sizeof block) == 1;
  const unsigned char* c = in + 1;
  // Decrypting before the MAC is checked is safe here: on a mismatch the
  // plaintext is wiped before anyone sees it.
  for (size_t off = 0; ok && off < mlen; off += kSlice) {
    size_t n = std::min(kSlice, mlen - off);
    ok = EVP_MAC_update(mctx_, c + off, n) == 1 && chacha(m + off, c + off, n);
  }
  unsigned char mac[16];
  ok = ok && finish(adlen, mlen, mac) && sodium_memcmp(mac, c + mlen, sizeof mac) == 0;
  if (!ok) {
    sodium_memzero(m, mlen);
    sodium_memzero(mac, sizeof mac);
    return false;
  }
  *tag = t;
  advance(mac, t);
  return true;
}

}  // namespace planb
