// Executive keys: Ed25519 public keys in any encoding, secret key files
// (Plan B's own, or an unencrypted OpenSSH ed25519 key), keygen, executive sets.
#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <sstream>

#include "fsutil.hpp"
#include "hash.hpp"
#include "invoke_auth.hpp"
#include "json.hpp"
#include "keys.hpp"

namespace planb {

namespace {

std::string b64_encode(std::string_view s) {
  std::string out(sodium_base64_encoded_len(s.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()), s.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

// Base64 (padded or not; whitespace ignored) -> bytes, or nullopt.
std::optional<std::string> b64_decode(std::string_view s) {
  std::string in;
  for (char c : s)
    if (!std::isspace(static_cast<unsigned char>(c))) in += c;
  std::string out(in.size(), '\0');
  size_t len = 0;
  const char* end = nullptr;
  int variant = in.find('=') != std::string::npos || in.size() % 4 == 0 ? sodium_base64_VARIANT_ORIGINAL
                                                                          : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), in.data(), in.size(), nullptr, &len,
                        &end, variant) != 0 ||
      end != in.data() + in.size())
    return std::nullopt;
  out.resize(len);
  return out;
}

std::optional<std::string> hex_decode(std::string_view s) {
  if (s.size() % 2) return std::nullopt;
  std::string out(s.size() / 2, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), s.data(), s.size(), nullptr, &len, &end) != 0 ||
      end != s.data() + s.size())
    return std::nullopt;
  out.resize(len);
  return out;
}

// The SSH wire format: uint32 big-endian length + bytes.
struct WireReader {
  std::string_view d;
  bool ok = true;
  uint32_t u32() {
    if (d.size() < 4) { ok = false; return 0; }
    uint32_t v = (uint32_t(uint8_t(d[0])) << 24) | (uint32_t(uint8_t(d[1])) << 16) | (uint32_t(uint8_t(d[2])) << 8) |
                 uint32_t(uint8_t(d[3]));
    d.remove_prefix(4);
    return v;
  }
  std::string_view str() {
    uint32_t n = u32();
    if (!ok || d.size() < n) { ok = false; return {}; }
    auto s = d.substr(0, n);
    d.remove_prefix(n);
    return s;
  }
};

void put_str(std::string& out, std::string_view s) {
  uint32_t n = uint32_t(s.size());
  char b[4] = {char(n >> 24), char(n >> 16), char(n >> 8), char(n)};
  out.append(b, 4);
  out.append(s);
}

Error bad_key(const std::string& why) { return make_error(kExitUsage, "failed to read executive key: " + why); }

Result<std::string> check_point(std::string raw) {
  if (raw.size() != crypto_sign_PUBLICKEYBYTES) return bad_key("an Ed25519 public key is 32 bytes, not " + std::to_string(raw.size()));
  if (!crypto_core_ed25519_is_valid_point(reinterpret_cast<const unsigned char*>(raw.data())))
    return bad_key("not a valid Ed25519 public key (not on the curve, or of small order)");
  return raw;
}

}  // namespace

ExecutiveSecretKey::~ExecutiveSecretKey() {
  if (!secret.empty()) sodium_memzero(secret.data(), secret.size());
}

