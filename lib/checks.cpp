// The CMDB checks (lib/checks.hpp).
#include "checks.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <variant>

#include "fsutil.hpp"

namespace planb {

namespace {

using Clock = std::chrono::steady_clock;

void sleep_ms(int ms) {
  struct timespec ts {ms / 1000, (ms % 1000) * 1000000L};
  ::nanosleep(&ts, nullptr);
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

// Connects to address:port within timeout_ms; returns the socket or an error text.
std::variant<Fd, std::string> connect_to(const std::string& address, int port, int timeout_ms) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s.valid()) return "socket: " + errstr(errno);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  if (::inet_pton(AF_INET, address.c_str(), &a.sin_addr) != 1) return "not an IPv4 address: " + address;
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (errno != EINPROGRESS) return "connect: " + errstr(errno);
    pollfd p{s.get(), POLLOUT, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r <= 0) return std::string("connect: timed out");
    int err = 0;
    socklen_t l = sizeof err;
    ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) return "connect: " + errstr(err);
  }
  return s;
}


// ---- A child process (ssh, script) with a time limit and captured output.
}  // namespace

ProcResult run_process(const std::vector<std::string>& argv, const std::vector<std::string>& env_add,
                       const std::string& cwd, int timeout_s, const std::function<bool()>& cancelled) {
  ProcResult r;
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC) != 0) {
    r.output = "pipe: " + errstr(errno);
    return r;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    r.output = "fork: " + errstr(errno);
    ::close(pfd[0]);
    ::close(pfd[1]);
    return r;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(pfd[1], 1);
    ::dup2(pfd[1], 2);
    for (const auto& e : env_add) ::putenv(const_cast<char*>(e.c_str()));
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) _exit(126);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  ::setpgid(pid, pid);
  ::close(pfd[1]);
  r.started = true;
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  char buf[4096];
  bool eof = false;
  while (!eof) {
    int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0 || (cancelled && cancelled())) {
      r.timed_out = left <= 0;
      break;
    }
    pollfd p{pfd[0], POLLIN, 0};
    int pr = ::poll(&p, 1, std::min(left, 200));
    if (pr > 0) {
      ssize_t n = ::read(pfd[0], buf, sizeof buf);
      if (n <= 0) eof = true;
      else if (r.output.size() < 65536) r.output.append(buf, size_t(n));
    }
  }
  ::close(pfd[0]);
  if (!eof) ::kill(-pid, SIGKILL);
  int st = 0;
  // The output closed: the child is exiting; wait for it within the limit too.
  while (::waitpid(pid, &st, eof ? WNOHANG : 0) == 0) {
    if (Clock::now() > deadline || (cancelled && cancelled())) {
      r.timed_out = !(cancelled && cancelled());
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      break;
    }
    sleep_ms(20);
  }
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  if (r.timed_out) r.status = -1;
  return r;
}

namespace {

ProcResult run_process_in(const CheckTarget& cx, const std::vector<std::string>& argv, const std::vector<std::string>& env_add,
                          const std::string& cwd, int timeout_s) {
  return run_process(argv, env_add, cwd, timeout_s, cx.cancelled);
}

using Ctx = CheckTarget;
using Attempt = CheckAttempt;

int attempt_timeout(const Ctx& cx, const CmdbCheck& c, int dflt) {
  return std::max(1, std::min(c.timeout > 0 ? c.timeout : dflt, cx.remaining_s));
}

// tcp: a refused or unanswered connect fails. Over qemu's user-mode network
// (boot-test) the host-side connect always succeeds, so tcp_probe decides.
Attempt check_tcp(const Ctx& cx, const CmdbCheck& c) {
  int hp = cx.port(c.port);
  auto s = connect_to(cx.address, hp, 2000);
  if (auto* e = std::get_if<std::string>(&s)) return {false, "port " + std::to_string(c.port) + ": " + *e};
  Fd fd = std::move(std::get<Fd>(s));
  if (cx.tcp_probe) return cx.tcp_probe(c, hp, fd.get(), attempt_timeout(cx, c, 5));
  return {true, "port " + std::to_string(c.port) + " open"};
}

Attempt check_http(const Ctx& cx, const CmdbCheck& c) {
  auto s = connect_to(cx.address, cx.port(c.port), 2000);
  if (auto* e = std::get_if<std::string>(&s)) return {false, *e};
  Fd fd = std::move(std::get<Fd>(s));
  std::string req = "GET " + c.path + " HTTP/1.0\r\nHost: " + cx.address + "\r\nUser-Agent: planb\r\nConnection: close\r\n\r\n";
  if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) != ssize_t(req.size()))
    return {false, "send: " + errstr(errno)};
  auto deadline = Clock::now() + std::chrono::seconds(attempt_timeout(cx, c, 10));
  std::string resp;
  while (resp.size() < (4u << 20)) {
    int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0 || cx.is_cancelled()) return {false, "no complete response within " + std::to_string(attempt_timeout(cx, c, 10)) + " s"};
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, std::min(left, 250)) <= 0) continue;
    char b[8192];
    ssize_t n = ::recv(fd.get(), b, sizeof b, 0);
    if (n < 0) return {false, "receive: " + errstr(errno)};
    if (n == 0) break;
    resp.append(b, size_t(n));
  }
  if (resp.empty()) return {false, "connection closed without a response"};
  size_t eol = resp.find("\r\n");
  std::string status_line = resp.substr(0, eol);
  int code = 0;
  if (std::sscanf(status_line.c_str(), "HTTP/%*d.%*d %d", &code) != 1)
    return {false, "not an HTTP response: " + one_line(status_line, 80)};
  size_t hdr_end = resp.find("\r\n\r\n");
  std::string body = hdr_end == std::string::npos ? "" : resp.substr(hdr_end + 4);
  if (code != c.status)
    return {false, "status " + std::to_string(code) + ", expected " + std::to_string(c.status)};
  if (!c.body.empty() && body.find(c.body) == std::string::npos)
    return {false, "status " + std::to_string(code) + " but the body lacks '" + c.body + "' (body: " +
                       one_line(body, 120) + ")"};
  return {true, "status " + std::to_string(code) + (c.body.empty() ? "" : ", body has '" + c.body + "'")};
}

