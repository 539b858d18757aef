// The qemu backend of the rescue platform: a network namespace with a bridge and dnsmasq,
// qemu processes detached inside it (see rescue_qemu.hpp).
#include "rescue_qemu.hpp"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <set>
#include <sstream>
#include <thread>

#include "fsutil.hpp"
#include "hash.hpp"
#include "ipv4.hpp"
#include "json.hpp"

namespace planb {

namespace {

using Clock = std::chrono::steady_clock;

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string one_line(std::string s, size_t max = 300) {
  for (auto& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  if (s.size() > max) s = s.substr(s.size() - max);
  return s;
}

// Closes every descriptor above 2 (a detached daemon must not hold its starter's pipes:
// a Bats test would wait for them forever).
void close_from_3() {
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, 3U, ~0U, 0U) == 0) return;
#endif
  for (int fd = 3; fd < 1024; fd++) ::close(fd);
}

// ---- A child process (ip, qemu-img, dnsmasq's starter) with a time limit and its output.
struct Proc {
  bool started = false;
  bool timed_out = false;
  int status = -1;  // exit status, or 128+signal
  std::string out;  // stdout + stderr, up to 64 KiB
};

// netns_fd >= 0: the child joins that network namespace before exec.
Proc run(const std::vector<std::string>& argv, int timeout_s, int netns_fd = -1) {
  Proc r;
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC) != 0) {
    r.out = "pipe: " + errstr(errno);
    return r;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    r.out = "fork: " + errstr(errno);
    ::close(pfd[0]);
    ::close(pfd[1]);
    return r;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) {
      std::fprintf(stderr, "setns: %s\n", std::strerror(errno));
      _exit(126);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(pfd[1], 1);
    ::dup2(pfd[1], 2);
    close_from_3();
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  ::close(pfd[1]);
  r.started = true;
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  char buf[4096];
  bool eof = false;
  while (!eof) {
    int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) {
      r.timed_out = true;
      break;
    }
    pollfd p{pfd[0], POLLIN, 0};
    int pr = ::poll(&p, 1, std::min(left, 200));
    if (pr > 0) {
      ssize_t n = ::read(pfd[0], buf, sizeof buf);
      if (n <= 0) eof = true;
      else if (r.out.size() < 65536) r.out.append(buf, size_t(n));
    }
  }
  ::close(pfd[0]);
  int st = 0;
  if (r.timed_out) {
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, &st, 0);
    r.status = -1;
    return r;
  }
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  return r;
}

std::string proc_error(const std::string& what, const Proc& p) {
  if (!p.started) return "failed to " + what + ": " + one_line(p.out);
  if (p.timed_out) return "failed to " + what + ": timed out";
  return "failed to " + what + ": " + (p.out.empty() ? "exit status " + std::to_string(p.status) : one_line(p.out));
}

Status run_ok(const std::vector<std::string>& argv, const std::string& what, int timeout_s = 30) {
  Proc p = run(argv, timeout_s);
  if (!p.started || p.timed_out || p.status != 0) return fail(proc_error(what, p));
  return {};
}

std::string netns_path(const std::string& ns) { return "/run/netns/" + ns; }

bool link_exists(const std::string& ns, const std::string& dev) {
  Proc p = run({"ip", "-n", ns, "link", "show", "dev", dev}, 10);
  return p.started && !p.timed_out && p.status == 0;
}

// ---- Processes: what runs, in which namespace.
std::vector<std::string> proc_cmdline(int64_t pid) {
  std::vector<std::string> v;
  auto r = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  if (!r.ok()) return v;
  const std::string& s = *r;
  size_t a = 0;
  while (a < s.size()) {
    size_t z = s.find('\0', a);
    if (z == std::string::npos) z = s.size();
    v.push_back(s.substr(a, z - a));
    a = z + 1;
  }
  return v;
}

// Alive and not a zombie.
bool pid_alive(int64_t pid) {
  if (pid <= 0) return false;
  auto r = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (!r.ok()) return false;
  size_t rp = r->rfind(')');
  if (rp == std::string::npos || rp + 2 >= r->size()) return false;
  char state = (*r)[rp + 2];
  return state != 'Z' && state != 'X';
}

int64_t read_pid_file(const std::string& path) {
  auto r = read_file(path);
  if (!r.ok()) return 0;
  try {
    return std::stoll(*r);
  } catch (...) {
    return 0;
  }
}

