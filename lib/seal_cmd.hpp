// The planb-seal command: keygen, enroll, revoke, seal, --open.
#pragma once
#include <optional>
#include <string>

#include "result.hpp"

namespace planb {

struct SealCmdOptions {
  // keygen
  std::string type, prefix;
  bool force = false;
  // enroll / revoke
  std::string enroll_pub, revoke_id;
  // seal / open
  bool open = false;
  std::string to, sign, key, key_command, signers;
  std::string in = "-", out = "-";
  std::optional<std::string> host, parent;
  std::optional<uint64_t> sequence;
  bool json = false;
};

Status seal_keygen_main(SealCmdOptions& o);
Status seal_enroll_main(SealCmdOptions& o);
Status seal_revoke_main(SealCmdOptions& o);
Status seal_main(SealCmdOptions& o);

}  // namespace planb
