// The libvirt backend of the rescue platform (lib/rescue_platform.hpp), through virsh.
//   network  an isolated libvirt <network> "planb-<id>" (no <forward>: nothing routes out)
//            on bridge "pb-<id>", libvirt's dnsmasq handing each VM its CMDB address by MAC
//            (no dynamic range: an unknown MAC gets nothing) and naming it in <domain>.
//   VM       a transient domain "planb-<id>-<host>" on a qcow2 overlay of the repository
//            image, serial console to a file, qemu run as root without relabelling
//            (<seclabel>: the repository image's owner and label are never touched).
// Connection URI: $PLANB_LIBVIRT_URI, default qemu:///system. XML files are written to
// the run directories and handed to virsh by path.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "rescue_platform.hpp"

namespace planb {

std::unique_ptr<RescuePlatform> make_libvirt_platform();

// Failback on the libvirt backend (the qemu backend does this over its QMP socket, which a
// libvirt domain does not offer: libvirt holds qemu's only monitor). Freezes the running
// domain's disk at a point in time: from now on it writes to `next` (a new qcow2 whose
// backing file is the layer it wrote so far, created by libvirt), so that layer can be read
// consistently while the VM runs on. virsh snapshot-create-as --disk-only --atomic
// --no-metadata --diskspec vda,file=NEXT. Returns the layer that was active before.
Result<std::string> libvirt_freeze_active_layer(const std::string& domain, const std::string& next);

// ---- Exposed for unit tests (pure functions, no libvirt needed).
std::string libvirt_uri();  // $PLANB_LIBVIRT_URI or qemu:///system
std::string libvirt_network_name(const RescueNetworkSpec& spec);  // "planb-<id>"
std::string libvirt_bridge_name(const RescueNetworkSpec& spec);   // "pb-<id>" (<= 15 chars)
std::string libvirt_domain_name(const std::string& net_id, const std::string& host);
// Checks the spec (id, CIDR, gateway and lease addresses inside it) and renders the XML.
Result<std::string> libvirt_network_xml(const RescueNetworkSpec& spec);

struct LibvirtDomainParams {
  std::string type = "qemu";          // "kvm" | "qemu" (TCG)
  std::string backing_format = "qcow2";  // of VmSpec::base_image: "qcow2" | "raw"
  std::string base_image;             // absolute paths
  std::string overlay;
  std::string serial_log;
  std::vector<std::string> secmodels = {"dac"};  // the host's security drivers (virsh capabilities)
};
Result<std::string> libvirt_domain_xml(const RescueNetworkSpec& net, const VmSpec& vm,
                                       const LibvirtDomainParams& p);

// "<model>dac</model>" ... from `virsh capabilities` output, in order.
std::vector<std::string> libvirt_secmodels(const std::string& capabilities_xml);

}  // namespace planb