bool cmdline_has(const std::vector<std::string>& cmd, const std::string& needle) {
  for (const auto& a : cmd)
    if (a.find(needle) != std::string::npos) return true;
  return false;
}

std::string base_name(const std::string& p) {
  size_t s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

std::string real_path(const std::string& p) {
  char b[PATH_MAX];
  return ::realpath(p.c_str(), b) ? std::string(b) : p;
}

// A qemu process started for this overlay (pid reuse: another program, or another VM, is not).
// The overlay is compared as given and resolved (a handle may name it by a relative path or
// through a symbolic link).
bool is_our_qemu(int64_t pid, const std::string& overlay) {
  if (overlay.empty() || !pid_alive(pid)) return false;
  auto cmd = proc_cmdline(pid);
  if (cmd.empty() || base_name(cmd[0]).find("qemu") == std::string::npos) return false;
  if (cmdline_has(cmd, "file=" + overlay + ",")) return true;
  std::string want = real_path(overlay);
  for (const auto& a : cmd) {
    if (a.rfind("file=", 0) != 0) continue;
    size_t comma = a.find(',');
    if (real_path(a.substr(5, comma == std::string::npos ? std::string::npos : comma - 5)) == want) return true;
  }
  return false;
}

bool is_our_dnsmasq(int64_t pid, const std::string& pid_file) {
  if (!pid_alive(pid)) return false;
  auto cmd = proc_cmdline(pid);
  return !cmd.empty() && base_name(cmd[0]) == "dnsmasq" && cmdline_has(cmd, "--pid-file=" + pid_file);
}

// Processes whose network namespace is the one at `ns_path`.
std::vector<int64_t> pids_in_netns(const std::string& ns_path) {
  std::vector<int64_t> out;
  struct stat ns {};
  if (::stat(ns_path.c_str(), &ns) != 0) return out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    struct stat st {};
    std::string p = std::string("/proc/") + e->d_name + "/ns/net";
    if (::stat(p.c_str(), &st) == 0 && st.st_ino == ns.st_ino && st.st_dev == ns.st_dev) {
      int64_t pid = std::atoll(e->d_name);
      if (pid != ::getpid()) out.push_back(pid);
    }
  }
  ::closedir(d);
  return out;
}

// SIGTERM, up to `grace_ms` for them to go, then SIGKILL.
void terminate(const std::vector<int64_t>& pids, int grace_ms) {
  for (auto p : pids) ::kill(pid_t(p), SIGTERM);
  auto deadline = Clock::now() + std::chrono::milliseconds(grace_ms);
  auto any_alive = [&] {
    for (auto p : pids)
      if (pid_alive(p)) return true;
    return false;
  };
  while (any_alive() && Clock::now() < deadline) sleep_ms(50);
  for (auto p : pids)
    if (pid_alive(p)) ::kill(pid_t(p), SIGKILL);
  deadline = Clock::now() + std::chrono::seconds(5);
  while (any_alive() && Clock::now() < deadline) sleep_ms(50);
}

// ---- QMP: one line-delimited JSON exchange at a time. qemu serves one client at a time:
// connect, say what is needed, disconnect.
class Qmp {
 public:
  Status connect(const std::string& path, int timeout_ms) {
    if (path.size() >= sizeof(sockaddr_un::sun_path)) return fail("failed to connect to QMP: socket path too long: " + path);
    Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      return fail("failed to connect to QMP socket " + path + ": " + errstr(errno));
    fd_ = std::move(s);
    PB_ASSIGN(std::string greeting, line(timeout_ms));
    if (greeting.find("\"QMP\"") == std::string::npos) return fail("failed to talk QMP: unexpected greeting");
    PB_ASSIGN(std::string r, command(R"({"execute":"qmp_capabilities"})", timeout_ms));
    (void)r;
    return {};
  }
  Result<std::string> command(const std::string& json, int timeout_ms) {
    std::string msg = json + "\n";
    if (::send(fd_.get(), msg.data(), msg.size(), MSG_NOSIGNAL) != ssize_t(msg.size()))
      return fail("failed to send a QMP command: " + errstr(errno));
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      PB_ASSIGN(std::string l, line(std::max(left, 1)));
      if (l.find("\"event\"") != std::string::npos && l.find("\"return\"") == std::string::npos) continue;
      if (l.find("\"error\"") != std::string::npos) return fail("QMP error: " + one_line(l));
      return l;
    }
  }

 private:
  Result<std::string> line(int timeout_ms) {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (left <= 0) return fail("failed to read from QMP: timed out");
      pollfd p{fd_.get(), POLLIN, 0};
      int r = ::poll(&p, 1, left);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) continue;
      char b[4096];
      ssize_t n = ::read(fd_.get(), b, sizeof b);
      if (n <= 0) return fail("failed to read from QMP: connection closed");
      buf_.append(b, size_t(n));
    }
  }
  Fd fd_;
  std::string buf_;
};

