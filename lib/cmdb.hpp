// The CMDB: what the server knows about each protected host — its VM size,
// what it depends on, and the checks that prove a Rescue Image of it works.
// TOML, one file per customer under SERVER/cmdb/*.toml; format in
// doc/formats.md, "CMDB v1". Parsed with toml++; every error names the file
// and line ("cmdb/acme.toml:12: ...") and exits with code 2.
//
// Invocation (issue 5) adds per-customer tables: [rescue], [authorisation]
// with [[authorisation.executive]], [[dns]] and [vpn] with [[vpn.peer]]; and
// per host `address`. See doc/formats.md, "CMDB v1".
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "result.hpp"

namespace planb {

enum class CheckType { Tcp, Http, Ssh, Systemd, Script };
std::string_view check_type_name(CheckType t);

struct CmdbCheck {
  CheckType type = CheckType::Tcp;
  std::string name;          // optional label; default: type + target
  int port = 0;              // tcp, http: guest port (http default 80)
  std::string path = "/";    // http
  int status = 200;          // http: expected status
  std::string body;          // http: substring the body must contain ("" = any)
  std::string command;       // ssh: run as root; exit 0 = pass
  std::string output;        // ssh: substring its output must contain ("" = any)
  std::string run;           // script: program on the server; exit 0 = pass
  std::vector<int> ports;    // script: extra guest ports to forward
  int timeout = 0;           // seconds per attempt (0 = the check type's default)
  std::string where;         // "file:line" of the [[host.check]] table
  // "tcp 22", "http :80/ 200 'Plan B'", "ssh 'test -s /x'", "systemd", "script /p".
  std::string target() const;
};

struct CmdbHost {
  std::string name;
  std::string customer;
  std::string description;
  int cpus = 1;
  uint64_t memory_mb = 1024;
  int ssh_port = 22;               // guest port of sshd (ssh, systemd checks)
  std::vector<std::string> depends_on;
  std::vector<CmdbCheck> checks;
  std::string address;             // rescue-network IPv4 address ("" = assigned from [rescue] network)
  std::string where;               // "file:line" of the [[host]] table
  // Guest ports the checks need forwarded (sorted, unique).
  std::vector<int> guest_ports() const;
};

// [[authorisation.executive]]: a person who may approve an invocation.
struct CmdbExecutive {
  std::string name;
  std::string email;
  std::string key;    // Ed25519 public key as written: "ssh-ed25519 AAAA… [comment]",
                      // base64 or hex of the 32 raw bytes (normalised by the invoke code)
  std::string where;
};

// [authorisation]: quorum = M (of the N executives listed).
struct CmdbAuthorisation {
  int quorum = 0;     // 0 = no [authorisation] table: nothing can be invoked
  std::vector<CmdbExecutive> executives;
  std::string where;
};

// [[dns]]: one record switched to the rescue platform by an RFC 2136 update.
struct CmdbDnsRecord {
  std::string server = "127.0.0.1";  // primary that accepts the update
  int port = 53;
  std::string zone;      // "acme.example." (trailing dot added if missing)
  std::string tsig_key;  // BIND key file (key "name" { algorithm …; secret "…"; };), absolute
                         // (relative paths in the file are relative to the CMDB file)
  std::string name;      // fully qualified owner name ("www.acme.example.")
  std::string type = "A";  // A, AAAA, CNAME, MX, TXT
  std::string host;      // A: the rescue address of this CMDB host
  std::string value;     // or a literal rdata ("10 mail.acme.example." for MX)
  int ttl = 60;
  std::string where;
};

// [[vpn.peer]]: one WireGuard peer (a site router or a member of staff).
struct CmdbVpnPeer {
  std::string name;
  std::vector<std::string> allowed_ips;  // networks behind the peer (site-to-site); [] = roaming
  std::string where;
};

// [vpn]: WireGuard access to the rescue network.
struct CmdbVpn {
  bool enabled = false;          // a [vpn] table is present
  int listen_port = 51820;       // UDP port on the rescue platform
  std::string endpoint;          // "host:port" peers connect to ("" = listen address:port)
  std::string network = "10.98.0.0/24";  // tunnel addresses (.1 = the platform, peers from .2)
  std::vector<CmdbVpnPeer> peers;
  std::string where;
};

// [rescue]: the rescue network the customer's hosts share.
struct CmdbRescue {
  std::string network = "10.99.0.0/24";  // IPv4/prefix; .1 is the platform's gateway address
  std::string domain;                    // DNS domain on the rescue network ("" = CUSTOMER.rescue)
  std::string where;
};

struct CmdbCustomer {
  std::string name;
  std::string file;  // the TOML file it came from
  CmdbRescue rescue;
  CmdbAuthorisation authorisation;
  std::vector<CmdbDnsRecord> dns;
  CmdbVpn vpn;
};

struct Cmdb {
  std::vector<std::string> files;  // what was read
  std::vector<CmdbHost> hosts;
  std::vector<CmdbCustomer> customers;  // one per file
  const CmdbHost* find(std::string_view host) const;
  const CmdbCustomer* customer(std::string_view name) const;
  std::vector<const CmdbHost*> hosts_of(std::string_view customer) const;
};

// Parses one file's text; `file` names it in errors.
Result<Cmdb> parse_cmdb(std::string_view text, const std::string& file);
// A .toml file, or a directory: every *.toml in it (sorted; not subdirectories).
// Host names must be unique across files; depends_on must name known hosts
// and have no cycle. A missing path is exit 4.
Result<Cmdb> load_cmdb(const std::string& file_or_dir);

}  // namespace planb
