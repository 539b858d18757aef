#include "vpn.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <dirent.h>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "fsutil.hpp"
#include "ipv4.hpp"
#include "json.hpp"

namespace planb {

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kUapiDir = "/var/run/wireguard";

void sodium_ready() {
  static bool ok = [] { return sodium_init() >= 0; }();
  (void)ok;
}

std::string b64(const unsigned char* p, size_t n) {
  std::string out(sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), p, n, sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

bool unb64_key(std::string_view s, unsigned char out[32]) {
  if (s.size() != 44 || s[43] != '=') return false;
  size_t len = 0;
  return sodium_base642bin(out, 32, s.data(), s.size(), nullptr, &len, nullptr, sodium_base64_VARIANT_ORIGINAL) == 0 &&
         len == 32;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) i++;
  return s.substr(i);
}

bool safe_name(std::string_view n, size_t max) {
  if (n.empty() || n.size() > max || n[0] == '.' || n[0] == '-') return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  });
}

Error usage(const std::string& msg) { return make_error(kExitUsage, msg); }

// True when `prog` is an executable on PATH.
bool on_path(const std::string& prog) {
  const char* p = std::getenv("PATH");
  std::string path = p ? p : "/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (dir.empty()) dir = ".";
    if (::access((dir + "/" + prog).c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

// Runs a host tool with `input` on its standard input. capture: its stdout and
// stderr are returned (and quoted in errors); otherwise stdout is inherited
// and only stderr is captured. Never a secret on argv: secrets go in `input`.
Result<std::string> run_tool(const std::vector<std::string>& argv, const std::string& input, const std::string& what,
                             bool capture = true, mode_t umask_value = 077) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return fail("failed to " + what + ": pipe: " + errstr(errno));
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    return fail("failed to " + what + ": pipe: " + errstr(errno));
  }
  pid_t pid = ::fork();
  if (pid < 0) return fail("failed to " + what + ": fork: " + errstr(errno));
  if (pid == 0) {
    ::umask(umask_value);
    ::dup2(in[0], 0);
    if (capture) ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::setenv("LC_ALL", "C", 1);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "%s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  // The input is small (a configuration): it fits the pipe buffer.
  sigset_t mask, old;
  sigemptyset(&mask);
  sigaddset(&mask, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &mask, &old);
  (void)write_all(in[1], input.data(), input.size(), "pipe");
  ::close(in[1]);
  std::string text;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n > 0) text.append(buf, size_t(n));
    else if (n == 0 || errno != EINTR) break;
  }
  ::close(out[0]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  struct timespec zero = {0, 0};
  while (sigtimedwait(&mask, nullptr, &zero) > 0) {
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return text;
  std::string err = trim(text);
  if (err.size() > 600) err = "..." + err.substr(err.size() - 600);
  std::string how = WIFEXITED(st) ? "exit status " + std::to_string(WEXITSTATUS(st))
                                  : "killed by signal " + std::to_string(WTERMSIG(st));
  if (WIFEXITED(st) && WEXITSTATUS(st) == 127 && err.find("No such file") != std::string::npos)
    return fail("failed to " + what + ": " + argv[0] + " is not installed (scripts/deps test)");
  return fail("failed to " + what + ": " + argv[0] + " " + how + (err.empty() ? "" : ": " + err));
}

// A key file: read and checked if present, else made by `make` and written 0600.
Result<std::string> key_file(const std::string& path, std::string (*make)()) {
  if (path_exists(path)) {
    PB_ASSIGN(std::string text, read_file(path));
    std::string k = trim(text);
    if (!wg_valid_key(k)) return make_error(kExitCorrupt, "failed to read VPN key " + path + ": not a WireGuard key");
    ::chmod(path.c_str(), 0600);
    return k;
  }
  std::string k = make();
  PB_TRY(write_file_atomic(path, k + "\n", 0600));
  return k;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

std::string server_conf_text(const VpnSetup& s, const std::string& server_key, const std::vector<std::string>& psks) {
  std::string t = "# Plan B VPN, platform side (wg setconf format): customer " + s.customer + ", invocation " +
                  s.invocation_id + "\n# interface " + s.interface_name + ", address " + s.address +
                  " (set by planb-invoke, not by wg)\n[Interface]\nPrivateKey = " + server_key +
                  "\nListenPort = " + std::to_string(s.listen_port) + "\n";
  for (size_t i = 0; i < s.peers.size(); i++) {
    const VpnPeer& p = s.peers[i];
    std::vector<std::string> allowed{p.address + "/32"};
    allowed.insert(allowed.end(), p.allowed_ips.begin(), p.allowed_ips.end());
    t += "\n[Peer]\n# " + p.name + (p.allowed_ips.empty() ? " (roaming)" : " (site)") + "\nPublicKey = " +
         p.public_key + "\nPresharedKey = " + psks[i] + "\nAllowedIPs = " + join(allowed, ", ") + "\n";
  }
  return t;
}

std::string peer_conf_text(const VpnSetup& s, const VpnPeer& p, const std::string& key, const std::string& psk,
                           int prefix) {
  return "# Plan B VPN: peer " + p.name + " of customer " + s.customer + " (invocation " + s.invocation_id +
         ")\n# wg-quick up ./" + p.name + ".conf, or import it (or its QR code) in a WireGuard app.\n[Interface]\n" +
         "PrivateKey = " + key + "\nAddress = " + p.address + "/" + std::to_string(prefix) + "\nDNS = " + s.dns +
         "\n\n[Peer]\n# the Plan B rescue platform\nPublicKey = " + s.public_key + "\nPresharedKey = " + psk +
         "\nEndpoint = " + s.endpoint + "\nAllowedIPs = " + s.rescue_network + ", " + s.tunnel_network +
         "\nPersistentKeepalive = 25\n";
}

// qrencode -o TMP (the config on stdin), then renamed over `path` (0600: the
// picture holds the private key).
Status write_qr(const std::string& path, const std::string& config) {
  std::string dir = dirname_of(path);
  std::string tmp = temp_name(dir, ".qr");
  auto r = run_tool({"qrencode", "-t", "PNG", "-o", tmp}, config, "write QR code " + path);
  if (!r.ok()) {
    ::unlink(tmp.c_str());
    return r.error();
  }
  Fd fd(::open(tmp.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid() || ::fchmod(fd.get(), 0600) != 0 || ::fsync(fd.get()) != 0 ||
      ::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return fail("failed to write QR code " + path + ": " + errstr(e));
  }
  return fsync_dir(dir);
}

// Endpoint "host:port": the CMDB's, with the port added when it has none;
// "" = this machine's host name.
std::string endpoint_of(const CmdbVpn& v) {
  std::string e = v.endpoint;
  if (e.empty()) {
    char h[256] = {};
    ::gethostname(h, sizeof h - 1);
    e = h;
  }
  bool has_port = e[0] == '[' ? e.find("]:") != std::string::npos : e.find(':') != std::string::npos;
  return has_port ? e : e + ":" + std::to_string(v.listen_port);
}

// Namespace argument: "NAME" or "/run/netns/NAME" -> NAME ("" stays "").
Result<std::string> netns_name(const std::string& netns) {
  std::string n = netns;
  const std::string run = "/run/netns/", varrun = "/var/run/netns/";
  if (n.rfind(run, 0) == 0) n = n.substr(run.size());
  else if (n.rfind(varrun, 0) == 0) n = n.substr(varrun.size());
  if (!n.empty() && !safe_name(n, 64))
    return usage("failed to start VPN: bad network namespace '" + netns + "' (a name under /run/netns)");
  return n;
}

// `ip [-n NS] ARGS...`
std::vector<std::string> ip_cmd(const std::string& ns, std::vector<std::string> args) {
  std::vector<std::string> v{"ip"};
  if (!ns.empty()) v.insert(v.end(), {"-n", ns});
  v.insert(v.end(), args.begin(), args.end());
  return v;
}

std::string pid_file(const VpnSetup& s) { return join_path(s.dir, "wireguard-go.pid"); }
std::string netns_file(const VpnSetup& s) { return join_path(s.dir, "netns"); }
std::string uapi_socket(const VpnSetup& s) { return std::string(kUapiDir) + "/" + s.interface_name + ".sock"; }

// The pid in the pid file if that process is alive and is wireguard-go for
// this interface (a recycled pid is not ours), else 0.
pid_t running_pid(const VpnSetup& s) {
  auto t = read_file(pid_file(s));
  if (!t.ok()) return 0;
  pid_t pid = pid_t(std::atol(trim(*t).c_str()));
  if (pid <= 1) return 0;
  auto cmd = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  if (!cmd.ok()) return 0;
  std::string c = *cmd;
  std::replace(c.begin(), c.end(), '\0', ' ');
  if (c.find("wireguard-go") == std::string::npos || c.find(" " + s.interface_name + " ") == std::string::npos)
    return 0;
  auto st = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (st.ok()) {
    size_t rp = st->rfind(')');
    if (rp != std::string::npos && rp + 2 < st->size() && (*st)[rp + 2] == 'Z') return 0;
  }
  return pid;
}

bool socket_answers(const std::string& path) {
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return false;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return false;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

std::string log_tail(const std::string& path) {
  auto t = read_file(path);
  if (!t.ok()) return "";
  std::string s = trim(*t);
  if (s.size() > 600) s = "..." + s.substr(s.size() - 600);
  return s;
}

// Starts `wireguard-go -f IFACE` detached (double fork: it outlives us and is
// never our zombie). Returns its pid.
Result<pid_t> spawn_wireguard_go(const VpnSetup& s, const std::string& log) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return fail("failed to start wireguard-go: pipe: " + errstr(errno));
  pid_t mid = ::fork();
  if (mid < 0) return fail("failed to start wireguard-go: fork: " + errstr(errno));
  if (mid == 0) {
    ::setsid();
    pid_t pid = ::fork();
    if (pid != 0) {
      (void)!::write(p[1], &pid, sizeof pid);
      ::_exit(pid < 0 ? 1 : 0);
    }
    ::umask(077);
    int n = ::open("/dev/null", O_RDONLY);
    int l = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (n >= 0) ::dup2(n, 0);
    if (l >= 0) {
      ::dup2(l, 1);
      ::dup2(l, 2);
    }
    ::setenv("LOG_LEVEL", "error", 0);
    ::setenv("WG_PROCESS_FOREGROUND", "1", 1);
    const char* args[] = {"wireguard-go", "-f", s.interface_name.c_str(), nullptr};
    ::execvp(args[0], const_cast<char* const*>(args));
    std::fprintf(stderr, "wireguard-go: %s\n", std::strerror(errno));
    ::_exit(127);
  }
  ::close(p[1]);
  pid_t pid = -1;
  ssize_t n;
  do n = ::read(p[0], &pid, sizeof pid);
  while (n < 0 && errno == EINTR);
  ::close(p[0]);
  int st = 0;
  while (::waitpid(mid, &st, 0) < 0 && errno == EINTR) {
  }
  if (n != sizeof pid || pid <= 0) return fail("failed to start wireguard-go: fork failed");
  return pid;
}

bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return true;
  auto st = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (!st.ok()) return true;
  size_t rp = st->rfind(')');
  return rp != std::string::npos && rp + 2 < st->size() && (*st)[rp + 2] == 'Z';
}

bool link_exists(const std::string& ns, const std::string& ifname) {
  auto r = run_tool(ip_cmd(ns, {"link", "show", "dev", ifname}), "", "look up " + ifname);
  return r.ok();
}

}  // namespace

const VpnPeer* VpnSetup::find(std::string_view name) const {
  for (const auto& p : peers)
    if (p.name == name) return &p;
  return nullptr;
}

std::string wg_generate_private_key() {
  sodium_ready();
  unsigned char k[32];
  randombytes_buf(k, sizeof k);
  k[0] &= 248;
  k[31] &= 127;
  k[31] |= 64;
  std::string s = b64(k, sizeof k);
  sodium_memzero(k, sizeof k);
  return s;
}

std::string wg_generate_preshared_key() {
  sodium_ready();
  unsigned char k[32];
  randombytes_buf(k, sizeof k);
  std::string s = b64(k, sizeof k);
  sodium_memzero(k, sizeof k);
  return s;
}

bool wg_valid_key(std::string_view s) {
  sodium_ready();
  unsigned char k[32];
  return unb64_key(s, k);
}

Result<std::string> wg_public_key(std::string_view priv) {
  sodium_ready();
  unsigned char k[32], pub[32];
  if (!unb64_key(priv, k)) return usage("failed to derive WireGuard public key: not a base64 32-byte key");
  // crypto_scalarmult_base clamps the scalar itself, as WireGuard does.
  int rc = crypto_scalarmult_curve25519_base(pub, k);
  sodium_memzero(k, sizeof k);
  if (rc != 0) return fail("failed to derive WireGuard public key: invalid scalar");
  return b64(pub, sizeof pub);
}

std::string vpn_interface_name(const std::string& invocation_id) {
  return "pbwg-" + invocation_id.substr(0, 8);
}

Result<VpnSetup> vpn_configure(const CmdbCustomer& c, const std::string& vpn_dir, const std::string& rescue_cidr,
                               const std::string& invocation_id) {
  const std::string what = "failed to configure VPN for customer " + c.name + ": ";
  if (!c.vpn.enabled) return usage(what + "the CMDB has no [vpn] table");
  if (invocation_id.size() < 8 || !safe_name(invocation_id, 64))
    return usage(what + "bad invocation id '" + invocation_id + "'");
  auto tun = parse_ipv4_net(c.vpn.network);
  if (!tun) return usage(what + "[vpn] network '" + c.vpn.network + "' is not an IPv4 network (a.b.c.d/8..30)");
  auto rescue = parse_ipv4_net(rescue_cidr);
  if (!rescue) return usage(what + "rescue network '" + rescue_cidr + "' is not an IPv4 network");
  if (tun->contains(rescue->base) || rescue->contains(tun->base))
    return usage(what + "[vpn] network " + tun->str() + " overlaps the rescue network " + rescue->str());
  if (c.vpn.listen_port < 1 || c.vpn.listen_port > 65535)
    return usage(what + "[vpn] listen_port " + std::to_string(c.vpn.listen_port) + " is not a UDP port");
  uint64_t room = uint64_t(tun->broadcast()) - tun->base - 2;  // .1 is the platform
  if (c.vpn.peers.size() > room)
    return usage(what + std::to_string(c.vpn.peers.size()) + " peers do not fit in " + tun->str());

  VpnSetup s;
  s.dir = vpn_dir;
  s.invocation_id = invocation_id;
  s.customer = c.name;
  s.interface_name = vpn_interface_name(invocation_id);
  s.server_conf = join_path(vpn_dir, "server.conf");
  s.tunnel_network = tun->str();
  s.address = ipv4_str(tun->gateway()) + "/" + std::to_string(tun->prefix);
  s.rescue_network = rescue->str();
  s.dns = ipv4_str(rescue->gateway());
  s.listen_port = c.vpn.listen_port;
  s.endpoint = endpoint_of(c.vpn);

  std::set<std::string> names;
  uint32_t next = tun->gateway() + 1;
  for (const auto& cp : c.vpn.peers) {
    if (!safe_name(cp.name, 64))
      return usage(what + "bad [[vpn.peer]] name '" + cp.name + "'" + (cp.where.empty() ? "" : " at " + cp.where) +
                   " (letters, digits, '.', '_', '-')");
    if (!names.insert(cp.name).second) return usage(what + "[[vpn.peer]] '" + cp.name + "' appears twice");
    VpnPeer p;
    p.name = cp.name;
    p.address = ipv4_str(next++);
    for (const auto& a : cp.allowed_ips) {
      auto n = parse_ipv4_net(a);
      if (!n) return usage(what + "peer " + cp.name + ": allowed_ips '" + a + "' is not an IPv4 network");
      if (n->contains(rescue->base) || rescue->contains(n->base) || n->contains(tun->base) || tun->contains(n->base))
        return usage(what + "peer " + cp.name + ": allowed_ips " + a + " overlaps the rescue or tunnel network");
      p.allowed_ips.push_back(n->str());
    }
    s.peers.push_back(std::move(p));
  }

  const std::string keys = join_path(vpn_dir, "keys"), peers = join_path(vpn_dir, "peers");
  for (const auto& d : {vpn_dir, keys, peers}) {
    PB_TRY(mkdir_p(d, 0700));
    ::chmod(d.c_str(), 0700);
  }
  PB_ASSIGN(std::string server_key, key_file(join_path(keys, "server.key"), wg_generate_private_key));
  PB_ASSIGN(s.public_key, wg_public_key(server_key));
  std::vector<std::string> peer_keys, psks;
  for (auto& p : s.peers) {
    PB_ASSIGN(std::string k, key_file(join_path(keys, p.name + ".key"), wg_generate_private_key));
    PB_ASSIGN(std::string psk, key_file(join_path(keys, p.name + ".psk"), wg_generate_preshared_key));
    PB_ASSIGN(p.public_key, wg_public_key(k));
    peer_keys.push_back(k);
    psks.push_back(psk);
  }

  bool qr = on_path("qrencode");
  for (size_t i = 0; i < s.peers.size(); i++) {
    VpnPeer& p = s.peers[i];
    p.config = join_path(peers, p.name + ".conf");
    std::string text = peer_conf_text(s, p, peer_keys[i], psks[i], tun->prefix);
    PB_TRY(write_file_atomic(p.config, text, 0600));
    if (qr) {
      p.qr = join_path(peers, p.name + ".png");
      PB_TRY(write_qr(p.qr, text));
    }
  }
  // Peers no longer in the CMDB lose their files (their keys are kept).
  if (DIR* d = ::opendir(peers.c_str())) {
    std::vector<std::string> stale;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      for (const char* ext : {".conf", ".png"}) {
        size_t el = std::strlen(ext);
        if (n.size() > el && n.compare(n.size() - el, el, ext) == 0 && !names.count(n.substr(0, n.size() - el)) &&
            n[0] != '.')
          stale.push_back(join_path(peers, n));
      }
    }
    ::closedir(d);
    for (const auto& f : stale) ::unlink(f.c_str());
  }
  PB_TRY(write_file_atomic(s.server_conf, server_conf_text(s, server_key, psks), 0600));
  PB_TRY(write_file_atomic(join_path(vpn_dir, "setup.json"), vpn_setup_json(s, false) + "\n", 0600));
  return s;
}

std::string vpn_setup_json(const VpnSetup& s, bool running) {
  std::vector<std::string> peers;
  for (const auto& p : s.peers) {
    std::vector<std::string> ips;
    for (const auto& a : p.allowed_ips) ips.push_back(json_escape(a));
    JsonObject o;
    o.add("name", p.name).add("address", p.address).add_raw("allowed_ips", json_array(ips));
    o.add("public_key", p.public_key).add("config", p.config).add("qr", p.qr);
    peers.push_back(o.str());
  }
  JsonObject o;
  o.add("format", 1).add("invocation", s.invocation_id).add("customer", s.customer);
  o.add("interface", s.interface_name).add("server_conf", s.server_conf).add("public_key", s.public_key);
  o.add("tunnel_network", s.tunnel_network).add("address", s.address).add("rescue_network", s.rescue_network);
  o.add("dns", s.dns).add("endpoint", s.endpoint).add("listen_port", s.listen_port);
  o.add("running", running).add_raw("peers", json_array(peers));
  return o.str();
}

Result<VpnSetup> vpn_load(const std::string& vpn_dir) {
  std::string path = join_path(vpn_dir, "setup.json");
  if (!path_exists(path)) return make_error(kExitNotFound, "failed to read VPN setup " + path + ": no such file (VPN not configured)");
  PB_ASSIGN(std::string text, read_file(path));
  try {
    auto j = nlohmann::json::parse(text);
    if (j.value("format", 0) != 1) return make_error(kExitCorrupt, "failed to read VPN setup " + path + ": unknown format");
    VpnSetup s;
    s.dir = vpn_dir;
    s.invocation_id = j.at("invocation").get<std::string>();
    s.customer = j.at("customer").get<std::string>();
    s.interface_name = j.at("interface").get<std::string>();
    s.server_conf = j.at("server_conf").get<std::string>();
    s.public_key = j.at("public_key").get<std::string>();
    s.tunnel_network = j.at("tunnel_network").get<std::string>();
    s.address = j.at("address").get<std::string>();
    s.rescue_network = j.at("rescue_network").get<std::string>();
    s.dns = j.at("dns").get<std::string>();
    s.endpoint = j.at("endpoint").get<std::string>();
    s.listen_port = j.at("listen_port").get<int>();
    for (const auto& jp : j.at("peers")) {
      VpnPeer p;
      p.name = jp.at("name").get<std::string>();
      p.address = jp.at("address").get<std::string>();
      p.allowed_ips = jp.at("allowed_ips").get<std::vector<std::string>>();
      p.public_key = jp.at("public_key").get<std::string>();
      p.config = jp.at("config").get<std::string>();
      p.qr = jp.value("qr", "");
      s.peers.push_back(std::move(p));
    }
    if (!safe_name(s.interface_name, 15)) return make_error(kExitCorrupt, "failed to read VPN setup " + path + ": bad interface name");
    return s;
  } catch (const std::exception& e) {
    return make_error(kExitCorrupt, "failed to read VPN setup " + path + ": " + e.what());
  }
}

bool vpn_running(const VpnSetup& s) { return running_pid(s) > 0; }

Status vpn_up(const VpnSetup& s, const std::string& netns_arg) {
  const std::string what = "failed to start VPN " + s.interface_name + ": ";
  PB_ASSIGN(std::string ns, netns_name(netns_arg));
  if (!ns.empty() && !path_exists("/run/netns/" + ns)) return make_error(kExitNotFound, what + "no network namespace " + ns);
  if (!path_exists(s.server_conf)) return make_error(kExitNotFound, what + "no " + s.server_conf);
  std::string log = join_path(s.dir, "wireguard-go.log");

  bool started = false;
  if (running_pid(s) == 0) {
    started = true;
    // A stale socket (a killed daemon) would make wireguard-go refuse to start.
    if (path_exists(uapi_socket(s)) && !socket_answers(uapi_socket(s))) ::unlink(uapi_socket(s).c_str());
    if (link_exists("", s.interface_name))
      return make_error(kExitExists, what + "an interface " + s.interface_name + " exists already");
    PB_ASSIGN(pid_t pid, spawn_wireguard_go(s, log));
    PB_TRY(write_file_atomic(pid_file(s), std::to_string(pid) + "\n", 0600));
    // Ready when its UAPI socket answers: the device is then fully set up, and
    // only then may the interface leave the namespace it was born in.
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (!socket_answers(uapi_socket(s))) {
      if (process_gone(pid)) {
        ::unlink(pid_file(s).c_str());
        std::string t = log_tail(log);
        return fail(what + "wireguard-go exited" + (t.empty() ? "" : ": " + t));
      }
      if (Clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::unlink(pid_file(s).c_str());
        return fail(what + "wireguard-go did not open " + uapi_socket(s) + " within 10 s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!ns.empty()) {
      auto r = run_tool(ip_cmd("", {"link", "set", "dev", s.interface_name, "netns", ns}), "",
                        "move " + s.interface_name + " into namespace " + ns);
      if (!r.ok()) {
        (void)vpn_down(s);
        return r.error();
      }
    }
    PB_TRY(write_file_atomic(netns_file(s), ns + "\n", 0600));
  } else {
    auto old = read_file(netns_file(s));
    if (old.ok() && trim(*old) != ns)
      return make_error(kExitExists, what + "already running in namespace '" + trim(*old) + "'");
  }
  auto step = [&](std::vector<std::string> args, const std::string& doing) -> Status {
    auto r = run_tool(ip_cmd(ns, std::move(args)), "", doing);
    if (!r.ok()) return r.error();
    return {};
  };
  auto apply = [&]() -> Status {
    PB_TRY(step({"addr", "replace", s.address, "dev", s.interface_name}, "set the address of " + s.interface_name));
    // wg finds wireguard-go through its socket in /var/run/wireguard, whatever
    // namespace the interface is in now.
    PB_TRY(run_tool({"wg", "setconf", s.interface_name, s.server_conf}, "", "configure " + s.interface_name));
    PB_TRY(step({"link", "set", "dev", s.interface_name, "up"}, "bring up " + s.interface_name));
    if (!ns.empty()) {
      // Peers reach the VMs through the namespace: it forwards between the
      // tunnel and the rescue bridge (the namespace has no other way out).
      PB_TRY(run_tool({"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"}, "",
                      "enable forwarding in namespace " + ns));
    }
    for (const auto& p : s.peers)
      for (const auto& net : p.allowed_ips)
        PB_TRY(step({"route", "replace", net, "dev", s.interface_name}, "route " + net + " to peer " + p.name));
    return {};
  };
  Status st = apply();
  // Half set up by this call: nothing is left running.
  if (!st.ok() && started) (void)vpn_down(s);
  return st;
}

Status vpn_down(const VpnSetup& s) {
  pid_t pid = running_pid(s);
  if (pid > 0) {
    ::kill(pid, SIGTERM);
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (!process_gone(pid) && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!process_gone(pid)) {
      ::kill(pid, SIGKILL);
      deadline = Clock::now() + std::chrono::seconds(5);
      while (!process_gone(pid) && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (!process_gone(pid))
        return fail("failed to stop VPN " + s.interface_name + ": wireguard-go (pid " + std::to_string(pid) +
                    ") does not exit");
    }
  }
  // The TUN device goes with the last descriptor; a leftover (another
  // process holding it) is removed by name.
  std::string ns;
  if (auto t = read_file(netns_file(s)); t.ok()) ns = trim(*t);
  if (!ns.empty() && !path_exists("/run/netns/" + ns)) ns.clear();
  if (link_exists(ns, s.interface_name)) {
    auto r = run_tool(ip_cmd(ns, {"link", "del", "dev", s.interface_name}), "", "remove " + s.interface_name);
    if (!r.ok() && link_exists(ns, s.interface_name)) return r.error();
  }
  if (path_exists(uapi_socket(s)) && !socket_answers(uapi_socket(s))) ::unlink(uapi_socket(s).c_str());
  ::unlink(pid_file(s).c_str());
  ::unlink(netns_file(s).c_str());
  return {};
}

}  // namespace planb
