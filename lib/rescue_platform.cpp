// The rescue platform's factory and the per-host MAC address (lib/rescue_platform.hpp).
#include "rescue_platform.hpp"

#include <cstdio>

#include "hash.hpp"
#include "rescue_libvirt.hpp"
#include "rescue_qemu.hpp"

namespace planb {

Result<std::unique_ptr<RescuePlatform>> make_rescue_platform(const std::string& backend) {
  if (backend == "qemu" || backend.empty()) return make_qemu_platform();
  if (backend == "libvirt") return make_libvirt_platform();
  return make_error(kExitUsage, "failed to select the rescue platform: unknown backend '" + backend +
                                    "' (qemu or libvirt)");
}

// 52:54:00 (the range qemu and libvirt use: locally administered, unicast) + the first 3 bytes
// of BLAKE2b-256(invocation id "\n" host): stable for a host within one invocation, and another
// invocation's VM of the same host gets another address.
std::string rescue_mac(const std::string& invocation_id, const std::string& host) {
  Hash h = hash_bytes(invocation_id + "\n" + host);
  char b[18];
  std::snprintf(b, sizeof b, "52:54:00:%02x:%02x:%02x", h.b[0], h.b[1], h.b[2]);
  return b;
}

}  // namespace planb
