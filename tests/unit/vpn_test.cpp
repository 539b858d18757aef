#include "vpn.hpp"

#include <sodium.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "fsutil.hpp"
#include "testutil.hpp"

using namespace planb;

namespace {

std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string hex_to_b64(const std::string& hex) {
  unsigned char b[32];
  size_t n = 0;
  sodium_hex2bin(b, sizeof b, hex.data(), hex.size(), nullptr, &n, nullptr);
  char out[64];
  sodium_bin2base64(out, sizeof out, b, n, sodium_base64_VARIANT_ORIGINAL);
  return out;
}

int mode_of(const std::string& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return -1;
  return int(st.st_mode & 07777);
}

CmdbCustomer sample() {
  CmdbCustomer c;
  c.name = "acme";
  c.rescue.network = "10.99.0.0/24";
  c.vpn.enabled = true;
  c.vpn.listen_port = 51820;
  c.vpn.endpoint = "rescue.example";
  c.vpn.network = "10.98.0.0/24";
  c.vpn.peers.push_back({"office", {"192.168.10.0/24"}, ""});
  c.vpn.peers.push_back({"alice-laptop", {}, ""});
  return c;
}

const std::string kId = "0123456789abcdef0123456789abcdef";

}  // namespace

// RFC 7748 section 6.1: Alice's key pair.
TEST(Vpn, PublicKeyMatchesRfc7748) {
  auto priv = hex_to_b64("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  auto pub = wg_public_key(priv);
  ASSERT_TRUE(pub.ok()) << pub.error().message;
  EXPECT_EQ(*pub, hex_to_b64("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"));
}

// The same derivation as WireGuard's own tool, on a key we generate.
TEST(Vpn, PublicKeyMatchesWgPubkey) {
  if (std::system("command -v wg >/dev/null 2>&1") != 0) GTEST_SKIP() << "wg (wireguard-tools) not installed";
  TempDir d;
  std::string priv = wg_generate_private_key();
  ASSERT_TRUE(write_file_atomic(d.path + "/k", priv + "\n", 0600).ok());
  std::string cmd = "wg pubkey <" + d.path + "/k >" + d.path + "/p";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::string wg = slurp(d.path + "/p");
  while (!wg.empty() && wg.back() == '\n') wg.pop_back();
  auto pub = wg_public_key(priv);
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(*pub, wg);
  EXPECT_EQ(wg.size(), 44u);
}

TEST(Vpn, GeneratedKeysAreClampedAndDistinct) {
  std::string a = wg_generate_private_key(), b = wg_generate_private_key();
  EXPECT_NE(a, b);
  unsigned char k[32];
  size_t n = 0;
  ASSERT_EQ(sodium_base642bin(k, 32, a.data(), a.size(), nullptr, &n, nullptr, sodium_base64_VARIANT_ORIGINAL), 0);
  ASSERT_EQ(n, 32u);
  EXPECT_EQ(k[0] & 7, 0);
  EXPECT_EQ(k[31] & 0xc0, 0x40);
  EXPECT_TRUE(wg_valid_key(wg_generate_preshared_key()));
  EXPECT_FALSE(wg_valid_key("not a key"));
  EXPECT_FALSE(wg_public_key("AAAA").ok());
}

TEST(Vpn, InterfaceNameFitsIfnamsiz) {
  EXPECT_EQ(vpn_interface_name(kId), "pbwg-01234567");
  EXPECT_LE(vpn_interface_name(kId).size(), 15u);
}

TEST(Vpn, ConfigureWritesFilesAndKeepsKeys) {
  TempDir d;
  std::string dir = d.path + "/vpn";
  auto s = vpn_configure(sample(), dir, "10.99.0.0/24", kId);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->interface_name, "pbwg-01234567");
  EXPECT_EQ(s->address, "10.98.0.1/24");
  EXPECT_EQ(s->dns, "10.99.0.1");
  EXPECT_EQ(s->endpoint, "rescue.example:51820");
  ASSERT_EQ(s->peers.size(), 2u);
  EXPECT_EQ(s->peers[0].address, "10.98.0.2");
  EXPECT_EQ(s->peers[1].address, "10.98.0.3");
  EXPECT_NE(s->peers[0].public_key, s->peers[1].public_key);
  EXPECT_NE(s->peers[0].public_key, s->public_key);
  EXPECT_EQ(mode_of(dir), 0700);
  EXPECT_EQ(mode_of(s->server_conf), 0600);
  EXPECT_EQ(mode_of(dir + "/keys/server.key"), 0600);
  for (const auto& p : s->peers) EXPECT_EQ(mode_of(p.config), 0600) << p.config;

  std::string office = slurp(dir + "/peers/office.conf");
  EXPECT_NE(office.find("Address = 10.98.0.2/24\n"), std::string::npos) << office;
  EXPECT_NE(office.find("DNS = 10.99.0.1\n"), std::string::npos);
  EXPECT_NE(office.find("PublicKey = " + s->public_key + "\n"), std::string::npos);
  EXPECT_NE(office.find("Endpoint = rescue.example:51820\n"), std::string::npos);
  EXPECT_NE(office.find("AllowedIPs = 10.99.0.0/24, 10.98.0.0/24\n"), std::string::npos);
  EXPECT_NE(office.find("PersistentKeepalive = "), std::string::npos);
  std::string server = slurp(s->server_conf);
  EXPECT_NE(server.find("ListenPort = 51820\n"), std::string::npos);
  EXPECT_NE(server.find("AllowedIPs = 10.98.0.2/32, 192.168.10.0/24\n"), std::string::npos) << server;
  EXPECT_NE(server.find("AllowedIPs = 10.98.0.3/32\n"), std::string::npos);
  EXPECT_EQ(server.find("Address"), std::string::npos);  // wg setconf refuses wg-quick keys
  // The preshared key of a peer is the same on both sides.
  std::string psk = slurp(dir + "/keys/office.psk");
  psk.pop_back();
  EXPECT_NE(office.find("PresharedKey = " + psk + "\n"), std::string::npos);
  EXPECT_NE(server.find("PresharedKey = " + psk + "\n"), std::string::npos);

  // Idempotent: the same keys, the same files.
  auto again = vpn_configure(sample(), dir, "10.99.0.0/24", kId);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->public_key, s->public_key);
  EXPECT_EQ(again->peers[0].public_key, s->peers[0].public_key);
  EXPECT_EQ(slurp(dir + "/peers/office.conf"), office);

  auto loaded = vpn_load(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->public_key, s->public_key);
  ASSERT_EQ(loaded->peers.size(), 2u);
  EXPECT_EQ(loaded->peers[0].allowed_ips, std::vector<std::string>{"192.168.10.0/24"});

  // A peer dropped from the CMDB loses its configuration.
  auto one = sample();
  one.vpn.peers.pop_back();
  ASSERT_TRUE(vpn_configure(one, dir, "10.99.0.0/24", kId).ok());
  EXPECT_FALSE(path_exists(dir + "/peers/alice-laptop.conf"));
  EXPECT_TRUE(path_exists(dir + "/peers/office.conf"));
}

