// The qemu backend of the rescue platform (lib/rescue_platform.hpp).
//   network  a network namespace "planb-<id>" holding bridge br0 (the gateway address) and
//            dnsmasq bound to br0 only: DHCP with a fixed lease per MAC (the CMDB address; no
//            dynamic range, an unknown MAC gets nothing), DNS for the host names in the domain,
//            no upstream. The namespace has no other interface: nothing routes out of it.
//   VM       qemu-system-x86_64 started inside the namespace (setns in the child), detached
//            (-daemonize: it outlives the caller), on a qcow2 overlay whose backing file is the
//            repository image; its NIC is a persistent tap "tap-XXXXXX" (the MAC's last three
//            bytes) on br0. KVM when /dev/kvm is usable, else TCG.
// Files: NET.run_dir/ dnsmasq.pid, dnsmasq.leases, dnsmasq.log, dnsmasq.args, network.json;
//        VM.run_dir/  pid, serial.log, qmp.sock (or a short path under /run/planb when the
//        directory's path is too long for a socket), qemu.log.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "rescue_platform.hpp"

namespace planb {

std::unique_ptr<RescuePlatform> make_qemu_platform();

// ---- Exposed for unit tests (pure functions).
std::string qemu_netns_name(const RescueNetworkSpec& spec);  // "planb-<id>"
std::string qemu_tap_name(const std::string& mac);           // "tap-" + the MAC's last 6 hex digits
// Checks the spec: id, CIDR, gateway and every lease (MAC, address inside the network, not the
// gateway, no address or MAC twice, host names usable in DNS).
Status validate_rescue_network(const RescueNetworkSpec& spec);
// dnsmasq's command line for the spec (run inside the namespace).
std::vector<std::string> qemu_dnsmasq_argv(const RescueNetworkSpec& spec);
// The QMP socket path for a VM directory (VM.run_dir/qmp.sock unless too long).
std::string qemu_qmp_path(const std::string& vm_run_dir);

struct QemuVmParams {
  std::string accel = "tcg";             // kvm | tcg (resolved)
  std::string tap;                       // tap device name
  std::string serial_log, qmp, pid_file;  // absolute paths
  std::string overlay;                   // absolute
};
std::vector<std::string> qemu_vm_argv(const VmSpec& vm, const QemuVmParams& p);

}  // namespace planb
