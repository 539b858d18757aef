// The invocation orchestrator (planb-invoke plan/start/status/stop/drill/report):
// boots a customer's good images on the rescue platform in dependency order,
// runs each host's checks on the rescue network, redirects DNS and sets up VPN
// access (real invocations), writes the handover report, and tears it all down.
// Runtime state: SERVER/invocations/ID/state.json (doc/formats.md "Invocation state v1").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "checks.hpp"
#include "cmdb.hpp"
#include "rescue_platform.hpp"
#include "result.hpp"
#include "server_layout.hpp"

namespace planb {

// Exit codes of planb-invoke beyond the shared ones (10 = not authorised, in
// invoke_auth.hpp; 12 = DNS redirection failed, in dns_redirect.hpp).
inline constexpr int kExitNotVerified = 11;  // a host failed its checks (or could not start)

// ---- Plan: which image each host boots and in which order.
struct PlannedHost {
  const CmdbHost* host = nullptr;
  uint64_t sequence = 0;  // the good image's snapshot
  std::string image;      // SERVER/repository/HOST/SEQ.qcow2
  int wave = 0;           // 1 = depends on nothing; n = 1 + the latest wave it depends on
};

struct InvocationPlan {
  std::string customer;
  std::vector<PlannedHost> hosts;  // in wave order, then CMDB order
  int waves = 0;
};

// hosts empty = every host of the customer. Refuses (before anything boots): an
// unknown customer or host, a host depending on one outside the selection, a
// cycle, a host without a good image, a good image missing from the repository.
Result<InvocationPlan> plan_invocation(const ServerLayout& s, const Cmdb& cmdb, const std::string& customer,
                                       const std::vector<std::string>& hosts);
std::string plan_text(const InvocationPlan& p);
std::string plan_json(const InvocationPlan& p);

// ---- Runtime state (state.json).
struct HostCheckState {
  std::string label;
  bool passed = false;
  double seconds = -1;  // since the invocation started; -1 = not (yet) passed
  int attempts = 0;
  std::string detail;
};

struct InvocationHost {
  std::string name;
  uint64_t sequence = 0;
  std::string image;
  std::string address, mac;
  int cpus = 1;
  uint64_t memory_mb = 0;
  int wave = 0;
  std::vector<std::string> depends_on;
  // planned | waiting | booting | verified | failed | blocked | stopped
  std::string state = "planned";
  std::string detail;
  VmHandle vm;
  double booted_s = -1, verified_s = -1;  // seconds since the invocation started
  int64_t verified_at = 0;                // unix time
  std::vector<HostCheckState> checks;
};

struct InvocationState {
  std::string id, customer, mode, reason, backend;
  std::vector<std::string> approvers;  // "Name <email>"
  RescueNetworkSpec net;
  std::string netns;                   // where checks run ("" = host namespace)
  std::string domain;
  // starting | running (all verified) | partial | stopping | stopped
  std::string status = "starting";
  int64_t started_at = 0, verified_at = 0, stopped_at = 0;
  double seconds_to_verified = -1;
  bool dns_redirected = false, vpn_up = false;
  std::vector<std::string> vpn_peers;  // peer config files
  std::vector<InvocationHost> hosts;
  InvocationHost* find(const std::string& name);
};

std::string invocation_state_path(const ServerLayout& s, const std::string& id);
Result<InvocationState> load_invocation_state(const ServerLayout& s, const std::string& id);
Status save_invocation_state(const ServerLayout& s, const InvocationState& st);
std::string invocation_state_json(const InvocationState& st);

// ---- Running it.
struct RunOptions {
  std::string backend = "qemu";
  std::string accel = "auto";
  int timeout = 600;   // seconds each host may take from boot to all checks passed
  bool drill = false;  // isolated: no DNS, no VPN; tear down at the end unless keep
  bool keep = false;
  bool progress = true;
  std::string actor;   // who ran it (audit)
};

// Boots and verifies; leaves the VMs running (a drill tears down unless keep).
// Returns the final state; status "running" when every host verified.
Result<InvocationState> run_invocation(const ServerLayout& s, const Cmdb& cmdb, const std::string& id,
                                       const std::string& customer, const std::string& mode,
                                       const std::vector<std::string>& hosts, const std::string& reason,
                                       const std::vector<std::string>& approvers, const RunOptions& o);
// Stops the VMs (dependents first), rolls DNS back, takes VPN and network down.
Result<InvocationState> stop_invocation(const ServerLayout& s, const std::string& id, const std::string& actor,
                                        bool progress);
// Refreshes each VM's state from the platform; live = run every check once now.
Result<InvocationState> invocation_status(const ServerLayout& s, const Cmdb& cmdb, const std::string& id, bool live);

// ---- Handover report: report.md, report.html, report.json in the invocation dir.
Status write_handover_report(const ServerLayout& s, const InvocationState& st);
std::string handover_markdown(const ServerLayout& s, const InvocationState& st);

}  // namespace planb