bool kvm_usable() {
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

Result<std::string> absolute(const std::string& p) {
  if (!p.empty() && p[0] == '/') return p;
  char cwd[PATH_MAX];
  if (!::getcwd(cwd, sizeof cwd)) return fail("failed to resolve " + p + ": getcwd: " + errstr(errno));
  return std::string(cwd) + "/" + p;
}

// qcow2 or raw, told by the qcow2 magic (never by qemu's probing).
std::string image_format(const std::string& path) {
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  char magic[4] = {};
  if (f.valid() && ::pread(f.get(), magic, 4, 0) == 4 && std::memcmp(magic, "QFI\xfb", 4) == 0) return "qcow2";
  return "raw";
}

bool valid_mac(const std::string& m) {
  if (m.size() != 17) return false;
  for (size_t i = 0; i < 17; i++) {
    if (i % 3 == 2) {
      if (m[i] != ':') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(m[i]))) {
      return false;
    }
  }
  return true;
}

bool valid_dns_label(const std::string& h) {
  if (h.empty() || h.size() > 63 || h.front() == '-' || h.back() == '-') return false;
  for (char c : h)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  return true;
}

bool valid_domain(const std::string& d) {
  if (d.empty() || d.size() > 200) return false;
  std::istringstream in(d);
  std::string label;
  while (std::getline(in, label, '.'))
    if (!valid_dns_label(label)) return false;
  return d.back() != '.';
}

bool valid_id(const std::string& id) {
  // netns names and tap names stay short; "planb-" + id.
  if (id.empty() || id.size() > 24) return false;
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  return true;
}

class QemuPlatform : public RescuePlatform {
 public:
  std::string backend() const override { return "qemu"; }

  Status create_network(const RescueNetworkSpec& spec) override {
    PB_TRY(validate_rescue_network(spec));
    const std::string ns = qemu_netns_name(spec), what = "create the rescue network " + ns;
    auto net = *parse_ipv4_net(spec.cidr);
    PB_ASSIGN(std::string run_dir, absolute(spec.run_dir));
    PB_TRY(mkdir_p(run_dir, 0700));

    // The namespace (adopted if it exists: a re-run after a crash).
    if (!path_exists(netns_path(ns))) PB_TRY(run_ok({"ip", "netns", "add", ns}, what + ": ip netns add"));
    PB_TRY(run_ok({"ip", "-n", ns, "link", "set", "lo", "up"}, what + ": lo up"));
    if (!link_exists(ns, "br0"))
      PB_TRY(run_ok({"ip", "-n", ns, "link", "add", "br0", "type", "bridge"}, what + ": bridge br0"));
    PB_TRY(run_ok({"ip", "-n", ns, "addr", "replace", spec.gateway + "/" + std::to_string(net.prefix), "dev", "br0"},
                  what + ": gateway address"));
    PB_TRY(run_ok({"ip", "-n", ns, "link", "set", "br0", "up"}, what + ": br0 up"));

    // dnsmasq: adopted when one runs with exactly this configuration, else (re)started.
    RescueNetworkSpec abs = spec;
    abs.run_dir = run_dir;
    std::vector<std::string> argv = qemu_dnsmasq_argv(abs);
    std::string args;
    for (const auto& a : argv) args += a + "\n";
    std::string pid_file = run_dir + "/dnsmasq.pid";
    int64_t pid = read_pid_file(pid_file);
    bool running = is_our_dnsmasq(pid, pid_file);
    auto old_args = read_file(run_dir + "/dnsmasq.args");
    if (running && old_args.ok() && *old_args == args) {
      PB_TRY(write_network_info(spec, run_dir));
      return {};
    }
    if (running) terminate({pid}, 3000);
    PB_TRY(write_file_atomic(run_dir + "/dnsmasq.args", args, 0644));
    Fd nsfd(::open(netns_path(ns).c_str(), O_RDONLY | O_CLOEXEC));
    if (!nsfd.valid()) return fail("failed to " + what + ": open " + netns_path(ns) + ": " + errstr(errno));
    // dnsmasq daemonizes itself once its sockets are bound: its exit status tells.
    Proc p = run(argv, 30, nsfd.get());
    if (!p.started || p.timed_out || p.status != 0) return fail(proc_error(what + ": dnsmasq", p));
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (!is_our_dnsmasq(read_pid_file(pid_file), pid_file) && Clock::now() < deadline) sleep_ms(50);
    if (!is_our_dnsmasq(read_pid_file(pid_file), pid_file))
      return fail("failed to " + what + ": dnsmasq did not stay up (see " + run_dir + "/dnsmasq.log)");
    return write_network_info(spec, run_dir);
  }

