// planb-assemble: open the sealed bundles in SERVER/inbox in sequence order
// per host, check them against the host's head, apply them into SERVER/store
// (moving `latest` and `candidate`), and record everything in the catalog.
// See man/planb-assemble.1 and ARCHITECTURE.md ("Assembling on the server").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "result.hpp"

namespace planb {

struct AssembleOptions {
  std::string server;  // "" : $PLANB_SERVER or /var/lib/planb-server
  std::string host;    // "" : every host with bundles in the inbox
  bool progress = true;
};

// What happened to one inbox file.
struct AssembledBundle {
  std::string name, host;
  uint64_t sequence = 0, bytes = 0;
  // applied | already_applied | refused | full_bundle_needed | failed
  std::string state;
  std::string kind;    // for refused / full_bundle_needed: the ticket kind
  std::string reason;  // error message, if any
  int code = 0;        // exit code of the refusal or failure
  int64_t ticket = 0;  // catalog ticket id of a refusal
  std::string manifest;  // applied: manifest id
  bool full = false;
  uint64_t objects = 0, deltas = 0;
  double seconds = 0;
};

struct AssembleReport {
  std::string server;
  std::vector<AssembledBundle> bundles;
  std::vector<std::string> locked_hosts;  // skipped: another planb-assemble holds them
  int applied = 0, already = 0, refused = 0, failed = 0;
  Error first_failure;
  double seconds = 0;
};

std::string default_server_path();

Result<AssembleReport> assemble(const AssembleOptions& opt);

// Exit code for a report: 0 all applied (or nothing to do), 3 some refused and
// some applied, 8 all refused, 7 a host was locked, or the first failure's code.
int assemble_exit_code(const AssembleReport& r);

}  // namespace planb
