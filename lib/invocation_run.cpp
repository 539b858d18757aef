// Running an invocation: network, VPN, VMs in dependency order with their
// checks on the rescue network, DNS redirection, report; and stopping it.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "dns_redirect.hpp"
#include "fsutil.hpp"
#include "invocation.hpp"
#include "invoke_auth.hpp"
#include "ipv4.hpp"
#include "json.hpp"
#include "vpn.hpp"

namespace planb {

namespace {

using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_invoke_signal(int sig) { g_signal = sig; }

class SignalGuard {
 public:
  SignalGuard() {
    struct sigaction sa {};
    sa.sa_handler = on_invoke_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++) ::sigaction(kSigs[i], &sa, &old_[i]);
    g_signal = 0;
  }
  ~SignalGuard() {
    for (int i = 0; i < 3; i++) ::sigaction(kSigs[i], &old_[i], nullptr);
  }

 private:
  static constexpr int kSigs[3] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction old_[3];
};

double secs_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void sleep_ms(int ms) {
  struct timespec ts {ms / 1000, (ms % 1000) * 1000000L};
  ::nanosleep(&ts, nullptr);
}

std::string fmt1(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", s);
  return b;
}

// Runs in the rescue network's namespace (this thread only), so connects
// and the ssh children reach the guests' own addresses.
Status enter_netns(const std::string& netns) {
  if (netns.empty()) return {};
  Fd fd(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return fail("failed to open network namespace " + netns + ": " + errstr(errno));
  if (::setns(fd.get(), CLONE_NEWNET) != 0) return fail("failed to enter network namespace " + netns + ": " + errstr(errno));
  return {};
}

// One host's checks, run by its own thread until all pass, the time limit, or abort.
struct CheckRun {
  std::mutex mu;
  std::vector<HostCheckState> checks;
  bool done = false, passed = false;
  std::string detail;
  std::atomic<bool> abort{false};
  std::thread thread;
};

void run_checks(CheckRun& run, const CmdbHost& host, CheckTarget target, std::string netns, Clock::time_point t0,
                Clock::time_point deadline) {
  Status in = enter_netns(netns);
  if (!in.ok()) {
    std::lock_guard<std::mutex> l(run.mu);
    run.done = true;
    run.detail = in.error().message;
    return;
  }
  target.cancelled = [&run] { return run.abort.load() || g_signal != 0; };
  std::vector<HostCheckState> st(host.checks.size());
  for (size_t i = 0; i < host.checks.size(); i++) st[i].label = check_label(host.checks[i]);
  while (true) {
    bool all = true;
    for (size_t i = 0; i < host.checks.size() && !target.is_cancelled(); i++) {
      if (st[i].passed) continue;
      target.remaining_s = std::max(1, int(std::ceil(std::chrono::duration<double>(deadline - Clock::now()).count())));
      CheckAttempt a = run_check(target, host.checks[i]);
      st[i].attempts++;
      st[i].detail = a.detail;
      if (a.passed) {
        st[i].passed = true;
        st[i].seconds = std::round(secs_since(t0) * 10) / 10;
      } else {
        all = false;
      }
    }
    {
      std::lock_guard<std::mutex> l(run.mu);
      run.checks = st;
      if (all && !target.is_cancelled()) {
        run.done = true;
        run.passed = true;
        run.detail = host.checks.empty() ? "running (no checks in the CMDB)" : "all " + std::to_string(st.size()) + " checks passed";
        return;
      }
      if (target.is_cancelled() || Clock::now() >= deadline) {
        run.done = true;
        std::string failed;
        for (const auto& c : st)
          if (!c.passed) failed += (failed.empty() ? "" : "; ") + c.label + ": " + c.detail;
        run.detail = (target.is_cancelled() ? "stopped waiting: " : "not verified in time: ") + failed;
        return;
      }
    }
    for (int i = 0; i < 10 && !target.is_cancelled() && Clock::now() < deadline; i++) sleep_ms(100);
  }
}

int64_t now_unix() { return int64_t(::time(nullptr)); }

std::string host_detail_json(const InvocationHost& h) {
  return JsonObject()
      .add("host", h.name)
      .add("address", h.address)
      .add("sequence", h.sequence)
      .add("state", h.state)
      .add("detail", h.detail)
      .add("vm", h.vm.id)
      .str();
}

void audit(const ServerLayout& s, const std::string& id, const std::string& event, const std::string& actor,
           const std::string& detail, const std::string& prog_note = "") {
  Status a = audit_append(s, id, event, actor, detail);
  if (!a.ok()) std::fprintf(stderr, "planb-invoke: warning: audit log: %s\n", a.error().message.c_str());
  (void)prog_note;
}

// Transitively: hosts depending on `failed` can never start.
void block_dependents(InvocationState& st, const std::string& failed) {
  for (auto& h : st.hosts) {
    if (h.state != "waiting") continue;
    for (const auto& d : h.depends_on)
      if (d == failed) {
        h.state = "blocked";
        h.detail = "not started: " + failed + " (a dependency) did not verify";
        block_dependents(st, h.name);
        break;
      }
  }
}

class Status1 {
 public:
  explicit Status1(bool on) : on_(on) {}
  void show(const std::string& line) {
    if (!on_) return;
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void note(const std::string& line) {
    if (on_ && shown_) std::fprintf(stderr, "\r\033[K");
    if (on_) std::fprintf(stderr, "%s\n", line.c_str());
    shown_ = false;
  }
  ~Status1() {
    if (on_ && shown_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  bool on_;
  bool shown_ = false;
};

}  // namespace

Result<InvocationState> run_invocation(const ServerLayout& s, const Cmdb& cmdb, const std::string& id,
                                       const std::string& customer, const std::string& mode,
                                       const std::vector<std::string>& hosts, const std::string& reason,
                                       const std::vector<std::string>& approvers, const RunOptions& o) {
  auto t0 = Clock::now();
  SignalGuard signals;
  PB_ASSIGN(InvocationPlan plan, plan_invocation(s, cmdb, customer, hosts));
  const CmdbCustomer& cust = *cmdb.customer(customer);
  PB_ASSIGN(auto platform, make_rescue_platform(o.backend));
  const bool drill = o.drill;
  std::string dir = invocation_dir(s, id);
  PB_TRY(mkdir_p(dir + "/vm"));
  PB_TRY(mkdir_p(dir + "/net"));
  if (path_exists(invocation_state_path(s, id)))
    return make_error(kExitExists, "failed to start invocation " + id + ": it was started before (" +
                                       invocation_state_path(s, id) + "); see planb-invoke status");

  InvocationState st;
  st.id = id;
  st.customer = customer;
  st.mode = mode;
  st.reason = reason;
  st.backend = platform->backend();
  st.approvers = approvers;
  st.started_at = now_unix();
  auto net = parse_ipv4_net(cust.rescue.network);
  st.net.id = id.substr(0, 8);
  st.net.cidr = cust.rescue.network;
  st.net.gateway = ipv4_str(net->gateway());
  st.net.domain = cust.rescue.domain;
  st.net.run_dir = dir + "/net";
  st.domain = cust.rescue.domain;
  for (const auto& p : plan.hosts) {
    InvocationHost h;
    h.name = p.host->name;
    h.sequence = p.sequence;
    h.image = p.image;
    h.address = p.host->address;
    h.mac = rescue_mac(id, h.name);
    h.cpus = p.host->cpus;
    h.memory_mb = p.host->memory_mb;
    h.wave = p.wave;
    h.depends_on = p.host->depends_on;
    h.state = "waiting";
    st.net.leases.push_back({h.name, h.mac, h.address});
    st.hosts.push_back(std::move(h));
  }
  PB_TRY(save_invocation_state(s, st));
  Status1 line(o.progress);
  line.note(std::string(drill ? "drill" : "invocation") + " " + id + ": " + std::to_string(st.hosts.size()) + " hosts of " +
            customer + " in " + std::to_string(plan.waves) + " waves on the " + st.backend + " rescue platform");

  PB_TRY(platform->create_network(st.net));
  st.netns = platform->check_netns(st.net);
  PB_TRY(save_invocation_state(s, st));
  audit(s, id, "network", o.actor,
        JsonObject().add("cidr", st.net.cidr).add("gateway", st.net.gateway).add("isolated", drill).add("backend", st.backend).str());

  // VPN access for the customer's staff and sites (real invocations only).
  if (!drill && cust.vpn.enabled) {
    PB_ASSIGN(VpnSetup vpn, vpn_configure(cust, dir + "/vpn", st.net.cidr, id));
    std::string ns = st.netns;
    if (ns.rfind("/run/netns/", 0) == 0) ns = ns.substr(11);
    PB_TRY(vpn_up(vpn, ns));
    st.vpn_up = true;
    for (const auto& p : vpn.peers) st.vpn_peers.push_back(p.config);
    PB_TRY(save_invocation_state(s, st));
    audit(s, id, "vpn-up", o.actor,
          JsonObject().add("interface", vpn.interface_name).add("endpoint", vpn.endpoint).add("peers", uint64_t(vpn.peers.size())).str());
  }

  // Hosts start as soon as everything they depend on is verified.
  std::string key = s.keys() + "/test-agent";
  std::map<std::string, std::unique_ptr<CheckRun>> runs;
  auto deps_verified = [&](const InvocationHost& h) {
    for (const auto& d : h.depends_on) {
      const InvocationHost* x = st.find(d);
      if (!x || x->state != "verified") return false;
    }
    return true;
  };
  bool changed = true;
  while (!g_signal) {
    for (auto& h : st.hosts) {
      if (h.state != "waiting" || !deps_verified(h)) continue;
      VmSpec vm;
      vm.host = h.name;
      vm.base_image = h.image;
      vm.run_dir = dir + "/vm/" + h.name;
      vm.overlay = vm.run_dir + "/disk.qcow2";
      vm.cpus = h.cpus;
      vm.memory_mb = h.memory_mb;
      vm.mac = h.mac;
      vm.accel = o.accel;
      PB_TRY(mkdir_p(vm.run_dir));
      auto started = platform->start_vm(st.net, vm);
      if (!started.ok()) {
        h.state = "failed";
        h.detail = started.error().message;
        block_dependents(st, h.name);
        audit(s, id, "vm-failed", o.actor, host_detail_json(h));
        line.note("  " + h.name + ": failed to start: " + h.detail);
        changed = true;
        continue;
      }
      h.vm = *started;
      h.state = "booting";
      h.booted_s = std::round(secs_since(t0) * 10) / 10;
      audit(s, id, "vm-start", o.actor, host_detail_json(h));
      line.note("  " + fmt1(secs_since(t0)) + " s  " + h.name + " booting at " + h.address + " (snapshot " +
                std::to_string(h.sequence) + ")");
      const CmdbHost* ch = cmdb.find(h.name);
      CheckTarget target;
      target.host = ch;
      target.address = h.address;
      target.key = key;
      target.report_dir = dir;
      target.image = h.vm.overlay;
      auto run = std::make_unique<CheckRun>();
      CheckRun* rp = run.get();
      run->thread = std::thread(run_checks, std::ref(*rp), std::cref(*ch), target, st.netns, t0,
                                Clock::now() + std::chrono::seconds(o.timeout));
      runs[h.name] = std::move(run);
      changed = true;
    }
    // Collect what the checkers found.
    bool busy = false;
    std::string waiting;
    for (auto& h : st.hosts) {
      if (h.state == "waiting") busy = true;
      if (h.state != "booting") continue;
      CheckRun& r = *runs.at(h.name);
      bool done, passed;
      std::string detail;
      {
        std::lock_guard<std::mutex> l(r.mu);
        if (r.checks.size() != h.checks.size() ||
            [&] {
              for (size_t i = 0; i < r.checks.size(); i++)
                if (r.checks[i].passed != h.checks[i].passed) return true;
              return false;
            }())
          changed = true;
        h.checks = r.checks;
        done = r.done;
        passed = r.passed;
        detail = r.detail;
      }
      if (!done && platform->state(h.vm) == VmState::Stopped) {
        r.abort = true;
        r.thread.join();
        done = true;
        passed = false;
        detail = "the VM stopped (see " + h.vm.serial_log + ")";
      }
      if (!done) {
        busy = true;
        int ok = 0;
        for (const auto& c : h.checks) ok += c.passed;
        waiting += (waiting.empty() ? "" : ", ") + h.name + " " + std::to_string(ok) + "/" + std::to_string(h.checks.size());
        continue;
      }
      if (r.thread.joinable()) r.thread.join();
      h.detail = detail;
      if (passed) {
        h.state = "verified";
        h.verified_s = std::round(secs_since(t0) * 10) / 10;
        h.verified_at = now_unix();
        audit(s, id, "vm-verified", o.actor, host_detail_json(h));
        line.note("  " + fmt1(secs_since(t0)) + " s  " + h.name + " verified (" + detail + ")");
      } else {
        h.state = "failed";
        block_dependents(st, h.name);
        audit(s, id, "vm-failed", o.actor, host_detail_json(h));
        line.note("  " + fmt1(secs_since(t0)) + " s  " + h.name + " FAILED: " + detail);
      }
      changed = true;
    }
    if (changed) {
      PB_TRY(save_invocation_state(s, st));
      changed = false;
    }
    if (!busy) break;
    line.show(fmt1(secs_since(t0)) + " s  checking: " + waiting);
    sleep_ms(250);
  }
  for (auto& [name, r] : runs) {
    r->abort = true;
    if (r->thread.joinable()) r->thread.join();
  }
  bool all = true;
  for (const auto& h : st.hosts) all = all && h.state == "verified";
  if (g_signal) {
    for (auto& h : st.hosts)
      if (h.state == "booting" || h.state == "waiting") h.detail = "interrupted by signal " + std::to_string(int(g_signal));
  }
  if (all) {
    st.seconds_to_verified = std::round(secs_since(t0) * 10) / 10;
    st.verified_at = now_unix();
  }
  st.status = all ? "running" : "partial";
  PB_TRY(save_invocation_state(s, st));

  // DNS and mail to the rescue addresses (real invocations; records of hosts that verified).
  Status dns_status;
  if (!drill && !cust.dns.empty() && !g_signal) {
    std::map<std::string, std::string> addr;
    for (const auto& h : st.hosts) addr[h.name] = h.address;
    PB_ASSIGN(auto changes, plan_dns(cust, addr));
    std::vector<DnsChange> go;
    for (const auto& c : changes) {
      const InvocationHost* h = c.host.empty() ? nullptr : st.find(c.host);
      if (!c.host.empty() && (!h || h->state != "verified")) {
        line.note("  DNS: " + c.name + " " + c.type + " not redirected: " + c.host + " is not verified");
        continue;
      }
      go.push_back(c);
    }
    DnsOptions dopt;
    dopt.audit = [&](const std::string& ev, const std::string& detail) { audit(s, id, ev, o.actor, detail); };
    dopt.note = [&](const std::string& l) { line.note("  DNS: " + l); };
    PB_TRY(mkdir_p(dir + "/dns"));
    dns_status = redirect_dns(go, dir + "/dns/rollback.json", dopt);
    st.dns_redirected = dns_status.ok() && !go.empty();
    PB_TRY(save_invocation_state(s, st));
  }
  PB_TRY(write_handover_report(s, st));
  audit(s, id, drill ? "drill-verified" : "verified", o.actor,
        JsonObject()
            .add("status", st.status)
            .add("seconds_to_verified", st.seconds_to_verified)
            .add("hosts", uint64_t(st.hosts.size()))
            .str());
  if (drill && !o.keep) {
    PB_ASSIGN(st, stop_invocation(s, id, o.actor, o.progress));
  }
  if (!dns_status.ok()) return dns_status.error();
  return st;
}

Result<InvocationState> stop_invocation(const ServerLayout& s, const std::string& id, const std::string& actor,
                                        bool progress) {
  PB_ASSIGN(InvocationState st, load_invocation_state(s, id));
  PB_ASSIGN(auto platform, make_rescue_platform(st.backend));
  Status1 line(progress);
  std::string dir = invocation_dir(s, id);
  bool drill = st.mode == "drill";
  if (st.status != "stopped") {
    st.status = "stopping";
    PB_TRY(save_invocation_state(s, st));
  }
  // DNS back first: clients go back to the originals before the VMs go away.
  std::string journal = dir + "/dns/rollback.json";
  if (path_exists(journal)) {
    DnsOptions dopt;
    dopt.audit = [&](const std::string& ev, const std::string& detail) { audit(s, id, ev, actor, detail); };
    dopt.note = [&](const std::string& l) { line.note("DNS: " + l); };
    PB_TRY(rollback_dns(journal, dopt));
    st.dns_redirected = false;
    PB_TRY(save_invocation_state(s, st));
  }
  // Dependents first: the highest wave stops first.
  int waves = 0;
  for (const auto& h : st.hosts) waves = std::max(waves, h.wave);
  int grace = drill ? 3 : 60;  // a drill's disks are thrown away: no need to wait for a clean shutdown
  for (int w = waves; w >= 1; w--) {
    for (auto& h : st.hosts) {
      if (h.wave != w || h.vm.id.empty()) continue;
      if (platform->state(h.vm) == VmState::Running) {
        line.note("stopping " + h.name);
        PB_TRY(platform->stop_vm(h.vm, grace));
        audit(s, id, "vm-stop", actor, host_detail_json(h));
      }
      if (h.state != "failed" && h.state != "blocked") h.state = "stopped";
    }
    PB_TRY(save_invocation_state(s, st));
  }
  if (st.vpn_up || path_exists(dir + "/vpn/setup.json")) {
    auto vpn = vpn_load(dir + "/vpn");
    if (vpn.ok()) PB_TRY(vpn_down(*vpn));
    st.vpn_up = false;
  }
  PB_TRY(platform->destroy_network(st.net));
  if (drill) {
    // The drill's copy-on-write layers hold nothing anyone needs.
    for (const auto& h : st.hosts)
      if (!h.vm.overlay.empty()) ::unlink(h.vm.overlay.c_str());
  }
  bool was_stopped = st.status == "stopped";
  st.status = "stopped";
  if (!was_stopped) st.stopped_at = now_unix();
  PB_TRY(save_invocation_state(s, st));
  PB_TRY(write_handover_report(s, st));
  if (!was_stopped) audit(s, id, "stop", actor, JsonObject().add("mode", st.mode).add("hosts", uint64_t(st.hosts.size())).str());
  return st;
}

Result<InvocationState> invocation_status(const ServerLayout& s, const Cmdb& cmdb, const std::string& id, bool live) {
  PB_ASSIGN(InvocationState st, load_invocation_state(s, id));
  PB_ASSIGN(auto platform, make_rescue_platform(st.backend));
  for (auto& h : st.hosts) {
    if (h.vm.id.empty()) continue;
    VmState vs = platform->state(h.vm);
    if (vs == VmState::Stopped && (h.state == "verified" || h.state == "booting")) {
      h.state = "down";
      h.detail = "the VM is not running";
    }
  }
  if (live && st.status != "stopped") {
    std::string key = s.keys() + "/test-agent";
    std::thread t([&] {
      if (!enter_netns(st.netns).ok()) return;
      for (auto& h : st.hosts) {
        const CmdbHost* ch = cmdb.find(h.name);
        if (!ch || h.state == "down" || h.vm.id.empty()) continue;
        CheckTarget target;
        target.host = ch;
        target.address = h.address;
        target.key = key;
        target.remaining_s = 15;
        for (size_t i = 0; i < ch->checks.size() && i < h.checks.size(); i++) {
          CheckAttempt a = run_check(target, ch->checks[i]);
          h.checks[i].passed = a.passed;
          h.checks[i].detail = "now: " + a.detail;
        }
      }
    });
    t.join();
  }
  return st;
}

}  // namespace planb