  Status destroy_network(const RescueNetworkSpec& spec) override {
    if (!valid_id(spec.id)) return make_error(kExitUsage, "failed to remove the rescue network: bad id '" + spec.id + "'");
    const std::string ns = qemu_netns_name(spec), what = "remove the rescue network " + ns;
    // Everything still running in the namespace (VMs not stopped before, dnsmasq), then
    // dnsmasq by its pid file in case it is somewhere else.
    terminate(pids_in_netns(netns_path(ns)), 5000);
    if (!spec.run_dir.empty()) {
      std::string pid_file = spec.run_dir + "/dnsmasq.pid";
      int64_t pid = read_pid_file(pid_file);
      if (is_our_dnsmasq(pid, pid_file)) terminate({pid}, 3000);
    }
    if (path_exists(netns_path(ns))) {
      PB_TRY(run_ok({"ip", "netns", "delete", ns}, what + ": ip netns delete"));
    }
    return {};
  }

  std::string check_netns(const RescueNetworkSpec& spec) const override { return netns_path(qemu_netns_name(spec)); }

  Result<VmHandle> start_vm(const RescueNetworkSpec& net, const VmSpec& vm_in) override {
    const std::string what = "start the VM of " + vm_in.host;
    if (!valid_id(net.id)) return make_error(kExitUsage, "failed to " + what + ": bad network id '" + net.id + "'");
    if (!valid_dns_label(vm_in.host)) return make_error(kExitUsage, "failed to " + what + ": bad host name");
    if (!valid_mac(vm_in.mac)) return make_error(kExitUsage, "failed to " + what + ": bad MAC '" + vm_in.mac + "'");
    if (vm_in.cpus < 1 || vm_in.memory_mb < 16)
      return make_error(kExitUsage, "failed to " + what + ": cpus must be >= 1 and memory >= 16 MiB");
    if (vm_in.overlay.empty() || vm_in.run_dir.empty())
      return make_error(kExitUsage, "failed to " + what + ": overlay and run directory are required");
    VmSpec vm = vm_in;
    PB_ASSIGN(vm.base_image, absolute(vm_in.base_image));
    PB_ASSIGN(vm.overlay, absolute(vm_in.overlay));
    PB_ASSIGN(vm.run_dir, absolute(vm_in.run_dir));
    if (!path_exists(vm.base_image)) return make_error(kExitNotFound, "failed to " + what + ": no image " + vm.base_image);
    const std::string ns = qemu_netns_name(net);
    if (!path_exists(netns_path(ns)))
      return make_error(kExitNotFound, "failed to " + what + ": the rescue network " + ns + " does not exist");
    std::string accel = vm.accel;
    if (accel == "auto") accel = kvm_usable() ? "kvm" : "tcg";
    if (accel != "kvm" && accel != "tcg") return make_error(kExitUsage, "failed to " + what + ": accel must be auto, kvm or tcg");
    PB_TRY(mkdir_p(vm.run_dir, 0700));
    PB_TRY(mkdir_p(dirname_of(vm.overlay), 0700));

    QemuVmParams p;
    p.accel = accel;
    p.tap = qemu_tap_name(vm.mac);
    p.serial_log = vm.run_dir + "/serial.log";
    p.qmp = qemu_qmp_path(vm.run_dir);
    p.pid_file = vm.run_dir + "/pid";
    p.overlay = vm.overlay;
    VmHandle h;
    h.backend = "qemu";
    h.host = vm.host;
    h.serial_log = p.serial_log;
    h.qmp = p.qmp;
    h.overlay = vm.overlay;

    // Already running (a re-run after the caller crashed): adopt it.
    int64_t old = read_pid_file(p.pid_file);
    if (is_our_qemu(old, vm.overlay)) {
      h.pid = old;
      h.id = "pid:" + std::to_string(old);
      return h;
    }

    // The overlay: created once; a restart keeps what the VM wrote on the rescue platform.
    if (!path_exists(vm.overlay)) {
      std::string tmp = vm.overlay + ".tmp";
      ::unlink(tmp.c_str());
      PB_TRY(run_ok({"qemu-img", "create", "-q", "-f", "qcow2", "-b", vm.base_image, "-F", image_format(vm.base_image), tmp},
                    what + ": qemu-img create " + vm.overlay, 120));
      if (::rename(tmp.c_str(), vm.overlay.c_str()) != 0)
        return fail("failed to " + what + ": rename " + tmp + ": " + errstr(errno));
      PB_TRY(fsync_dir(dirname_of(vm.overlay)));
    } else {
      Proc info = run({"qemu-img", "info", "-U", "--output=json", vm.overlay}, 30);
      if (!info.started || info.timed_out || info.status != 0) return fail(proc_error(what + ": qemu-img info " + vm.overlay, info));
      if (info.out.find("\"backing-filename\": " + json_escape(vm.base_image)) == std::string::npos)
        return make_error(kExitExists, "failed to " + what + ": the overlay " + vm.overlay + " exists with another backing file than " +
                                           vm.base_image);
    }

    // The tap on br0 (persistent, so a restarted qemu finds it; it goes with the namespace).
    if (!link_exists(ns, p.tap))
      PB_TRY(run_ok({"ip", "-n", ns, "tuntap", "add", "dev", p.tap, "mode", "tap"}, what + ": tap " + p.tap));
    PB_TRY(run_ok({"ip", "-n", ns, "link", "set", "dev", p.tap, "master", "br0", "up"}, what + ": tap " + p.tap + " on br0"));

    // qemu, detached: -daemonize returns once the VM is set up (QMP socket, pid file).
    if (p.qmp.rfind("/run/planb/", 0) == 0) PB_TRY(mkdir_p("/run/planb", 0700));
    ::unlink(p.pid_file.c_str());
    std::vector<std::string> argv = qemu_vm_argv(vm, p);
    std::string log = vm.run_dir + "/qemu.log";
    Fd nsfd(::open(netns_path(ns).c_str(), O_RDONLY | O_CLOEXEC));
    if (!nsfd.valid()) return fail("failed to " + what + ": open " + netns_path(ns) + ": " + errstr(errno));
    pid_t child = ::fork();
    if (child < 0) return fail("failed to " + what + ": fork: " + errstr(errno));
    if (child == 0) {
      ::setsid();
      if (::setns(nsfd.get(), CLONE_NEWNET) != 0) _exit(126);
      int in = ::open("/dev/null", O_RDONLY);
      int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      close_from_3();
      std::vector<char*> a;
      for (auto& x : argv) a.push_back(const_cast<char*>(x.c_str()));
      a.push_back(nullptr);
      ::execvp(a[0], a.data());
      std::fprintf(stderr, "cannot run %s: %s\n", a[0], std::strerror(errno));
      _exit(127);
    }
    int st = 0;
    auto deadline = Clock::now() + std::chrono::seconds(120);
    pid_t w;
    while ((w = ::waitpid(child, &st, WNOHANG)) == 0 && Clock::now() < deadline) sleep_ms(50);
    if (w == 0) {
      ::kill(child, SIGKILL);
      ::waitpid(child, &st, 0);
      return fail("failed to " + what + ": qemu did not finish starting within 120 s");
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      auto l = read_file(log);
      std::string tail = l.ok() ? one_line(*l, 400) : "";
      return fail("failed to " + what + ": qemu: " + (tail.empty() ? "exit status " + std::to_string(WEXITSTATUS(st)) : tail));
    }
    int64_t pid = read_pid_file(p.pid_file);
    if (!is_our_qemu(pid, vm.overlay)) return fail("failed to " + what + ": qemu exited at once (see " + log + ")");
    h.pid = pid;
    h.id = "pid:" + std::to_string(pid);
    return h;
  }

