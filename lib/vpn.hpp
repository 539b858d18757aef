// VPN access to the rescue network: WireGuard, for a customer's sites and
// roaming staff ([vpn] and [[vpn.peer]] in the CMDB).
//
// vpn_configure() generates the keys (libsodium: X25519 clamped scalars in
// WireGuard's base64 key format, a preshared key per peer) and writes, under
// the invocation's vpn directory (doc/formats.md "VPN files v1"):
//   keys/server.key, keys/NAME.key, keys/NAME.psk   0600, reused when present
//   server.conf        the platform side, `wg setconf` format (0600)
//   peers/NAME.conf    one per peer, wg-quick format (0600)
//   peers/NAME.png     its QR code (qrencode, config on stdin), when qrencode exists
//   setup.json         what vpn_up/vpn_down and `planb-invoke vpn` need
// vpn_up() runs the platform end with wireguard-go (userspace; the machine
// may have no kernel WireGuard): the TUN interface is created in the host
// namespace, where wireguard-go's UDP socket stays, then moved into the
// rescue network's namespace (ARCHITECTURE.md "VPN access").
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "cmdb.hpp"
#include "result.hpp"

namespace planb {

struct VpnPeer {
  std::string name;
  std::string address;                   // tunnel address, "10.98.0.2"
  std::vector<std::string> allowed_ips;  // networks behind the peer ([] = roaming)
  std::string public_key;                // base64
  std::string config;                    // path of peers/NAME.conf
  std::string qr;                        // path of peers/NAME.png ("" without qrencode)
};

struct VpnSetup {
  std::string dir;             // the vpn directory
  std::string invocation_id;
  std::string customer;
  std::string interface_name;  // "pbwg-<first 8 of the id>"
  std::string server_conf;     // dir/server.conf
  std::string public_key;      // the platform's (base64)
  std::string tunnel_network;  // "10.98.0.0/24"
  std::string address;         // the platform's tunnel address with prefix, "10.98.0.1/24"
  std::string rescue_network;  // "10.99.0.0/24"
  std::string dns;             // the rescue gateway, "10.99.0.1"
  std::string endpoint;        // "host:port" the peers connect to
  int listen_port = 51820;
  std::vector<VpnPeer> peers;
  const VpnPeer* find(std::string_view name) const;
};

// WireGuard keys (base64 of 32 bytes, as `wg genkey` / `wg pubkey` print them).
std::string wg_generate_private_key();  // clamped X25519 scalar
std::string wg_generate_preshared_key();
Result<std::string> wg_public_key(std::string_view private_key_b64);
bool wg_valid_key(std::string_view b64);

// "pbwg-" + the first 8 characters of the invocation id (an interface name
// has at most 15).
std::string vpn_interface_name(const std::string& invocation_id);

// Writes the files above; re-running keeps the existing keys (idempotent).
// Errors: no [vpn] table, a bad network, a bad or duplicate peer name (exit 2).
Result<VpnSetup> vpn_configure(const CmdbCustomer& customer, const std::string& vpn_dir,
                               const std::string& rescue_cidr, const std::string& invocation_id);
// Reads vpn_dir/setup.json (exit 4 if vpn_configure never ran there).
Result<VpnSetup> vpn_load(const std::string& vpn_dir);
std::string vpn_setup_json(const VpnSetup& s, bool running);

// Starts wireguard-go for s.interface_name (pid file dir/wireguard-go.pid, log
// dir/wireguard-go.log), moves the interface into `netns` (a name under
// /run/netns, or "/run/netns/NAME"; "" = stay in the host namespace), gives it
// the platform's tunnel address, applies server.conf with `wg setconf`, brings
// it up, enables forwarding in the namespace and routes the site peers'
// networks into the tunnel. Already running: re-applies the configuration.
Status vpn_up(const VpnSetup& s, const std::string& netns);
// Stops wireguard-go (the interface goes with it); no error if not running.
Status vpn_down(const VpnSetup& s);
bool vpn_running(const VpnSetup& s);

}  // namespace planb
