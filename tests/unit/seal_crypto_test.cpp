// Sealed-bundle primitives: BLAKE3 against the official test vectors, and the
// OpenSSL-backed secretstream byte for byte against libsodium's.
#include "seal_crypto.hpp"

#include "testutil.hpp"

using namespace planb;

namespace {

// The official test vectors' input: byte i is i % 251.
std::string vector_input(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char(i % 251);
  return s;
}

const unsigned char* u(const std::string& s) { return reinterpret_cast<const unsigned char*>(s.data()); }

}  // namespace

TEST(Blake3, OfficialVectors) {
  EXPECT_EQ(blake3("").hex(), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
  EXPECT_EQ(blake3(vector_input(1)).hex(), "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213");
  EXPECT_EQ(blake3("abc").hex(), "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
  // Long enough for the SIMD kernels (many 1 KiB chunks at once).
  EXPECT_EQ(blake3(vector_input(102400)).hex(), "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085");
}

TEST(Blake3, IncrementalEqualsOneShot) {
  std::string data = random_bytes(3 * 1024 * 1024 + 5, 3);
  Blake3 h;
  for (size_t off = 0, step = 1; off < data.size(); off += step, step = step * 3 + 7)
    h.update(data.data() + off, std::min(step, data.size() - off));
  EXPECT_EQ(h.final(), blake3(data));
}

TEST(SecretStream, SameBytesAsLibsodium) {
  ensure_sodium();
  unsigned char key[SecretStream::kKeyBytes], header[SecretStream::kHeaderBytes];
  crypto_secretstream_xchacha20poly1305_keygen(key);
  SecretStream fast, sodium(false), fast_in, sodium_in(false);
  ASSERT_TRUE(fast.accelerated()) << "OpenSSL's ChaCha20/Poly1305 are not available";
  ASSERT_FALSE(sodium.accelerated());
  fast.init_push(header, key);
  ASSERT_TRUE(sodium.init_pull(header, key));  // the same state as after init_push
  ASSERT_TRUE(fast_in.init_pull(header, key));
  ASSERT_TRUE(sodium_in.init_pull(header, key));
  const size_t sizes[] = {0, 1, 15, 16, 17, 47, 48, 49, 63, 64, 65, 1000, 65535, 65536, 65537, 1 << 20, (1 << 20) + 17};
  const size_t adlens[] = {0, 5, 32};
  uint32_t seed = 1;
  for (size_t n : sizes) {
    for (size_t adlen : adlens) {
      std::string m = random_bytes(n, seed++), ad = random_bytes(adlen, seed++);
      unsigned char tag = n == 1000 ? crypto_secretstream_xchacha20poly1305_TAG_REKEY
                                    : (n == 65 ? SecretStream::kTagFinal : SecretStream::kTagMessage);
      std::string a(n + SecretStream::kAbytes, '\0'), b(a.size(), '\0');
      ASSERT_TRUE(fast.push(reinterpret_cast<unsigned char*>(a.data()), u(m), n, u(ad), adlen, tag));
      ASSERT_TRUE(sodium.push(reinterpret_cast<unsigned char*>(b.data()), u(m), n, u(ad), adlen, tag));
      ASSERT_EQ(a, b) << "message of " << n << " bytes, " << adlen << " bytes of additional data";
      std::string p1(n, 'x'), p2(n, 'y');
      unsigned char t1 = 0xff, t2 = 0xff;
      ASSERT_TRUE(fast_in.pull(reinterpret_cast<unsigned char*>(p1.data()), &t1, u(a), a.size(), u(ad), adlen)) << n;
      ASSERT_TRUE(sodium_in.pull(reinterpret_cast<unsigned char*>(p2.data()), &t2, u(a), a.size(), u(ad), adlen)) << n;
      EXPECT_EQ(p1, m);
      EXPECT_EQ(p2, m);
      EXPECT_EQ(t1, tag);
      EXPECT_EQ(t2, tag);
    }
  }
}

TEST(SecretStream, RefusesDamage) {
  unsigned char key[SecretStream::kKeyBytes], header[SecretStream::kHeaderBytes];
  ensure_sodium();
  crypto_secretstream_xchacha20poly1305_keygen(key);
  std::string m = random_bytes(200000, 9), ad = "header hash";
  std::string c(m.size() + SecretStream::kAbytes, '\0');
  SecretStream out;
  out.init_push(header, key);
  ASSERT_TRUE(out.push(reinterpret_cast<unsigned char*>(c.data()), u(m), m.size(), u(ad), ad.size(),
                       SecretStream::kTagFinal));
  auto pull = [&](const std::string& ct, const std::string& a, std::string* plain) {
    SecretStream in;
    EXPECT_TRUE(in.init_pull(header, key));
    plain->assign(ct.size() - SecretStream::kAbytes, 'x');
    unsigned char tag = 0;
    return in.pull(reinterpret_cast<unsigned char*>(plain->data()), &tag, u(ct), ct.size(), u(a), a.size());
  };
  std::string p;
  EXPECT_TRUE(pull(c, ad, &p));
  EXPECT_EQ(p, m);
  for (size_t off : {size_t(0), size_t(1), size_t(70000), c.size() - 1}) {
    std::string bad = c;
    bad[off] ^= 1;
    EXPECT_FALSE(pull(bad, ad, &p)) << off;
    EXPECT_EQ(p, std::string(p.size(), '\0')) << "plaintext of a forged message must be wiped";
  }
  EXPECT_FALSE(pull(c, "other header", &p));
  SecretStream in;
  ASSERT_TRUE(in.init_pull(header, key));
  unsigned char tag, small[1];
  EXPECT_FALSE(in.pull(small, &tag, u(c), SecretStream::kAbytes - 1, u(ad), ad.size()));
}