  VmState state(const VmHandle& vm) override {
    if (vm.pid <= 0) return VmState::Stopped;
    if (!pid_alive(vm.pid)) return VmState::Stopped;
    auto cmd = proc_cmdline(vm.pid);
    if (cmd.empty()) return VmState::Unknown;
    return is_our_qemu(vm.pid, vm.overlay) ? VmState::Running : VmState::Stopped;
  }

  Status stop_vm(const VmHandle& vm, int grace_s) override {
    if (state(vm) != VmState::Running) return {};
    const std::string what = "stop the VM of " + vm.host;
    auto gone = [&] { return !is_our_qemu(vm.pid, vm.overlay); };
    auto wait_gone = [&](int ms) {
      auto deadline = Clock::now() + std::chrono::milliseconds(ms);
      while (!gone() && Clock::now() < deadline) sleep_ms(100);
      return gone();
    };
    // ACPI power button: the guest shuts down cleanly if it listens.
    bool asked = false;
    if (!vm.qmp.empty()) {
      Qmp q;
      if (q.connect(vm.qmp, 5000).ok() && q.command(R"({"execute":"system_powerdown"})", 5000).ok()) asked = true;
    }
    if (asked && wait_gone(std::max(grace_s, 0) * 1000)) return {};
    // Hard stop: QMP quit (qemu flushes its disks), then SIGTERM, then SIGKILL.
    if (!vm.qmp.empty()) {
      Qmp q;
      if (q.connect(vm.qmp, 3000).ok()) (void)q.command(R"({"execute":"quit"})", 3000);
      if (wait_gone(5000)) return {};
    }
    if (!gone()) ::kill(pid_t(vm.pid), SIGTERM);
    if (wait_gone(5000)) return {};
    if (!gone()) ::kill(pid_t(vm.pid), SIGKILL);
    if (wait_gone(5000)) return {};
    return fail("failed to " + what + ": qemu (pid " + std::to_string(vm.pid) + ") does not exit");
  }