Result<std::string> parse_executive_public_key(std::string_view text) {
  ensure_sodium();
  auto trim = [](std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
  };
  std::string_view t = trim(text);
  if (t.empty()) return bad_key("empty key");
  if (t.rfind("ssh-ed25519", 0) == 0) {
    t.remove_prefix(11);
    if (t.empty() || !std::isspace(static_cast<unsigned char>(t.front())))
      return bad_key("expected 'ssh-ed25519 BASE64 [comment]'");
    t = trim(t);
    auto sp = std::find_if(t.begin(), t.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
    std::string_view blob64 = t.substr(0, size_t(sp - t.begin()));
    auto blob = b64_decode(blob64);
    if (!blob) return bad_key("the OpenSSH key's base64 does not decode");
    WireReader r{*blob};
    auto type = r.str();
    auto pk = r.str();
    if (!r.ok || !r.d.empty()) return bad_key("malformed OpenSSH public key blob");
    if (type != "ssh-ed25519") return bad_key("the OpenSSH key blob is of type '" + std::string(type) + "', not ssh-ed25519");
    return check_point(std::string(pk));
  }
  if (t.rfind("ssh-", 0) == 0 || t.rfind("ecdsa-", 0) == 0)
    return bad_key("only Ed25519 keys are accepted ('" + std::string(t.substr(0, t.find(' '))) + "')");
  if (t.rfind("ed25519:", 0) == 0) t.remove_prefix(8);
  if (t.size() == 64) {
    if (auto raw = hex_decode(t)) return check_point(*raw);
  }
  if (t.size() == 43 || t.size() == 44) {
    if (auto raw = b64_decode(t)) return check_point(*raw);
  }
  return bad_key("not an Ed25519 public key (expected 'ssh-ed25519 AAAA…', base64 or hex of 32 bytes)");
}

std::string exec_key_hex(std::string_view raw) {
  std::string out(raw.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
  out.pop_back();
  return out;
}

std::string exec_key_id(std::string_view raw) { return key_id_of(raw); }

std::string exec_key_openssh(std::string_view raw, std::string_view comment) {
  std::string blob;
  put_str(blob, "ssh-ed25519");
  put_str(blob, raw);
  std::string line = "ssh-ed25519 " + b64_encode(blob);
  if (!comment.empty()) line += " " + std::string(comment);
  return line;
}

static Result<ExecutiveSecretKey> parse_openssh_private(std::string_view text, const std::string& where) {
  auto bad = [&](const std::string& why) { return make_error(kExitUsage, "failed to read executive key " + where + ": " + why); };
  constexpr std::string_view kBegin = "-----BEGIN OPENSSH PRIVATE KEY-----", kEnd = "-----END OPENSSH PRIVATE KEY-----";
  auto b = text.find(kBegin), e = text.find(kEnd);
  if (b == std::string_view::npos || e == std::string_view::npos || e < b) return bad("malformed OpenSSH private key");
  auto decoded = b64_decode(text.substr(b + kBegin.size(), e - b - kBegin.size()));
  if (!decoded) return bad("the OpenSSH private key's base64 does not decode");
  std::string data = std::move(*decoded);
  constexpr std::string_view kMagic{"openssh-key-v1\0", 15};
  if (std::string_view(data).substr(0, kMagic.size()) != kMagic) {
    sodium_memzero(data.data(), data.size());
    return bad("not an openssh-key-v1 private key");
  }
  WireReader r{std::string_view(data).substr(kMagic.size())};
  auto cipher = r.str(), kdf = r.str();
  r.str();  // kdf options
  uint32_t nkeys = r.u32();
  r.str();  // public key blob
  auto priv = r.str();
  Result<ExecutiveSecretKey> out = bad("malformed OpenSSH private key");
  if (r.ok && (cipher != "none" || kdf != "none")) {
    out = bad("the OpenSSH key is encrypted (cipher " + std::string(cipher) +
              "); use a copy without a passphrase (ssh-keygen -p -N '' -f COPY) or planb-invoke keygen");
  } else if (r.ok && nkeys == 1) {
    WireReader p{priv};
    uint32_t c1 = p.u32(), c2 = p.u32();
    auto type = p.str(), pk = p.str(), sk = p.str(), comment = p.str();
    if (p.ok && c1 == c2 && type == "ssh-ed25519" && pk.size() == 32 && sk.size() == 64 && sk.substr(32) == pk) {
      ExecutiveSecretKey k;
      k.secret = std::string(sk);
      k.public_key = std::string(pk);
      k.comment = std::string(comment);
      // The public half must be the seed's.
      unsigned char derived[crypto_sign_PUBLICKEYBYTES];
      crypto_sign_ed25519_sk_to_pk(derived, reinterpret_cast<const unsigned char*>(k.secret.data()));
      unsigned char seed[32], pk2[32], sk2[64];
      std::memcpy(seed, k.secret.data(), 32);
      crypto_sign_seed_keypair(pk2, sk2, seed);
      sodium_memzero(seed, sizeof seed);
      sodium_memzero(sk2, sizeof sk2);
      if (std::memcmp(pk2, k.public_key.data(), 32) != 0) out = bad("the OpenSSH key's public half does not match its secret");
      else out = std::move(k);
    } else if (p.ok && type != "ssh-ed25519") {
      out = bad("the OpenSSH key is of type '" + std::string(type) + "', not ssh-ed25519");
    } else if (p.ok && c1 != c2) {
      out = bad("the OpenSSH key's check bytes differ (encrypted or damaged)");
    }
  }
  sodium_memzero(data.data(), data.size());
  return out;
}

Result<ExecutiveSecretKey> parse_executive_secret_key(std::string_view text, const std::string& where) {
  ensure_sodium();
  if (text.find("-----BEGIN OPENSSH PRIVATE KEY-----") != std::string_view::npos) return parse_openssh_private(text, where);
  auto bad = [&](const std::string& why) { return make_error(kExitUsage, "failed to read executive key " + where + ": " + why); };
  if (text.rfind("planb-key 1\n", 0) != 0)
    return bad("not an executive key file (planb-invoke keygen) or an OpenSSH ed25519 private key");
  std::istringstream in{std::string(text.substr(12))};
  std::string line, type, id, b64, comment;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) return bad("malformed line");
    std::string n = line.substr(0, eq), v = line.substr(eq + 1);
    if (n == "type") type = v;
    else if (n == "id") id = v;
    else if (n == "key") b64 = v;
    else if (n == "comment") comment = v;
    sodium_memzero(line.data(), line.size());
  }
  if (type != "executive-secret") return bad("a planb key of type '" + type + "', not executive-secret");
  auto raw = b64_decode(b64);
  sodium_memzero(b64.data(), b64.size());
  if (!raw || raw->size() != crypto_sign_SECRETKEYBYTES) {
    if (raw) sodium_memzero(raw->data(), raw->size());
    return bad("the key is not 64 bytes of base64");
  }
  ExecutiveSecretKey k;
  k.secret = std::move(*raw);
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  crypto_sign_ed25519_sk_to_pk(pk, reinterpret_cast<const unsigned char*>(k.secret.data()));
  k.public_key.assign(reinterpret_cast<char*>(pk), sizeof pk);
  k.comment = comment;
  if (id != exec_key_id(k.public_key)) return bad("key id does not match the key");
  return k;
}