std::vector<std::string> ssh_argv(const Ctx& cx, const std::string& command) {
  return {"ssh", "-F", "/dev/null", "-i", cx.key, "-p", std::to_string(cx.port(cx.host->ssh_port)),
          "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
          "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
          "root@" + cx.address, "--", command};
}

Attempt check_ssh(const Ctx& cx, const CmdbCheck& c) {
  ProcResult r = run_process_in(cx, ssh_argv(cx, c.command), {}, "", attempt_timeout(cx, c, 30));
  if (!r.started) return {false, r.output};
  if (r.timed_out) return {false, "ssh: no answer within " + std::to_string(attempt_timeout(cx, c, 30)) + " s"};
  if (r.status == 255) return {false, "ssh failed: " + one_line(r.output)};
  if (r.status != 0) return {false, "exit status " + std::to_string(r.status) + (r.output.empty() ? "" : ": " + one_line(r.output))};
  if (!c.output.empty() && r.output.find(c.output) == std::string::npos)
    return {false, "output lacks '" + c.output + "': " + one_line(r.output)};
  return {true, "exit status 0" + (r.output.empty() ? "" : ": " + one_line(r.output, 120))};
}

Attempt check_systemd(const Ctx& cx, const CmdbCheck& c) {
  ProcResult r = run_process_in(cx, ssh_argv(cx, "systemctl is-system-running"), {}, "", attempt_timeout(cx, c, 30));
  if (!r.started) return {false, r.output};
  if (r.timed_out) return {false, "ssh: no answer within " + std::to_string(attempt_timeout(cx, c, 30)) + " s"};
  if (r.status == 255) return {false, "ssh failed: " + one_line(r.output)};
  std::string state = trim(r.output);
  if (state == "running") return {true, "running"};
  std::string d = "system is " + (state.empty() ? std::string("(no answer)") : one_line(state, 80));
  if (state == "degraded" || state == "maintenance") {
    ProcResult f = run_process_in(cx, ssh_argv(cx, "systemctl --failed --no-legend --plain"), {}, "", attempt_timeout(cx, c, 30));
    std::string units;
    std::istringstream in(f.output);
    std::string l;
    while (std::getline(in, l)) {
      std::istringstream w(l);
      std::string unit;
      w >> unit;
      if (!unit.empty()) units += (units.empty() ? "" : ", ") + unit;
    }
    d += "; failed units: " + (units.empty() ? std::string("(none listed)") : units);
  }
  return {false, d};
}

Attempt check_script(const Ctx& cx, const CmdbCheck& c) {
  std::vector<std::string> env = {"PLANB_HOST=" + cx.host->name, "PLANB_GUEST_ADDR=" + cx.address,
                                  "PLANB_SSH_KEY=" + cx.key, "PLANB_REPORT_DIR=" + cx.report_dir,
                                  "PLANB_IMAGE=" + cx.image};
  for (int g : cx.host->guest_ports()) env.push_back("PLANB_GUEST_PORT_" + std::to_string(g) + "=" + std::to_string(cx.port(g)));
  env.push_back("PLANB_GUEST_SSH_PORT=" + std::to_string(cx.port(cx.host->ssh_port)));
  env.push_back("PLANB_GUEST_HTTP_PORT=" + std::to_string(cx.port(80)));
  // Relative paths are relative to the CMDB file's directory.
  std::string file = c.where.substr(0, c.where.rfind(':'));
  std::string cwd = dirname_of(file);
  ProcResult r = run_process_in(cx, {"/bin/sh", "-c", c.run}, env, cwd, attempt_timeout(cx, c, 60));
  if (!r.started) return {false, r.output};
  if (r.timed_out) return {false, "no result within " + std::to_string(attempt_timeout(cx, c, 60)) + " s"};
  if (r.status != 0) return {false, "exit status " + std::to_string(r.status) + (r.output.empty() ? "" : ": " + one_line(r.output))};
  return {true, "exit status 0" + (r.output.empty() ? "" : ": " + one_line(r.output, 120))};
}

}  // namespace

CheckAttempt run_check(const CheckTarget& cx, const CmdbCheck& c) {
  switch (c.type) {
    case CheckType::Tcp: return check_tcp(cx, c);
    case CheckType::Http: return check_http(cx, c);
    case CheckType::Ssh: return check_ssh(cx, c);
    case CheckType::Systemd: return check_systemd(cx, c);
    case CheckType::Script: return check_script(cx, c);
  }
  return {false, "unknown check"};
}

std::string check_label(const CmdbCheck& c) {
  return c.name.empty() ? std::string(check_type_name(c.type)) + " " + c.target() : c.name;
}

}  // namespace planb
