// The CMDB: what the server knows about each protected host — its VM size,
// what it depends on, and the checks that prove a Rescue Image of it works.
// TOML, one file per customer under SERVER/cmdb/*.toml; format in
// doc/formats.md, "CMDB v1". Parsed with toml++; every error names the file
// and line ("cmdb/acme.toml:12: ...") and exits with code 2.
//
// Issue 5 (invocation) will add resources and more per-host data: add the key
// to the known-key lists in cmdb.cpp and a field here.
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
  std::string where;               // "file:line" of the [[host]] table
  // Guest ports the checks need forwarded (sorted, unique).
  std::vector<int> guest_ports() const;
};

struct Cmdb {
  std::vector<std::string> files;  // what was read
  std::vector<CmdbHost> hosts;
  const CmdbHost* find(std::string_view host) const;
};

// Parses one file's text; `file` names it in errors.
Result<Cmdb> parse_cmdb(std::string_view text, const std::string& file);
// A .toml file, or a directory: every *.toml in it (sorted; not subdirectories).
// Host names must be unique across files; depends_on must name known hosts
// and have no cycle. A missing path is exit 4.
Result<Cmdb> load_cmdb(const std::string& file_or_dir);

}  // namespace planb
