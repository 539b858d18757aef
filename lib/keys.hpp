// Plan B key files (planb-seal): the server's X25519 encryption key pair and
// each appliance's Ed25519 signing key pair, as small text files:
//   planb-key 1
//   type=<server-secret|server-public|appliance-secret|appliance-public>
//   id=<16 hex: first 8 bytes of BLAKE2b-256(public key)>
//   key=<base64 key bytes>
// Private key files are written 0600 and only ever read from files (a path,
// a PLANB_*_FILE variable) or a --key-command's output, never from argv.
#pragma once
#include <string>
#include <string_view>

#include "result.hpp"

namespace planb {

enum class KeyType { ServerSecret, ServerPublic, ApplianceSecret, AppliancePublic };

const char* key_type_name(KeyType t);

struct Key {
  KeyType type = KeyType::ServerPublic;
  std::string id;     // 16 lowercase hex digits
  std::string bytes;  // raw key: X25519 secret 32 / public 32; Ed25519 secret 64 / public 32
  // The public half (for secret keys, derived from them).
  std::string public_bytes() const;
  std::string encode() const;
  static Result<Key> decode(std::string_view text, const std::string& where);
};

std::string key_id_of(std::string_view public_key);

// keygen: writes PREFIX.key (0600) and PREFIX.pub (0644). Returns the key id.
// type: "server" or "appliance".
Result<std::string> keygen(const std::string& type, const std::string& prefix, bool force);

Result<Key> load_key_file(const std::string& path);
// Private key: from `path` if set, else from the environment variable `env`
// naming a file, else from the output of `command` (run with /bin/sh -c).
Result<Key> load_private_key(const std::string& path, const char* env, const std::string& command,
                             const std::string& option);

// The server's directory of enrolled appliance public keys:
// DIR/<id>.pub enrolled, DIR/<id>.revoked (any content) refused.
Result<Key> find_signer(const std::string& dir, const std::string& id);
Result<std::string> enroll_signer(const std::string& dir, const std::string& pub_path);
Status revoke_signer(const std::string& dir, const std::string& id);

// True if s looks like key material rather than a path (argv guard).
bool looks_like_key_material(std::string_view s);

}  // namespace planb
