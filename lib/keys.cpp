#include "keys.hpp"

#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cctype>
#include <cstring>

#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "fsutil.hpp"
#include "hash.hpp"

namespace planb {

const char* key_type_name(KeyType t) {
  switch (t) {
    case KeyType::ServerSecret: return "server-secret";
    case KeyType::ServerPublic: return "server-public";
    case KeyType::ApplianceSecret: return "appliance-secret";
    case KeyType::AppliancePublic: return "appliance-public";
  }
  return "?";
}

static size_t key_size(KeyType t) {
  return t == KeyType::ApplianceSecret ? crypto_sign_SECRETKEYBYTES : 32;
}

std::string key_id_of(std::string_view pk) {
  ensure_sodium();
  Hash h = hash_bytes(pk);
  return h.hex().substr(0, 16);
}

std::string Key::public_bytes() const {
  switch (type) {
    case KeyType::ServerSecret: {
      unsigned char pk[crypto_box_PUBLICKEYBYTES];
      crypto_scalarmult_base(pk, reinterpret_cast<const unsigned char*>(bytes.data()));
      return std::string(reinterpret_cast<char*>(pk), sizeof pk);
    }
    case KeyType::ApplianceSecret: {
      unsigned char pk[crypto_sign_PUBLICKEYBYTES];
      crypto_sign_ed25519_sk_to_pk(pk, reinterpret_cast<const unsigned char*>(bytes.data()));
      return std::string(reinterpret_cast<char*>(pk), sizeof pk);
    }
    default: return bytes;
  }
}

static std::string b64(std::string_view s) {
  std::string out(sodium_base64_encoded_len(s.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()), s.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::string Key::encode() const {
  return "planb-key 1\ntype=" + std::string(key_type_name(type)) + "\nid=" + id + "\nkey=" + b64(bytes) + "\n";
}

Result<Key> Key::decode(std::string_view text, const std::string& where) {
  ensure_sodium();
  auto bad = [&](const std::string& why) { return make_error(kExitCorrupt, "failed to read key " + where + ": " + why); };
  std::istringstream in{std::string(text)};
  std::string line;
  if (!std::getline(in, line) || line.rfind("planb-key ", 0) != 0) return bad("not a Plan B key file");
  if (line != "planb-key 1") return bad("unsupported key format '" + line.substr(10) + "'");
  Key k;
  std::string type, b;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) return bad("malformed line");
    std::string n = line.substr(0, eq), v = line.substr(eq + 1);
    if (n == "type") type = v;
    else if (n == "id") k.id = v;
    else if (n == "key") b = v;
  }
  if (type == "server-secret") k.type = KeyType::ServerSecret;
  else if (type == "server-public") k.type = KeyType::ServerPublic;
  else if (type == "appliance-secret") k.type = KeyType::ApplianceSecret;
  else if (type == "appliance-public") k.type = KeyType::AppliancePublic;
  else return bad("unknown key type '" + type + "'");
  std::string raw(b.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(raw.data()), raw.size(), b.data(), b.size(), nullptr, &len,
                        nullptr, sodium_base64_VARIANT_ORIGINAL) != 0)
    return bad("bad base64 key");
  raw.resize(len);
  sodium_memzero(b.data(), b.size());
  if (raw.size() != key_size(k.type)) return bad("wrong key length");
  k.bytes = std::move(raw);
  if (k.id != key_id_of(k.public_bytes())) return bad("key id does not match the key");
  return k;
}

Result<std::string> keygen(const std::string& type, const std::string& prefix, bool force) {
  ensure_sodium();
  Key sec, pub;
  if (type == "server") {
    unsigned char pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES];
    crypto_box_keypair(pk, sk);
    sec = {KeyType::ServerSecret, "", std::string(reinterpret_cast<char*>(sk), sizeof sk)};
    pub = {KeyType::ServerPublic, "", std::string(reinterpret_cast<char*>(pk), sizeof pk)};
    sodium_memzero(sk, sizeof sk);
  } else if (type == "appliance") {
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk, sk);
    sec = {KeyType::ApplianceSecret, "", std::string(reinterpret_cast<char*>(sk), sizeof sk)};
    pub = {KeyType::AppliancePublic, "", std::string(reinterpret_cast<char*>(pk), sizeof pk)};
    sodium_memzero(sk, sizeof sk);
  } else {
    return make_error(kExitUsage, "failed to parse options: --type must be server or appliance, not '" + type + "'");
  }
  sec.id = pub.id = key_id_of(pub.bytes);
  std::string kp = prefix + ".key", pp = prefix + ".pub";
  if (!force && (path_exists(kp) || path_exists(pp)))
    return make_error(kExitExists, "failed to write keys " + prefix + ".{key,pub}: exists (use --force)");
  std::string text = sec.encode();
  Status s = write_file_atomic(kp, text, 0600);
  sodium_memzero(text.data(), text.size());
  sodium_memzero(sec.bytes.data(), sec.bytes.size());
  PB_TRY(s);
  PB_TRY(write_file_atomic(pp, pub.encode(), 0644));
  return pub.id;
}

