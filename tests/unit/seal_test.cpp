// planb-seal library: keys, seal/open round trips, and refusals.
#include <sys/stat.h>

#include <fstream>

#include "fsutil.hpp"
#include "keys.hpp"
#include "seal.hpp"
#include "testutil.hpp"

using namespace planb;

namespace {

struct Keys {
  TempDir dir;
  Key srv_pub, srv_sec, app_sec, other_sec, stranger_sec;
  std::string signers;
  Keys() {
    auto mk = [&](const char* type, const std::string& name) {
      auto id = keygen(type, dir.path + "/" + name, false);
      EXPECT_TRUE(id.ok()) << (id.ok() ? "" : id.error().message);
    };
    mk("server", "srv");
    mk("server", "other");
    mk("appliance", "app");
    mk("appliance", "stranger");
    srv_pub = *load_key_file(dir.path + "/srv.pub");
    srv_sec = *load_key_file(dir.path + "/srv.key");
    app_sec = *load_key_file(dir.path + "/app.key");
    other_sec = *load_key_file(dir.path + "/other.key");
    stranger_sec = *load_key_file(dir.path + "/stranger.key");
    signers = dir.path + "/signers";
    EXPECT_TRUE(enroll_signer(signers, dir.path + "/app.pub").ok());
  }
};

void put(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

Result<SealResult> seal_file(const Keys& k, const Key& signer, const std::string& in, const std::string& out) {
  SealOptions o;
  o.in = in;
  o.out = out;
  o.host = "web1";
  o.sequence = 5;
  o.parent = "";
  return seal(k.srv_pub, signer, o);
}

Result<OpenResult> open_file(const Keys& k, const Key& key, const std::string& in, const std::string& out) {
  OpenOptions o;
  o.in = in;
  o.out = out;
  o.signers = k.signers;
  return open_sealed(key, o);
}

}  // namespace

TEST(Keys, FilesAndModes) {
  Keys k;
  struct stat st;
  ASSERT_EQ(::stat((k.dir.path + "/app.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((k.dir.path + "/srv.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(k.app_sec.id.size(), 16u);
  EXPECT_EQ(k.app_sec.id, key_id_of(k.app_sec.public_bytes()));
  EXPECT_EQ(k.srv_sec.public_bytes(), k.srv_pub.bytes);
  // Round trip of the text form; a wrong id is refused.
  auto d = Key::decode(k.app_sec.encode(), "x");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->bytes, k.app_sec.bytes);
  Key bad = k.app_sec;
  bad.id = "0000000000000000";
  EXPECT_FALSE(Key::decode(bad.encode(), "x").ok());
  EXPECT_EQ(Key::decode("planb-key 2\n", "x").error().code, kExitCorrupt);
  EXPECT_TRUE(looks_like_key_material(k.app_sec.encode()));
  EXPECT_FALSE(looks_like_key_material("/etc/planb/app.key"));
}

TEST(SealHeader, CanonicalRoundTrip) {
  SealHeader h;
  h.appliance = "0123456789abcdef";
  h.server_key = "fedcba9876543210";
  h.host = "web1";
  h.sequence = 42;
  h.parent = hash_bytes("p");
  h.time_ns = 1234567890123;
  auto d = SealHeader::decode(h.encode());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->encode(), h.encode());
  EXPECT_FALSE(SealHeader::decode(h.encode() + "extra=1\n").ok());
  EXPECT_FALSE(SealHeader::decode("planb-sealed 2\n").ok());
}

TEST(Seal, RoundTripSizes) {
  Keys k;
  for (size_t n : {size_t(0), size_t(1), kSealChunk - 1, kSealChunk, kSealChunk + 1, 3 * kSealChunk}) {
    std::string in = k.dir.path + "/in", s = k.dir.path + "/s", out = k.dir.path + "/out";
    std::string data = random_bytes(n, uint32_t(n));
    put(in, data);
    auto r = seal_file(k, k.app_sec, in, s);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->chunks, n == 0 ? 1 : (n + kSealChunk - 1) / kSealChunk);
    auto o = open_file(k, k.srv_sec, s, out);
    ASSERT_TRUE(o.ok()) << o.error().message;
    EXPECT_EQ(o->header.host, "web1");
    EXPECT_EQ(o->header.sequence, 5u);
    EXPECT_EQ(o->header.appliance, k.app_sec.id);
    EXPECT_EQ(*read_file(out), data) << n;
  }
}

TEST(Seal, Refusals) {
  Keys k;
  std::string in = k.dir.path + "/in", s = k.dir.path + "/s", out = k.dir.path + "/out";
  put(in, random_bytes(2 * kSealChunk + 100, 7));
  ASSERT_TRUE(seal_file(k, k.app_sec, in, s).ok());
  std::string good = *read_file(s);
  auto expect_fail = [&](const std::string& bytes, int code, const std::string& msg) {
    put(s, bytes);
    auto o = open_file(k, k.srv_sec, s, out);
    ASSERT_FALSE(o.ok()) << msg;
    EXPECT_EQ(o.error().code, code) << o.error().message;
    EXPECT_NE(o.error().message.find(msg), std::string::npos) << o.error().message;
    EXPECT_FALSE(path_exists(out));
  };
  uint32_t hlen = uint8_t(good[5]) | uint8_t(good[6]) << 8;
  size_t key_off = 9 + hlen, chunk1 = key_off + 104, chunk2 = chunk1 + 4 + kSealChunk + 17;
  auto flip = [&](size_t off) { std::string b = good; b[off] ^= 1; return b; };
  expect_fail(flip(12), kExitCorrupt, "header");
  expect_fail(flip(4), kExitCorrupt, "unsupported sealed-bundle version");
  expect_fail(flip(key_off + 3), kExitCorrupt, "sealed key: damaged");
  expect_fail(flip(chunk1 + 100), kExitCorrupt, "chunk 1: damaged");
  expect_fail(flip(chunk2 + 100), kExitCorrupt, "chunk 2: damaged");
  expect_fail(flip(good.size() - 1), kExitBadSignature, "trailer/signature");
  expect_fail(good.substr(0, chunk2), kExitCorrupt, "truncated");
  expect_fail(good.substr(0, good.size() - 10), kExitCorrupt, "truncated");
  expect_fail(good + "x", kExitCorrupt, "trailing garbage");
  put(s, good);
  auto o = open_file(k, k.other_sec, s, out);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.error().message.find("wrong recipient"), std::string::npos);
  EXPECT_FALSE(path_exists(out));
  // The appliance's own key cannot open; a server key cannot sign.
  EXPECT_FALSE(open_file(k, k.app_sec, s, out).ok());
  EXPECT_FALSE(seal_file(k, k.srv_sec, in, k.dir.path + "/forged").ok());
  EXPECT_FALSE(path_exists(k.dir.path + "/forged"));
  // Unknown, then revoked signer.
  ASSERT_TRUE(seal_file(k, k.stranger_sec, in, s).ok());
  expect_fail(*read_file(s), kExitBadSignature, "unknown signer");
  ASSERT_TRUE(seal_file(k, k.app_sec, in, s).ok());
  ASSERT_TRUE(revoke_signer(k.signers, k.app_sec.id).ok());
  expect_fail(*read_file(s), kExitBadSignature, "revoked");
}
