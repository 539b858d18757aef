// The rescue platform: where an invocation's (or a drill's) VMs run, and the
// network they share. One interface, two backends:
//   qemu     (default) a network namespace per invocation holding a bridge, a tap
//            per VM and dnsmasq (DHCP with a fixed lease per MAC = the CMDB
//            address, DNS for the host names); qemu processes run inside it.
//   libvirt  an isolated libvirt <network> (its own bridge and dnsmasq, no
//            <forward>) and one transient or defined domain per VM, through virsh;
//            for a platform of many hypervisors.
// The orchestrator (lib/invocation.*) only talks to this interface.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "result.hpp"

namespace planb {

struct RescueLease {
  std::string host;     // CMDB host name (also the DHCP/DNS host name)
  std::string mac;      // "52:54:00:xx:xx:xx"
  std::string address;  // IPv4 on the rescue network
};

struct RescueNetworkSpec {
  std::string id;        // short unique id (the invocation id's first 8 hex): names the
                         // namespace "planb-<id>" / libvirt network "planb-<id>"
  std::string cidr;      // "10.99.0.0/24"
  std::string gateway;   // "10.99.0.1": the platform's own address on the network
  std::string domain;    // DNS domain served to the VMs ("acme.rescue")
  std::vector<RescueLease> leases;
  std::string run_dir;   // directory for pid files, dnsmasq leases and logs
};

struct VmSpec {
  std::string host;       // CMDB host name
  std::string base_image; // repository image (qcow2 or raw): opened read-only, never written
  std::string overlay;    // copy-on-write layer to create (qcow2, backing = base_image)
  int cpus = 1;
  uint64_t memory_mb = 1024;
  std::string mac;
  std::string run_dir;    // per-VM directory: serial.log, qmp.sock, pid
  std::string accel = "auto";  // auto | kvm | tcg
};

// What is needed to find a VM again from another process (planb-invoke status/stop
// run long after start returned). Stored in the invocation's state.json.
struct VmHandle {
  std::string backend;    // "qemu" | "libvirt"
  std::string host;
  std::string id;         // qemu: "pid:<pid>"; libvirt: domain name
  int64_t pid = 0;        // qemu process (0 for libvirt)
  std::string serial_log; // path of the serial console log
  std::string qmp;        // QMP socket path ("" when the backend has none)
  std::string overlay;
};

enum class VmState { Running, Stopped, Unknown };

class RescuePlatform {
 public:
  virtual ~RescuePlatform() = default;
  virtual std::string backend() const = 0;
  // Creates the network (idempotent for the same spec: re-running after a crash adopts it).
  virtual Status create_network(const RescueNetworkSpec& spec) = 0;
  // Removes the network and everything the platform started for it (dnsmasq, bridge, netns).
  virtual Status destroy_network(const RescueNetworkSpec& spec) = 0;
  // Path of the network namespace checks must run in to reach the VMs
  // ("/run/netns/planb-<id>"), or "" when the host's own namespace reaches them.
  virtual std::string check_netns(const RescueNetworkSpec& spec) const = 0;
  // Creates the overlay and starts the VM detached (it outlives this process).
  virtual Result<VmHandle> start_vm(const RescueNetworkSpec& net, const VmSpec& vm) = 0;
  virtual VmState state(const VmHandle& vm) = 0;
  // ACPI power-off, then a hard stop after grace_s seconds; no error if already stopped.
  virtual Status stop_vm(const VmHandle& vm, int grace_s) = 0;
};

// "qemu" or "libvirt"; unknown names are a usage error.
Result<std::unique_ptr<RescuePlatform>> make_rescue_platform(const std::string& backend);

// 52:54:00 + 3 bytes of BLAKE2b(invocation id + host): stable per invocation and host.
std::string rescue_mac(const std::string& invocation_id, const std::string& host);

}  // namespace planb