TEST(Vpn, ConfigureRefusesBadInput) {
  TempDir d;
  auto c = sample();
  c.vpn.enabled = false;
  EXPECT_EQ(vpn_configure(c, d.path + "/v", "10.99.0.0/24", kId).error().code, kExitUsage);
  c = sample();
  c.vpn.peers.push_back({"../evil", {}, ""});
  EXPECT_EQ(vpn_configure(c, d.path + "/v", "10.99.0.0/24", kId).error().code, kExitUsage);
  c = sample();
  c.vpn.peers.push_back({"office", {}, ""});
  auto dup = vpn_configure(c, d.path + "/v", "10.99.0.0/24", kId);
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.error().message.find("twice"), std::string::npos);
  c = sample();
  c.vpn.network = "10.99.0.0/25";
  EXPECT_FALSE(vpn_configure(c, d.path + "/v", "10.99.0.0/24", kId).ok());
  c = sample();
  c.vpn.peers[0].allowed_ips = {"10.99.0.0/16"};
  EXPECT_FALSE(vpn_configure(c, d.path + "/v", "10.99.0.0/24", kId).ok());
  EXPECT_FALSE(vpn_configure(sample(), d.path + "/v", "10.99.0.0/24", "xyz").ok());
  EXPECT_EQ(vpn_load(d.path + "/nothing").error().code, kExitNotFound);
}