Result<ExecutiveSecretKey> load_executive_secret_key(const std::string& path) {
  if (looks_like_key_material(path) || path.find("BEGIN") != std::string::npos)
    return make_error(kExitUsage, "failed to read --key: key material on the command line is refused; pass a file");
  if (!path_exists(path)) return make_error(kExitNotFound, "failed to read executive key " + path + ": no such file");
  PB_ASSIGN(std::string text, read_file(path));
  auto k = parse_executive_secret_key(text, path);
  sodium_memzero(text.data(), text.size());
  return k;
}

std::string encode_executive_secret_key(const ExecutiveSecretKey& k) {
  std::string out = "planb-key 1\ntype=executive-secret\nid=" + exec_key_id(k.public_key) + "\nkey=" + b64_encode(k.secret) + "\n";
  if (!k.comment.empty()) out += "comment=" + k.comment + "\n";
  return out;
}

Result<std::string> executive_keygen(const std::string& out, bool force) {
  ensure_sodium();
  if (out.empty()) return make_error(kExitUsage, "failed to parse options: --out FILE is required");
  std::string pub_path = out + ".pub";
  if (!force && (path_exists(out) || path_exists(pub_path)))
    return make_error(kExitExists, "failed to write executive key " + out + ": exists (use --force)");
  ExecutiveSecretKey k;
  unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_keypair(pk, sk);
  k.secret.assign(reinterpret_cast<char*>(sk), sizeof sk);
  k.public_key.assign(reinterpret_cast<char*>(pk), sizeof pk);
  sodium_memzero(sk, sizeof sk);
  k.comment = "planb-executive-" + exec_key_id(k.public_key);
  std::string text = encode_executive_secret_key(k);
  Status st = write_file_atomic(out, text, 0600);
  sodium_memzero(text.data(), text.size());
  PB_TRY(st);
  std::string line = exec_key_openssh(k.public_key, k.comment);
  PB_TRY(write_file_atomic(pub_path, line + "\n", 0644));
  return line;
}

// ---------------------------------------------------------- executive sets

std::string ExecutiveSet::digest() const {
  std::string text = "planb-executives 1\nquorum=" + std::to_string(quorum) + "\n";
  std::vector<std::string> keys;
  for (const auto& e : executives) keys.push_back(exec_key_hex(e.key));
  std::sort(keys.begin(), keys.end());
  for (const auto& k : keys) text += "key=" + k + "\n";
  return hash_bytes(text).hex();
}

const ExecutiveEntry* ExecutiveSet::find(std::string_view raw_key) const {
  for (const auto& e : executives)
    if (e.key == raw_key) return &e;
  return nullptr;
}

std::string ExecutiveSet::json() const {
  std::vector<std::string> items;
  for (const auto& e : executives)
    items.push_back(JsonObject().add("key", exec_key_hex(e.key)).add("key_id", exec_key_id(e.key)).add("name", e.name)
                        .add("email", e.email).str());
  return JsonObject().add("quorum", quorum).add_raw("executives", json_array(items)).add("digest", digest()).str();
}

Result<ExecutiveSet> executive_set_from_cmdb(const CmdbCustomer& c) {
  const auto& a = c.authorisation;
  std::string where = a.where.empty() ? c.file : a.where;
  if (a.quorum <= 0 || a.executives.empty())
    return make_error(kExitNotAuthorised, "failed to read the executives of customer " + c.name + ": the CMDB (" + c.file +
                                              ") has no [authorisation] with a quorum and executives");
  ExecutiveSet s;
  s.quorum = a.quorum;
  for (const auto& e : a.executives) {
    auto raw = parse_executive_public_key(e.key);
    if (!raw.ok())
      return make_error(kExitUsage, (e.where.empty() ? where : e.where) + ": executive " + e.name + ": " + raw.error().message);
    if (s.find(*raw)) continue;  // the same key twice (perhaps in two encodings) counts once
    s.executives.push_back({*raw, e.name, e.email});
  }
  std::sort(s.executives.begin(), s.executives.end(), [](const auto& x, const auto& y) { return x.key < y.key; });
  if (s.quorum > int(s.executives.size()))
    return make_error(kExitUsage, where + ": quorum " + std::to_string(s.quorum) + " is more than the " +
                                      std::to_string(s.executives.size()) + " distinct executive keys of customer " + c.name);
  return s;
}

}  // namespace planb
