// planb-invoke vpn: the VPN files of an invocation (lib/vpn.hpp), and the
// operator's levers to configure, start and stop its WireGuard end.
#pragma once
#include <string>

#include "result.hpp"

namespace planb {

struct VpnCmdOptions {
  std::string server;    // --server ("" = $PLANB_SERVER or the default)
  std::string id;        // invocation id
  std::string peer;      // --peer NAME: print that peer's configuration
  bool qr = false;       // --qr (with --peer): the QR code as text (qrencode -t ansiutf8)
  bool json = false;
  bool configure = false;  // --configure: (re)write the files from the CMDB (keys kept)
  std::string cmdb;        // --cmdb FILE|DIR (default SERVER/cmdb)
  std::string customer;    // --customer (default: state.json's, or the CMDB's only one)
  std::string rescue;      // --rescue-network CIDR (default: state.json's, or the CMDB's)
  bool up = false;         // --up: start the platform end (wireguard-go) in --netns
  bool down = false;       // --down: stop it
  std::string netns;       // --netns NAME (default: state.json's, or planb-<id8>)
};

// SERVER/invocations/ID/vpn
std::string vpn_dir_of(const std::string& server, const std::string& id);
Status vpn_main(const VpnCmdOptions& o);

}  // namespace planb