Result<Key> load_key_file(const std::string& path) {
  auto r = read_file(path);
  if (!r.ok()) {
    Error e = r.error();
    if (!path_exists(path)) e.code = kExitNotFound;
    e.message = "failed to read key " + path + ": " + (path_exists(path) ? e.message : "no such file");
    return e;
  }
  auto k = Key::decode(*r, path);
  sodium_memzero(r->data(), r->size());
  return k;
}

Result<Key> load_private_key(const std::string& path, const char* env, const std::string& command,
                             const std::string& option) {
  if (!path.empty()) {
    if (looks_like_key_material(path))
      return make_error(kExitUsage, "failed to read " + option + ": key material on the command line is refused; "
                                    "pass a file, $" + env + " or --key-command");
    return load_key_file(path);
  }
  if (const char* e = std::getenv(env); e && *e) return load_key_file(e);
  if (!command.empty()) {
    FILE* p = ::popen(command.c_str(), "r");
    if (!p) return fail("failed to run --key-command: " + errstr(errno));
    std::string text;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
    sodium_memzero(buf, sizeof buf);
    int rc = ::pclose(p);
    if (rc != 0) {
      sodium_memzero(text.data(), text.size());
      return fail("failed to run --key-command: it exited with status " + std::to_string(WEXITSTATUS(rc)));
    }
    auto k = Key::decode(text, "from --key-command");
    sodium_memzero(text.data(), text.size());
    return k;
  }
  return make_error(kExitUsage, "failed to parse options: " + option + " FILE, $" + env + " or --key-command is required");
}

bool looks_like_key_material(std::string_view s) {
  if (s.find("planb-key") != std::string_view::npos || s.find('\n') != std::string_view::npos) return true;
  // A bare base64 key: 44 or 88 characters of the base64 alphabet.
  if (s.size() != 44 && s.size() != 88) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=')) return false;
  return !path_exists(std::string(s));
}

static bool valid_id(const std::string& id) {
  if (id.size() != 16) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

Result<Key> find_signer(const std::string& dir, const std::string& id) {
  if (!valid_id(id)) return make_error(kExitBadSignature, "failed to verify signer: malformed appliance id '" + id + "'");
  if (path_exists(join_path(dir, id + ".revoked")))
    return make_error(kExitBadSignature, "failed to verify signer " + id + ": the appliance key is revoked (" +
                                             join_path(dir, id + ".revoked") + ")");
  std::string p = join_path(dir, id + ".pub");
  if (!path_exists(p))
    return make_error(kExitBadSignature, "failed to verify signer " + id + ": unknown signer (not enrolled in " + dir + ")");
  PB_ASSIGN(Key k, load_key_file(p));
  if (k.type != KeyType::AppliancePublic || k.id != id)
    return make_error(kExitBadSignature, "failed to verify signer " + id + ": " + p + " is not that appliance's public key");
  return k;
}

Result<std::string> enroll_signer(const std::string& dir, const std::string& pub_path) {
  PB_ASSIGN(Key k, load_key_file(pub_path));
  if (k.type != KeyType::AppliancePublic)
    return make_error(kExitUsage, "failed to enroll " + pub_path + ": not an appliance public key");
  PB_TRY(mkdir_p(dir, 0755));
  PB_TRY(write_file_atomic(join_path(dir, k.id + ".pub"), k.encode(), 0644));
  std::string rv = join_path(dir, k.id + ".revoked");
  if (path_exists(rv) && ::unlink(rv.c_str()) != 0) return fail("failed to remove " + rv + ": " + errstr(errno));
  return k.id;
}

Status revoke_signer(const std::string& dir, const std::string& id) {
  if (!valid_id(id)) return make_error(kExitUsage, "failed to revoke '" + id + "': not an appliance id (16 hex digits)");
  if (!path_exists(join_path(dir, id + ".pub")))
    return make_error(kExitNotFound, "failed to revoke " + id + ": not enrolled in " + dir);
  return write_file_atomic(join_path(dir, id + ".revoked"), "revoked\n", 0644);
}

}  // namespace planb