 private:
  Status write_network_info(const RescueNetworkSpec& spec, const std::string& run_dir) {
    std::vector<std::string> leases;
    for (const auto& l : spec.leases)
      leases.push_back(JsonObject().add("host", l.host).add("mac", l.mac).add("address", l.address).str());
    std::string j = JsonObject()
                        .add("format", int64_t(1))
                        .add("backend", "qemu")
                        .add("netns", qemu_netns_name(spec))
                        .add("netns_path", netns_path(qemu_netns_name(spec)))
                        .add("bridge", "br0")
                        .add("cidr", spec.cidr)
                        .add("gateway", spec.gateway)
                        .add("domain", spec.domain)
                        .add_raw("leases", json_array(leases))
                        .str();
    return write_file_atomic(run_dir + "/network.json", j + "\n", 0644);
  }
};

}  // namespace

std::unique_ptr<RescuePlatform> make_qemu_platform() { return std::make_unique<QemuPlatform>(); }

std::string qemu_netns_name(const RescueNetworkSpec& spec) { return "planb-" + spec.id; }

std::string qemu_tap_name(const std::string& mac) {
  std::string hex;
  for (char c : mac)
    if (c != ':') hex += char(std::tolower(static_cast<unsigned char>(c)));
  return "tap-" + (hex.size() >= 6 ? hex.substr(hex.size() - 6) : hex);
}

Status validate_rescue_network(const RescueNetworkSpec& spec) {
  const std::string what = "failed to set up the rescue network";
  if (!valid_id(spec.id)) return make_error(kExitUsage, what + ": bad id '" + spec.id + "' (letters, digits, - and _, up to 24)");
  auto net = parse_ipv4_net(spec.cidr);
  if (!net) return make_error(kExitUsage, what + ": bad network '" + spec.cidr + "' (want a.b.c.0/N, N 8..30)");
  auto gw = parse_ipv4(spec.gateway);
  if (!gw || !net->contains(*gw) || *gw == net->base || *gw == net->broadcast())
    return make_error(kExitUsage, what + ": gateway '" + spec.gateway + "' is not a host address in " + spec.cidr);
  if (!spec.domain.empty() && !valid_domain(spec.domain))
    return make_error(kExitUsage, what + ": bad domain '" + spec.domain + "'");
  if (spec.run_dir.empty()) return make_error(kExitUsage, what + ": no run directory");
  std::set<uint32_t> addrs{*gw};
  std::set<std::string> macs, hosts, taps;
  for (const auto& l : spec.leases) {
    if (!valid_dns_label(l.host)) return make_error(kExitUsage, what + ": bad host name '" + l.host + "'");
    if (!valid_mac(l.mac)) return make_error(kExitUsage, what + ": bad MAC '" + l.mac + "' for " + l.host);
    auto a = parse_ipv4(l.address);
    if (!a || !net->contains(*a) || *a == net->base || *a == net->broadcast())
      return make_error(kExitUsage, what + ": address '" + l.address + "' of " + l.host + " is not a host address in " + spec.cidr);
    if (!addrs.insert(*a).second)
      return make_error(kExitUsage, what + ": address " + l.address + " of " + l.host + " is taken (gateway or another host)");
    std::string m = l.mac;
    std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    if (!macs.insert(m).second || !taps.insert(qemu_tap_name(m)).second)
      return make_error(kExitUsage, what + ": MAC " + l.mac + " of " + l.host + " collides with another host's");
    if (!hosts.insert(l.host).second) return make_error(kExitUsage, what + ": host " + l.host + " twice");
  }
  return {};
}

