#include "seal_cmd.hpp"

#include <sodium.h>

#include <cstdio>

#include "json.hpp"
#include "keys.hpp"
#include "progress.hpp"
#include "seal.hpp"

namespace planb {

// The sealed header's fields, common to --json of sealing and opening.
static JsonObject header_json(const SealHeader& h) {
  JsonObject j;
  j.add("appliance", h.appliance)
      .add("server_key", h.server_key)
      .add("host", h.host)
      .add("sequence", h.sequence)
      .add("parent", h.parent.is_zero() ? std::string() : h.parent.hex());
  return j;
}

Status seal_keygen_main(SealCmdOptions& o) {
  if (o.prefix.empty()) return make_error(kExitUsage, "failed to parse options: --out PREFIX is required");
  PB_ASSIGN(std::string id, keygen(o.type, o.prefix, o.force));
  if (o.json)
    std::printf("%s\n", JsonObject().add("type", o.type).add("id", id).add("key", o.prefix + ".key")
                            .add("pub", o.prefix + ".pub").str().c_str());
  else
    std::printf("%s key %s: %s.key (secret, 0600), %s.pub\n", o.type.c_str(), id.c_str(), o.prefix.c_str(),
                o.prefix.c_str());
  return {};
}

Status seal_enroll_main(SealCmdOptions& o) {
  if (o.signers.empty()) return make_error(kExitUsage, "failed to parse options: --signers DIR is required");
  PB_ASSIGN(std::string id, enroll_signer(o.signers, o.enroll_pub));
  std::printf("enrolled appliance %s in %s\n", id.c_str(), o.signers.c_str());
  return {};
}

Status seal_revoke_main(SealCmdOptions& o) {
  if (o.signers.empty()) return make_error(kExitUsage, "failed to parse options: --signers DIR is required");
  PB_TRY(revoke_signer(o.signers, o.revoke_id));
  std::printf("revoked appliance %s in %s\n", o.revoke_id.c_str(), o.signers.c_str());
  return {};
}

static double mbps(uint64_t bytes, double s) { return s > 0 ? double(bytes) / 1e6 / s : 0; }

Status seal_main(SealCmdOptions& o) {
  FILE* info = o.out == "-" ? stderr : stdout;
  if (o.open) {
    if (!o.to.empty() || !o.sign.empty())
      return make_error(kExitUsage, "failed to parse options: --to and --sign are for sealing, not --open");
    if (o.host || o.sequence || o.parent)
      return make_error(kExitUsage, "failed to parse options: --host, --sequence and --parent are for sealing");
    PB_ASSIGN(Key key, load_private_key(o.key, "PLANB_SERVER_KEY_FILE", o.key_command, "--key"));
    OpenOptions oo;
    oo.in = o.in;
    oo.out = o.out;
    oo.signers = o.signers;
    auto r = open_sealed(key, oo);
    sodium_memzero(key.bytes.data(), key.bytes.size());
    if (!r.ok()) return r.error();
    const SealHeader& h = r->header;
    if (o.json)
      std::fprintf(info, "%s\n", header_json(h)
                                     .add("time_ns", int64_t(h.time_ns))
                                     .add("chunks", r->chunks)
                                     .add("bytes", r->plain_bytes)
                                     .add("sealed_bytes", r->sealed_bytes)
                                     .add("seconds", r->seconds)
                                     .str().c_str());
    else if (o.out != "-")
      std::fprintf(info, "opened %s snapshot %llu from appliance %s: %s in %.2f s (%.0f MB/s)\n", h.host.c_str(),
                   static_cast<unsigned long long>(h.sequence), h.appliance.c_str(), human_bytes(r->plain_bytes).c_str(),
                   r->seconds, mbps(r->sealed_bytes, r->seconds));
    return {};
  }
  if (!o.key.empty() || !o.signers.empty())
    return make_error(kExitUsage, "failed to parse options: --key and --signers are for --open");
  if (o.to.empty()) return make_error(kExitUsage, "failed to parse options: --to SERVER.pub is required");
  PB_ASSIGN(Key server, load_key_file(o.to));
  PB_ASSIGN(Key signer, load_private_key(o.sign, "PLANB_SIGN_KEY_FILE", o.key_command, "--sign"));
  SealOptions so;
  so.in = o.in;
  so.out = o.out;
  so.host = o.host;
  so.sequence = o.sequence;
  so.parent = o.parent;
  auto r = seal(server, signer, so);
  sodium_memzero(signer.bytes.data(), signer.bytes.size());
  if (!r.ok()) return r.error();
  const SealHeader& h = r->header;
  if (o.json)
    std::fprintf(info, "%s\n", header_json(h)
                                   .add("from_bundle", r->from_bundle)
                                   .add("chunks", r->chunks)
                                   .add("bytes", r->plain_bytes)
                                   .add("sealed_bytes", r->sealed_bytes)
                                   .add("seconds", r->seconds)
                                   .str().c_str());
  else if (o.out != "-")
    std::fprintf(info, "sealed %s snapshot %llu for server key %s: %s in %.2f s (%.0f MB/s)\n", h.host.c_str(),
                 static_cast<unsigned long long>(h.sequence), h.server_key.c_str(), human_bytes(r->sealed_bytes).c_str(),
                 r->seconds, mbps(r->plain_bytes, r->seconds));
  return {};
}

}  // namespace planb
