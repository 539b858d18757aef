#include "boot_test.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <sstream>

#include "catalog.hpp"
#include "checks.hpp"
#include "cli.hpp"
#include "fsutil.hpp"
#include "hash_file.hpp"
#include "json.hpp"
#include "server_layout.hpp"
#include "store.hpp"

namespace planb {

namespace {

using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) { g_signal = sig; }

// SIGINT/SIGTERM/SIGHUP set g_signal (no SA_RESTART: sleeps end early) for
// the life of the object; the previous handlers come back after.
class SignalGuard {
 public:
  SignalGuard() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
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
  ::nanosleep(&ts, nullptr);  // a signal ends it early
}

std::string trim(std::string s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::string one_line(std::string s, size_t max = 300) {
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  s = trim(s);
  if (s.size() > max) s = s.substr(0, max) + "...";
  return s;
}

std::string fmt_secs(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", s);
  return b;
}

Result<int> free_port() {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return fail("failed to find a free port: socket: " + errstr(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return fail("failed to find a free port: bind: " + errstr(errno));
  socklen_t len = sizeof a;
  ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return int(ntohs(a.sin_port));
}

// ---- QMP: one line-delimited JSON exchange at a time.
class Qmp {
 public:
  Status connect(const std::string& path, pid_t qemu, int timeout_ms) {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
      if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        fd_ = std::move(s);
        break;
      }
      int st;
      if (::waitpid(qemu, &st, WNOHANG) == qemu) {
        exited_ = st;
        return fail("failed to connect to qemu's QMP socket: qemu exited");
      }
      if (Clock::now() > deadline) return fail("failed to connect to qemu's QMP socket " + path + ": " + errstr(errno));
      sleep_ms(50);
    }
    PB_ASSIGN(std::string greeting, line(timeout_ms));
    if (greeting.find("\"QMP\"") == std::string::npos) return fail("failed to talk QMP: unexpected greeting");
    PB_ASSIGN(std::string r, command(R"({"execute":"qmp_capabilities"})", timeout_ms));
    (void)r;
    return {};
  }
  bool connected() const { return fd_.valid(); }
  std::optional<int> exited() const { return exited_; }

  // Sends one command; returns the "return"/"error" line (events skipped).
  Result<std::string> command(const std::string& json, int timeout_ms) {
    if (!fd_.valid()) return fail("failed to send a QMP command: not connected");
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

  // The HMP command's text output.
  Result<std::string> hmp(const std::string& cmd, int timeout_ms) {
    PB_ASSIGN(std::string l, command(R"({"execute":"human-monitor-command","arguments":{"command-line":)" +
                                         json_escape(cmd) + "}}",
                                     timeout_ms));
    // {"return": "text with \r\n escapes"}: unescape the few escapes HMP uses.
    size_t a = l.find('"', l.find("\"return\"") + 8);
    std::string out;
    for (size_t i = a + 1; a != std::string::npos && i < l.size() && l[i] != '"'; i++) {
      if (l[i] == '\\' && i + 1 < l.size()) {
        char c = l[++i];
        out += c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c;
      } else {
        out += l[i];
      }
    }
    return out;
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
  std::optional<int> exited_;
};

// ---- The VM.
struct Vm {
  pid_t pid = -1;
  Qmp qmp;
  std::optional<int> status;  // wait status once reaped

  bool running() {
    if (pid < 0 || status) return false;
    int st;
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      status = st;
      return false;
    }
    return true;
  }
  // QMP quit, then SIGKILL after a few seconds; always reaps.
  void stop() {
    if (pid < 0 || status) return;
    if (qmp.connected()) (void)qmp.command(R"({"execute":"quit"})", 2000);
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (running() && Clock::now() < deadline) sleep_ms(50);
    if (running()) {
      ::kill(pid, SIGKILL);
      int st;
      ::waitpid(pid, &st, 0);
      status = st;
    }
  }
  ~Vm() { stop(); }
};

bool kvm_usable() {
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

std::string utc_iso(time_t t) {
  char b[32];
  struct tm tm;
  ::gmtime_r(&t, &tm);
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

// The last `max` bytes of a file ("" if unreadable).
std::string read_tail(const std::string& path, size_t max) {
  auto r = read_file(path);
  if (!r.ok()) return "";
  std::string s = std::move(*r);
  if (s.size() > max) s = s.substr(s.size() - max);
  return s;
}

// A boot that can no longer succeed, as the guest's serial console shows it
// (systemd's emergency/rescue shell, the initramfs shell, a kernel panic):
// the line that says so, or "" while none is seen.
std::string boot_failure(const std::string& serial_log) {
  static const char* const kSigns[] = {
      "You are in emergency mode", "You are in rescue mode", "Give root password for maintenance",
      "Cannot open access to console, the root account is locked", "Dropping to a shell",
      "Kernel panic - not syncing"};
  std::string tail = read_tail(serial_log, 64 * 1024);
  for (const char* sign : kSigns) {
    size_t at = tail.find(sign);
    if (at == std::string::npos) continue;
    size_t b = tail.rfind('\n', at), e = tail.find('\n', at);
    b = b == std::string::npos ? 0 : b + 1;
    std::string line = tail.substr(b, e == std::string::npos ? std::string::npos : e - b);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    std::string out;
    for (char c : line)
      if (uint8_t(c) >= 0x20 && c != 0x7f) out += c;
    return out.size() > 200 ? out.substr(0, 200) : out;
  }
  return "";
}

class TtyLine {
 public:
  explicit TtyLine(bool on) : on_(on && ::isatty(2)) {}
  ~TtyLine() { clear(); }
  void show(const std::string& s) {
    if (!on_) return;
    std::fprintf(stderr, "\r\033[K%s", s.substr(0, 150).c_str());
    std::fflush(stderr);
    drawn_ = true;
  }
  void clear() {
    if (on_ && drawn_) std::fprintf(stderr, "\r\033[K"), std::fflush(stderr);
    drawn_ = false;
  }

 private:
  bool on_;
  bool drawn_ = false;
};

}  // namespace

Result<BootTestResult> boot_test(const BootTestOptions& o) {
  PB_TRY(validate_host_name(o.host));
  if (o.timeout < 1) return make_error(kExitUsage, "failed to boot-test " + o.host + ": --timeout must be at least 1");
  ServerLayout s = ServerLayout::at(o.server);
  std::string cmdb_path = o.cmdb.empty() ? s.cmdb() : o.cmdb;
  PB_ASSIGN(Cmdb cmdb, load_cmdb(cmdb_path));
  const CmdbHost* host = cmdb.find(o.host);
  if (!host) return make_error(kExitNotFound, "failed to boot-test " + o.host + ": no host " + o.host + " in the CMDB " + cmdb_path);
  if (host->checks.empty())
    return make_error(kExitUsage, "failed to boot-test " + o.host + ": the CMDB has no checks for it (" + host->where + ")");

  // Which image and snapshot.
  std::optional<uint64_t> seq = o.sequence;
  std::string image = o.image;
  if (image.empty()) {
    if (!seq) {
      auto store = Store::open(s.store(), false);
      if (!store.ok()) return make_error(kExitNotFound, "failed to boot-test " + o.host + ": no --image and " + store.error().message);
      PB_ASSIGN(auto cand, store->read_ref(o.host, "candidate"));
      if (!cand) return make_error(kExitNotFound, "failed to boot-test " + o.host + ": the host has no candidate snapshot");
      seq = cand->sequence;
    }
    image = s.image(o.host, *seq);
  } else if (!seq) {
    // SERVER/images/HOST/SEQ/disk.qcow2 names its snapshot.
    std::string d = dirname_of(image), p = dirname_of(d);
    std::string n = d.substr(d.rfind('/') + 1);
    if (!n.empty() && n.find_first_not_of("0123456789") == std::string::npos && p.size() > o.host.size() &&
        p.compare(p.size() - o.host.size() - 1, std::string::npos, "/" + o.host) == 0)
      seq = std::strtoull(n.c_str(), nullptr, 10);
  }
  struct stat ist;
  if (::stat(image.c_str(), &ist) != 0 || !S_ISREG(ist.st_mode))
    return make_error(kExitNotFound, "failed to boot-test " + o.host + ": no image " + image);
  image = std::filesystem::absolute(image).lexically_normal().string();

  std::string report_dir = o.report_dir;
  if (report_dir.empty()) {
    if (seq) {
      report_dir = s.report_dir(o.host, *seq);
    } else {
      return make_error(kExitUsage, "failed to boot-test " + o.host + ": " + image +
                                        " is not SERVER/images/HOST/SEQ/disk.qcow2; give --sequence or --report-dir");
    }
  }
  report_dir = std::filesystem::absolute(report_dir).lexically_normal().string();

  bool needs_ssh = false;
  for (const auto& c : host->checks)
    needs_ssh |= c.type == CheckType::Ssh || c.type == CheckType::Systemd;
  std::string key = s.keys() + "/test-agent";
  if (needs_ssh && !path_exists(key))
    return make_error(kExitNotFound, "failed to boot-test " + o.host + ": the ssh checks need the test agent's key " + key +
                                         " (planb-convert creates it)");

  std::string accel = o.accel;
  if (accel == "auto") accel = kvm_usable() ? "kvm" : "tcg";
  if (accel != "kvm" && accel != "tcg")
    return make_error(kExitUsage, "failed to boot-test " + o.host + ": --accel must be auto, kvm or tcg");

  // Ports: one loopback forward per guest port the checks need.
  CheckTarget cx;
  cx.cancelled = [] { return g_signal != 0; };
  cx.host = host;
  cx.key = key;
  cx.report_dir = report_dir;
  cx.image = image;
  std::vector<int> gports = host->guest_ports();

  BootTestResult res;
  res.report_dir = report_dir;

  std::string tmp, sockdir;
  auto cleanup_tmp = [&] {
    std::error_code ec;
    if (!tmp.empty()) std::filesystem::remove_all(tmp, ec);
    if (!sockdir.empty()) std::filesystem::remove_all(sockdir, ec);
  };
  struct Cleanup {
    std::function<void()> f;
    ~Cleanup() { f(); }
  } cleanup{cleanup_tmp};

  if (!o.dry_run) {
    PB_TRY(mkdir_p(report_dir, 0755));
    // A report from an earlier run must not outlive this one.
    for (const char* f : {"report.json", "summary.txt"}) ::unlink((report_dir + "/" + f).c_str());
    tmp = report_dir + "/.tmp-boot-test-" + std::to_string(::getpid());
    std::error_code ec;
    std::filesystem::remove_all(tmp, ec);
    PB_TRY(mkdir_p(tmp, 0700));
    char sd[] = "/tmp/planb-boot-test-XXXXXX";  // short: a socket path has 108 bytes
    if (!::mkdtemp(sd)) return fail("failed to create a temporary directory in /tmp: " + errstr(errno));
    sockdir = sd;
  } else {
    tmp = report_dir + "/.tmp-boot-test";
    sockdir = "/tmp/planb-boot-test-XXXXXX";
  }
  std::string overlay = tmp + "/overlay.qcow2", serial = tmp + "/serial.log", screen = tmp + "/screen.png";
  std::string qmp_sock = sockdir + "/qmp.sock";

  // The image's hash, before booting (the overlay keeps it unchanged).
  std::string image_hash;
  if (!o.dry_run) {
    PB_ASSIGN(Hash h, hash_file(image));
    image_hash = h.hex();
    // qcow2 (what planb-convert writes) or a raw disk (a physical machine's image as it is),
    // told by the qcow2 magic, never by qemu's probing.
    std::string backing_format = "raw";
    {
      Fd f(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
      char magic[4] = {};
      if (f.valid() && ::pread(f.get(), magic, 4, 0) == 4 && std::memcmp(magic, "QFI\xfb", 4) == 0)
        backing_format = "qcow2";
    }
    ProcResult q =
        run_process({"qemu-img", "create", "-q", "-f", "qcow2", "-b", image, "-F", backing_format, overlay}, {}, "", 120);
    if (!q.started || q.status != 0)
      return fail("failed to create the overlay " + overlay + ": qemu-img: " + one_line(q.output.empty() ? "failed to run" : q.output));
  }

  SignalGuard guard;
  Vm vm;
  // tcp over slirp: the host-side connect always succeeds, whatever the guest
  // does; "info usernet" tells whether the guest answered (ESTABLISHED) or not
  // yet (SYN_SENT); a refused port closes the host-side connection.
  cx.tcp_probe = [&vm](const CmdbCheck& c, int hp, int fd, int timeout_s) -> CheckAttempt {
    auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    std::string last = "no answer from the guest";
    while (Clock::now() < deadline && !g_signal) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 250) > 0) {
        char b[256];
        ssize_t n = ::recv(fd, b, sizeof b, 0);
        if (n > 0) return {true, "port " + std::to_string(c.port) + " open (data received)"};
        return {false, "port " + std::to_string(c.port) + " closed (connection closed by the guest)"};
      }
      auto text = vm.qmp.hmp("info usernet", 2000);
      if (!text.ok()) return {false, text.error().message};
      std::istringstream in(*text);
      std::string l;
      bool pending = false, established = false;
      while (std::getline(in, l)) {
        std::istringstream f(l);
        std::string proto, fdn, saddr, sport;
        f >> proto >> fdn >> saddr >> sport;
        if (sport != std::to_string(hp)) continue;
        if (proto == "TCP[ESTABLISHED]") established = true;
        if (proto == "TCP[SYN_SENT]") pending = true;
      }
      if (established) return {true, "port " + std::to_string(c.port) + " open"};
      last = pending ? "no answer from the guest yet (SYN sent)" : "no connection";
    }
    return {false, "port " + std::to_string(c.port) + ": " + last};
  };
  std::vector<std::string> argv;
  int64_t started_at = 0;
  Clock::time_point t0;
  // Start qemu; a forward port taken meanwhile by someone else: try again.
  for (int attempt = 0;; attempt++) {
    cx.ports.clear();
    std::string netdev = "user,id=net0,restrict=on";
    for (int g : gports) {
      PB_ASSIGN(int hp, free_port());
      cx.ports[g] = hp;
      netdev += ",hostfwd=tcp:127.0.0.1:" + std::to_string(hp) + "-:" + std::to_string(g);
    }
    argv = {"qemu-system-x86_64", "-name", "planb-boot-test-" + o.host, "-nodefaults", "-no-user-config",
            "-machine", "q35", "-accel", accel, "-cpu", accel == "kvm" ? "host" : "max",
            "-smp", std::to_string(host->cpus), "-m", std::to_string(host->memory_mb),
            "-drive", "file=" + overlay + ",if=none,id=disk0,format=qcow2,cache=unsafe",
            "-device", "virtio-blk-pci,drive=disk0,bootindex=0",
            "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0",
            "-vga", "std", "-display", "none",
            "-serial", "file:" + serial, "-qmp", "unix:" + qmp_sock + ",server=on,wait=off"};
    if (o.dry_run) break;
    std::string qemu_log = tmp + "/qemu.log";
    pid_t pid = ::fork();
    if (pid < 0) return fail("failed to start qemu: fork: " + errstr(errno));
    if (pid == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive planb-boot-test
      int in = ::open("/dev/null", O_RDONLY);
      int out = ::open(qemu_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      std::vector<char*> a;
      for (auto& x : argv) a.push_back(const_cast<char*>(x.c_str()));
      a.push_back(nullptr);
      ::execvp(a[0], a.data());
      std::fprintf(stderr, "cannot run %s: %s\n", a[0], std::strerror(errno));
      _exit(127);
    }
    vm.qmp = Qmp{};
    vm.status.reset();
    vm.pid = pid;
    started_at = std::time(nullptr);
    t0 = Clock::now();
    Status st = vm.qmp.connect(qmp_sock, pid, 10000);
    if (st.ok()) break;
    std::string log = one_line(read_tail(qemu_log, 2000), 500);
    vm.stop();
    if (log.find("hostfwd") != std::string::npos && attempt < 3) continue;
    return fail("failed to start qemu: " + (log.empty() ? st.error().message : log));
  }
  res.qemu_argv = argv;

  std::vector<CheckResult> results;
  for (const auto& c : host->checks) results.push_back({c});
  std::vector<Clock::time_point> next(results.size(), Clock::now());
  std::string outcome, boot_failed_line;
  double first_pass = -1, all_pass = -1;
  TtyLine tty(o.progress);

  if (o.dry_run) {
    outcome = "dry_run";
  } else {
    auto deadline = t0 + std::chrono::seconds(o.timeout);
    auto next_serial_look = Clock::now();
    while (true) {
      if (g_signal) break;
      if (!vm.running()) {
        outcome = "qemu_exited";
        break;
      }
      // A boot that is dead already (emergency shell, panic) fails now, not at the time limit.
      if (Clock::now() >= next_serial_look) {
        next_serial_look = Clock::now() + std::chrono::seconds(2);
        boot_failed_line = boot_failure(serial);
        if (!boot_failed_line.empty()) {
          outcome = "boot_failed";
          break;
        }
      }
      bool all = true;
      for (size_t i = 0; i < results.size() && !g_signal; i++) {
        auto& r = results[i];
        if (r.passed) continue;
        all = false;
        if (Clock::now() < next[i] || Clock::now() >= deadline) continue;
        tty.show("planb-boot-test: " + o.host + " " + fmt_secs(secs_since(t0)) + "s/" + std::to_string(o.timeout) +
                 "s: waiting for " + check_label(r.check) + " (attempt " + std::to_string(r.attempts + 1) + ")");
        cx.remaining_s = int(std::ceil(std::chrono::duration<double>(deadline - Clock::now()).count()));
        CheckAttempt a = run_check(cx, r.check);
        r.attempts++;
        r.detail = a.detail;
        next[i] = Clock::now() + std::chrono::seconds(1);
        if (a.passed) {
          r.passed = true;
          r.seconds = secs_since(t0);
          if (first_pass < 0) first_pass = r.seconds;
        }
      }
      if (g_signal) break;
      bool now_all = std::all_of(results.begin(), results.end(), [](const CheckResult& r) { return r.passed; });
      if (all || now_all) {
        all_pass = secs_since(t0);
        outcome = "passed";
        break;
      }
      if (Clock::now() >= deadline) {
        outcome = first_pass < 0 ? "time_limit" : "checks_failed";
        break;
      }
      if (first_pass >= 0 && secs_since(t0) >= first_pass + o.grace) {
        outcome = "checks_failed";
        break;
      }
      sleep_ms(200);
    }
  }
  tty.clear();
  if (g_signal) {
    int sig = g_signal;
    vm.stop();
    return fail("failed to boot-test " + o.host + ": interrupted by signal " + std::to_string(sig) + " (qemu stopped, no report)");
  }

  // Screenshot and stop.
  bool have_screen = false;
  if (!o.dry_run) {
    if (vm.running()) {
      auto r = vm.qmp.command(R"({"execute":"screendump","arguments":{"filename":)" + json_escape(screen) +
                                  R"(,"format":"png"}})",
                              10000);
      have_screen = r.ok() && path_exists(screen);
    }
    vm.stop();
  }
  double total = o.dry_run ? 0 : secs_since(t0);

  // The report.
  bool passed = outcome == "passed";
  res.passed = passed;
  res.exit_code = passed                       ? 0
                  : outcome == "checks_failed" ? kExitChecksFailed
                  : outcome == "time_limit"    ? kExitTimeLimit
                  : outcome == "boot_failed"   ? kExitBootFailed
                                               : 1;
  if (o.dry_run) res.exit_code = 0;
  std::string serial_out = report_dir + "/serial.log", screen_out = report_dir + "/screen.png";

  std::vector<std::string> checks_json, fwd_json, argv_json;
  for (const auto& r : results) {
    JsonObject j;
    j.add("name", check_label(r.check))
        .add("type", check_type_name(r.check.type))
        .add("target", r.check.target())
        .add("passed", r.passed);
    if (r.seconds >= 0) j.add("seconds", std::round(r.seconds * 10) / 10);
    else j.add_raw("seconds", "null");
    j.add("attempts", r.attempts).add("detail", r.detail).add("cmdb", r.check.where);
    checks_json.push_back(j.str());
  }
  for (const auto& [g, h] : cx.ports)
    fwd_json.push_back(JsonObject().add("host", "127.0.0.1:" + std::to_string(h)).add("guest_port", g).str());
  for (const auto& a : argv) argv_json.push_back(json_escape(a));
  JsonObject img;
  img.add("path", image).add("hash", image_hash).add("hash_algorithm", "blake2b-256").add("bytes", uint64_t(ist.st_size));
  JsonObject rep;
  rep.add("format", "planb-boot-test-report").add("version", 1).add("host", o.host);
  if (seq) rep.add("sequence", *seq);
  else rep.add_raw("sequence", "null");
  rep.add_raw("image", img.str())
      .add("accel", accel)
      .add("cpus", host->cpus)
      .add("memory_mb", host->memory_mb)
      .add("started_at", int64_t(started_at))
      .add("started", utc_iso(started_at))
      .add("timeout", o.timeout)
      .add("grace", o.grace)
      .add("seconds", std::round(total * 10) / 10);
  if (first_pass >= 0) rep.add("boot_seconds", std::round(first_pass * 10) / 10);
  else rep.add_raw("boot_seconds", "null");
  if (all_pass >= 0) rep.add("ready_seconds", std::round(all_pass * 10) / 10);
  else rep.add_raw("ready_seconds", "null");
  rep.add("passed", passed).add("outcome", outcome).add("exit_code", res.exit_code);
  rep.add_raw("checks", json_array(checks_json));
  rep.add_raw("network", JsonObject().add("mode", "user").add("restrict", true).add_raw("forwards", json_array(fwd_json)).str());
  rep.add_raw("qemu_command", json_array(argv_json));
  rep.add("serial_log", serial_out);
  if (have_screen) rep.add("screenshot", screen_out);
  else rep.add_raw("screenshot", "null");
  rep.add("report_dir", report_dir);
  res.report_json = rep.str();

  // summary.txt
  std::ostringstream sum;
  int npass = int(std::count_if(results.begin(), results.end(), [](const CheckResult& r) { return r.passed; }));
  sum << "Boot test of " << o.host << (seq ? " snapshot " + std::to_string(*seq) : std::string()) << ": "
      << (passed ? "PASSED" : "FAILED") << " (" << outcome << ")\n"
      << "image:    " << image << "\n"
      << "hash:     blake2b-256 " << image_hash << "\n"
      << "started:  " << utc_iso(started_at) << ", accel " << accel << ", " << host->cpus << " cpu, " << host->memory_mb
      << " MiB\n"
      << "time:     " << fmt_secs(total) << " s (limit " << o.timeout << " s)"
      << (first_pass >= 0 ? ", first check passed after " + fmt_secs(first_pass) + " s" : std::string(", no check passed"))
      << "\n"
      << "checks:   " << npass << " of " << results.size() << " passed\n";
  for (const auto& r : results) {
    sum << "  [" << (r.passed ? "PASS" : "FAIL") << "] " << check_label(r.check);
    if (r.passed) sum << " after " << fmt_secs(r.seconds) << " s";
    sum << ", " << r.attempts << " attempt" << (r.attempts == 1 ? "" : "s");
    if (!r.detail.empty()) sum << ": " << r.detail;
    sum << "\n";
  }
  sum << "serial:   " << serial_out << "\n"
      << "screen:   " << (have_screen ? screen_out : std::string("(no screenshot)")) << "\n";
  res.summary = sum.str();
  if (!passed) {
    std::string failed;
    for (const auto& r : results)
      if (!r.passed) failed += (failed.empty() ? "" : "; ") + check_label(r.check) + (r.detail.empty() ? "" : ": " + r.detail);
    if (outcome == "time_limit")
      res.verdict = "time limit of " + std::to_string(o.timeout) + " s hit and no check passed (" + failed + ")";
    else if (outcome == "boot_failed")
      res.verdict = "the boot failed: the serial console shows \"" + boot_failed_line + "\" (" + failed + ")";
    else if (outcome == "qemu_exited")
      res.verdict = "qemu exited before the checks passed: " + one_line(read_tail(tmp + "/qemu.log", 1000)) + " (" + failed + ")";
    else
      res.verdict = std::to_string(results.size() - size_t(npass)) + " of " + std::to_string(results.size()) +
                    " checks failed: " + failed;
  }
  if (o.dry_run) return res;

  // Files: serial.log and screen.png first, the report last.
  PB_TRY(write_file_atomic(serial_out, read_tail(serial, 16u << 20)));
  if (have_screen) {
    PB_ASSIGN(std::string png, read_file(screen));
    PB_TRY(write_file_atomic(screen_out, png));
  }
  PB_TRY(write_file_atomic(report_dir + "/summary.txt", res.summary));
  PB_TRY(write_file_atomic(report_dir + "/report.json", res.report_json + "\n"));

  // The catalog, when there is one and the snapshot is known.
  if (seq && path_exists(s.catalog())) {
    Status st = [&]() -> Status {
      PB_ASSIGN(Catalog cat, Catalog::open(s.catalog()));
      PB_ASSIGN(auto rows, cat.images(o.host));
      int64_t img_id = 0;
      for (const auto& r : rows)
        if (r.sequence == *seq) img_id = std::max(img_id, r.id);
      if (!img_id) {
        ImageRow r;
        r.host = o.host;
        r.sequence = *seq;
        r.path = image;
        r.bytes = uint64_t(ist.st_size);
        PB_ASSIGN(img_id, cat.add_image(r));
      }
      BootTestRow b;
      b.image_id = img_id;
      b.passed = passed;
      b.report_dir = report_dir;
      b.started_at = started_at;
      b.seconds = total;
      b.checks_json = json_array(checks_json);
      PB_ASSIGN(int64_t id, cat.record_boot_test(b));
      (void)id;
      return {};
    }();
    if (!st.ok()) print_warning("planb-boot-test", "failed to record the boot test in the catalog: " + st.error().message);
  }
  return res;
}

}  // namespace planb