std::vector<std::string> qemu_dnsmasq_argv(const RescueNetworkSpec& spec) {
  auto net = parse_ipv4_net(spec.cidr);
  std::string base = net ? ipv4_str(net->base) : "", mask = net ? ipv4_str(net->mask()) : "";
  std::vector<std::string> a = {
      "dnsmasq",
      "--conf-file=/dev/null",  // nothing from /etc/dnsmasq.conf
      "--bind-interfaces", "--interface=br0", "--except-interface=lo",
      "--no-resolv", "--no-hosts", "--no-poll",  // no upstream, no /etc/hosts: isolated
      "--dhcp-range=" + base + ",static," + mask + ",12h",  // fixed leases only
      "--dhcp-authoritative",
      "--dhcp-option=option:router," + spec.gateway,  // the platform (VPN peers come through it)
      "--dhcp-option=option:dns-server," + spec.gateway,
      "--dhcp-leasefile=" + spec.run_dir + "/dnsmasq.leases",
      "--pid-file=" + spec.run_dir + "/dnsmasq.pid",
      "--log-facility=" + spec.run_dir + "/dnsmasq.log",
      "--log-dhcp",
  };
  if (!spec.domain.empty()) {
    a.push_back("--domain=" + spec.domain);
    a.push_back("--local=/" + spec.domain + "/");
  }
  for (const auto& l : spec.leases) {
    a.push_back("--dhcp-host=" + l.mac + "," + l.address + "," + l.host);
    // DNS for the name before any lease is taken (on the command line: dnsmasq reads files
    // after dropping to nobody, and the run directory is root's).
    a.push_back("--host-record=" + l.host + (spec.domain.empty() ? "" : "," + l.host + "." + spec.domain) + "," + l.address);
  }
  return a;
}

std::string qemu_qmp_path(const std::string& vm_run_dir) {
  std::string p = vm_run_dir + "/qmp.sock";
  if (p.size() < 100) return p;
  return "/run/planb/qmp-" + hash_bytes(vm_run_dir).hex().substr(0, 16) + ".sock";
}

std::vector<std::string> qemu_vm_argv(const VmSpec& vm, const QemuVmParams& p) {
  return {"qemu-system-x86_64",
          "-name", "planb-" + vm.host,
          "-nodefaults", "-no-user-config",
          "-machine", "q35", "-accel", p.accel, "-cpu", p.accel == "kvm" ? "host" : "max",
          "-smp", std::to_string(vm.cpus), "-m", std::to_string(vm.memory_mb),
          // Default (writeback) cache: the overlay holds what the customer does on the platform.
          "-drive", "file=" + p.overlay + ",if=none,id=disk0,format=qcow2",
          "-device", "virtio-blk-pci,drive=disk0,bootindex=0",
          "-netdev", "tap,id=net0,ifname=" + p.tap + ",script=no,downscript=no",
          "-device", "virtio-net-pci,netdev=net0,mac=" + vm.mac,
          "-vga", "std", "-display", "none",
          "-chardev", "file,id=serial0,path=" + p.serial_log + ",append=on", "-serial", "chardev:serial0",
          "-qmp", "unix:" + p.qmp + ",server=on,wait=off",
          "-pidfile", p.pid_file, "-daemonize"};
}

}  // namespace planb
