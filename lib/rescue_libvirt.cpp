// The libvirt backend of the rescue platform: virsh with XML files (see rescue_libvirt.hpp).
#include "rescue_libvirt.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>
#include <thread>

#include "fsutil.hpp"
#include "ipv4.hpp"

namespace planb {

namespace {

using Clock = std::chrono::steady_clock;

// ---- A child process (virsh, qemu-img) with a time limit; stdout and stderr apart.
struct Proc {
  bool started = false;
  bool timed_out = false;
  int status = -1;  // exit status, or 128+signal
  std::string out, err;
};

Proc run(const std::vector<std::string>& argv, int timeout_s) {
  Proc r;
  int po[2], pe[2];
  if (::pipe2(po, O_CLOEXEC) != 0) {
    r.err = "pipe: " + errstr(errno);
    return r;
  }
  if (::pipe2(pe, O_CLOEXEC) != 0) {
    r.err = "pipe: " + errstr(errno);
    ::close(po[0]);
    ::close(po[1]);
    return r;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    r.err = "fork: " + errstr(errno);
    for (int fd : {po[0], po[1], pe[0], pe[1]}) ::close(fd);
    return r;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(po[1], 1);
    ::dup2(pe[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  ::close(po[1]);
  ::close(pe[1]);
  r.started = true;
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  pollfd p[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
  std::string* dst[2] = {&r.out, &r.err};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) {
      r.timed_out = true;
      break;
    }
    int pr = ::poll(p, 2, std::min(left, 200));
    if (pr < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++) {
      if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(p[i].fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(p[i].fd);
        p[i].fd = -1;
        open_fds--;
      } else if (dst[i]->size() < (1u << 20)) {
        dst[i]->append(buf, size_t(n));
      }
    }
  }
  for (auto& x : p)
    if (x.fd >= 0) ::close(x.fd);
  if (r.timed_out) ::kill(-pid, SIGKILL);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  if (r.timed_out) r.status = -1;
  return r;
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) i++;
  return s.substr(i);
}

// virsh's error text on one line, without its "error: " prefixes.
std::string reason(const Proc& p) {
  if (!p.started) return p.err;
  if (p.timed_out) return "timed out";
  std::string e = trim(p.err.empty() ? p.out : p.err), o;
  size_t pos = 0;
  while (pos <= e.size()) {
    size_t nl = e.find('\n', pos);
    std::string line = trim(e.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
    if (line.rfind("error: ", 0) == 0) line = line.substr(7);
    if (!line.empty()) o += (o.empty() ? "" : "; ") + line;
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  if (o.size() > 400) o = o.substr(0, 400) + "...";
  return o.empty() ? "exit status " + std::to_string(p.status) : o;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> v;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t nl = s.find('\n', pos);
    std::string l = trim(s.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
    if (!l.empty()) v.push_back(l);
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  return v;
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '\'': o += "&apos;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

bool valid_id(const std::string& id) {
  if (id.empty() || id.size() > 12) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)); });
}

// CMDB host names become DHCP/DNS names and part of the domain name.
bool valid_host(const std::string& h) {
  if (h.empty() || h.size() > 63 || h.front() == '-' || h.back() == '-') return false;
  return std::all_of(h.begin(), h.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; });
}

bool valid_mac(const std::string& m) {
  if (m.size() != 17) return false;
  for (size_t i = 0; i < m.size(); i++) {
    if (i % 3 == 2 ? m[i] != ':' : !std::isxdigit(static_cast<unsigned char>(m[i]))) return false;
  }
  return true;
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Result<std::string> absolute(const std::string& p) {
  if (p.empty()) return fail("failed to resolve path: empty");
  if (p[0] == '/') return p;
  char cwd[4096];
  if (!::getcwd(cwd, sizeof cwd)) return fail("failed to resolve " + p + ": " + errstr(errno));
  return join_path(cwd, p);
}

bool is_qcow2(const std::string& path) {
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  char magic[4] = {};
  return f.valid() && ::pread(f.get(), magic, 4, 0) == 4 && std::memcmp(magic, "QFI\xfb", 4) == 0;
}

class LibvirtPlatform final : public RescuePlatform {
 public:
  LibvirtPlatform() : uri_(libvirt_uri()) {}
  std::string backend() const override { return "libvirt"; }
  Status create_network(const RescueNetworkSpec& spec) override;
  Status destroy_network(const RescueNetworkSpec& spec) override;
  std::string check_netns(const RescueNetworkSpec&) const override { return ""; }
  Result<VmHandle> start_vm(const RescueNetworkSpec& net, const VmSpec& vm) override;
  VmState state(const VmHandle& vm) override;
  Status stop_vm(const VmHandle& vm, int grace_s) override;

 private:
  Proc virsh(std::vector<std::string> args, int timeout_s = 60) {
    args.insert(args.begin(), {"virsh", "-q", "-c", uri_});
    return run(args, timeout_s);
  }
  // `virsh net-list`/`list` names; active_only or all.
  Result<std::set<std::string>> names(const std::string& what, bool all) {
    std::vector<std::string> a = {what, "--name"};
    if (all) a.push_back("--all");
    Proc p = virsh(a);
    if (p.status != 0)
      return fail("failed to list libvirt " + std::string(what == "list" ? "domains" : "networks") + " at " + uri_ +
                  ": " + reason(p));
    auto v = lines(p.out);
    return std::set<std::string>(v.begin(), v.end());
  }
  Result<std::vector<std::string>> secmodels() {
    if (!secmodels_.empty()) return secmodels_;
    Proc p = virsh({"capabilities"});
    if (p.status != 0) return fail("failed to read libvirt's capabilities at " + uri_ + ": " + reason(p));
    secmodels_ = libvirt_secmodels(p.out);
    if (secmodels_.empty()) secmodels_.push_back("");  // none: remember that we asked
    return secmodels_;
  }

  std::string uri_;
  std::vector<std::string> secmodels_;
};

Status LibvirtPlatform::create_network(const RescueNetworkSpec& spec) {
  std::string name = libvirt_network_name(spec);
  PB_ASSIGN(std::string xml, libvirt_network_xml(spec));
  PB_ASSIGN(auto all, names("net-list", true));
  if (all.count(name)) {
    // Adopt it (a re-run after a crash), if it is ours: same gateway address.
    Proc d = virsh({"net-dumpxml", name});
    if (d.status != 0) return fail("failed to read libvirt network " + name + ": " + reason(d));
    if (d.out.find("address='" + spec.gateway + "'") == std::string::npos &&
        d.out.find("address=\"" + spec.gateway + "\"") == std::string::npos)
      return make_error(kExitExists, "failed to create libvirt network " + name +
                                         ": a network of that name exists without the gateway address " +
                                         spec.gateway);
    PB_ASSIGN(auto active, names("net-list", false));
    if (!active.count(name)) {
      Proc s = virsh({"net-start", name});
      if (s.status != 0) return fail("failed to start libvirt network " + name + ": " + reason(s));
    }
    return {};
  }
  PB_TRY(mkdir_p(spec.run_dir));
  std::string path = join_path(spec.run_dir, "network.xml");
  PB_TRY(write_file_atomic(path, xml));
  Proc d = virsh({"net-define", path});
  if (d.status != 0) return fail("failed to define libvirt network " + name + ": " + reason(d));
  Proc s = virsh({"net-start", name});
  if (s.status != 0) {
    std::string why = reason(s);
    (void)virsh({"net-undefine", name});
    return fail("failed to start libvirt network " + name + ": " + why);
  }
  return {};
}

Status LibvirtPlatform::destroy_network(const RescueNetworkSpec& spec) {
  if (!valid_id(spec.id)) return make_error(kExitUsage, "failed to remove rescue network: bad id '" + spec.id + "'");
  std::string name = libvirt_network_name(spec);
  std::string prefix = libvirt_domain_name(spec.id, "");
  PB_ASSIGN(auto doms, names("list", true));
  for (const auto& d : doms) {
    if (d.rfind(prefix, 0) != 0) continue;
    PB_ASSIGN(auto running, names("list", false));
    if (running.count(d)) {
      Proc p = virsh({"destroy", d});
      if (p.status != 0) return fail("failed to stop libvirt domain " + d + ": " + reason(p));
    }
    PB_ASSIGN(auto left, names("list", true));
    if (left.count(d)) {  // a defined (persistent) one
      Proc p = virsh({"undefine", d});
      if (p.status != 0) return fail("failed to undefine libvirt domain " + d + ": " + reason(p));
    }
  }
  PB_ASSIGN(auto active, names("net-list", false));
  if (active.count(name)) {
    Proc p = virsh({"net-destroy", name});
    if (p.status != 0) return fail("failed to stop libvirt network " + name + ": " + reason(p));
  }
  PB_ASSIGN(auto all, names("net-list", true));
  if (all.count(name)) {
    Proc p = virsh({"net-undefine", name});
    if (p.status != 0) return fail("failed to undefine libvirt network " + name + ": " + reason(p));
  }
  return {};
}

Result<VmHandle> LibvirtPlatform::start_vm(const RescueNetworkSpec& net, const VmSpec& vm) {
  if (!valid_id(net.id)) return make_error(kExitUsage, "failed to start VM: bad rescue network id '" + net.id + "'");
  if (!valid_host(vm.host)) return make_error(kExitUsage, "failed to start VM: bad host name '" + vm.host + "'");
  std::string name = libvirt_domain_name(net.id, vm.host);
  PB_ASSIGN(std::string run_dir, absolute(vm.run_dir));
  PB_ASSIGN(std::string base, absolute(vm.base_image));
  PB_ASSIGN(std::string overlay, absolute(vm.overlay));
  VmHandle h;
  h.backend = "libvirt";
  h.host = vm.host;
  h.id = name;
  h.serial_log = join_path(run_dir, "serial.log");
  h.overlay = overlay;

  PB_ASSIGN(auto running, names("list", false));
  if (running.count(name)) return h;  // a re-run after a crash: adopt it

  LibvirtDomainParams p;
  if (vm.accel == "kvm") p.type = "kvm";
  else if (vm.accel == "tcg") p.type = "qemu";
  else if (vm.accel == "auto") p.type = ::access("/dev/kvm", R_OK | W_OK) == 0 ? "kvm" : "qemu";
  else return make_error(kExitUsage, "failed to start VM " + vm.host + ": unknown accelerator '" + vm.accel + "'");
  struct stat st;
  if (::stat(base.c_str(), &st) != 0) return make_error(kExitNotFound, "failed to open image " + base + ": " + errstr(errno));
  p.backing_format = is_qcow2(base) ? "qcow2" : "raw";
  p.base_image = base;
  p.overlay = overlay;
  p.serial_log = h.serial_log;
  PB_ASSIGN(p.secmodels, secmodels());
  PB_ASSIGN(std::string xml, libvirt_domain_xml(net, vm, p));
  PB_TRY(mkdir_p(run_dir));

  // The overlay: kept if it is there already (a VM started again keeps what changed on it).
  if (!path_exists(overlay)) {
    PB_TRY(mkdir_p(dirname_of(overlay)));
    std::string tmp = temp_name(dirname_of(overlay), "overlay");
    Proc q = run({"qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", p.backing_format, tmp}, 120);
    if (q.status != 0) {
      ::unlink(tmp.c_str());
      return fail("failed to create overlay " + overlay + ": " + reason(q));
    }
    if (::rename(tmp.c_str(), overlay.c_str()) != 0) {
      int e = errno;
      ::unlink(tmp.c_str());
      return fail("failed to create overlay " + overlay + ": " + errstr(e));
    }
    PB_TRY(fsync_dir(dirname_of(overlay)));
  } else if (!is_qcow2(overlay)) {
    return make_error(kExitExists, "failed to start VM " + vm.host + ": " + overlay + " exists and is not a qcow2 overlay");
  }

  std::string path = join_path(run_dir, "domain.xml");
  PB_TRY(write_file_atomic(path, xml));
  Proc c = virsh({"create", path}, 120);
  if (c.status != 0) return fail("failed to start libvirt domain " + name + ": " + reason(c));
  return h;
}

// A domain libvirt does not know: virsh says "failed to get domain 'NAME'" (and "Domain
// not found"); a failed connection reads otherwise.
bool no_such_domain(const Proc& p) {
  return p.started && !p.timed_out &&
         (p.err.find("failed to get domain") != std::string::npos || p.err.find("Domain not found") != std::string::npos);
}

VmState LibvirtPlatform::state(const VmHandle& vm) {
  // One virsh call (each costs a process start and a connection: ~1 s on this loaded machine).
  Proc p = virsh({"domstate", vm.id});
  if (p.status != 0) return no_such_domain(p) ? VmState::Stopped : VmState::Unknown;  // transient: gone when stopped
  std::string s = trim(p.out);
  if (s == "shut off" || s == "crashed") return VmState::Stopped;
  if (s == "running" || s == "paused" || s == "in shutdown" || s == "idle" || s == "blocked" || s == "pmsuspended")
    return VmState::Running;
  return VmState::Unknown;
}

Status LibvirtPlatform::stop_vm(const VmHandle& vm, int grace_s) {
  Proc s = virsh({"shutdown", vm.id});  // ACPI power button
  if (s.status != 0) {
    if (no_such_domain(s) || state(vm) == VmState::Stopped) return {};
  } else {
    auto deadline = Clock::now() + std::chrono::seconds(std::max(0, grace_s));
    while (Clock::now() < deadline) {
      if (state(vm) == VmState::Stopped) return {};
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }
  Proc d = virsh({"destroy", vm.id});  // libvirt: SIGTERM, then SIGKILL after a while
  if (d.status != 0) {
    if (no_such_domain(d) || state(vm) == VmState::Stopped) return {};
    return fail("failed to stop libvirt domain " + vm.id + ": " + reason(d));
  }
  return {};
}

}  // namespace

std::unique_ptr<RescuePlatform> make_libvirt_platform() { return std::make_unique<LibvirtPlatform>(); }

Result<std::string> libvirt_freeze_active_layer(const std::string& domain, const std::string& next) {
  const std::string uri = libvirt_uri();
  auto vsh = [&](std::vector<std::string> a, int t = 120) {
    a.insert(a.begin(), {"virsh", "-q", "-c", uri});
    return run(a, t);
  };
  if (next.empty() || next[0] != '/') return make_error(kExitUsage, "failed to freeze the disk of " + domain + ": '" + next + "' is not an absolute path");
  if (next.find(',') != std::string::npos)
    return make_error(kExitUsage, "failed to freeze the disk of " + domain + ": a comma in '" + next + "'");
  if (path_exists(next)) return make_error(kExitExists, "failed to freeze the disk of " + domain + ": " + next + " exists");
  // The active layer now: `domblklist --details` lines "file disk vda /path".
  Proc l = vsh({"domblklist", domain, "--details"}, 60);
  if (l.status != 0) return fail("failed to read the disks of libvirt domain " + domain + ": " + reason(l));
  std::string active;
  for (const auto& line : lines(l.out)) {
    std::istringstream in(line);
    std::string type, device, target, source;
    in >> type >> device >> target;
    std::getline(in, source);
    if (device == "disk" && target == "vda") active = trim(source);
  }
  if (active.empty() || active[0] != '/') return fail("failed to freeze the disk of " + domain + ": no file disk vda");
  Proc s = vsh({"snapshot-create-as", domain, "--disk-only", "--atomic", "--no-metadata", "--diskspec",
                "vda,snapshot=external,file=" + next});
  if (s.status != 0) return fail("failed to freeze the disk of libvirt domain " + domain + ": " + reason(s));
  return active;
}

std::string libvirt_uri() {
  const char* u = std::getenv("PLANB_LIBVIRT_URI");
  return u && *u ? u : "qemu:///system";
}

std::string libvirt_network_name(const RescueNetworkSpec& spec) { return "planb-" + spec.id; }
std::string libvirt_bridge_name(const RescueNetworkSpec& spec) { return "pb-" + spec.id.substr(0, 12); }
std::string libvirt_domain_name(const std::string& net_id, const std::string& host) {
  return "planb-" + net_id + "-" + host;
}

Result<std::string> libvirt_network_xml(const RescueNetworkSpec& spec) {
  const std::string what = "failed to create libvirt network planb-" + spec.id + ": ";
  if (!valid_id(spec.id)) return make_error(kExitUsage, what + "the id must be 1 to 12 letters or digits");
  auto net = parse_ipv4_net(spec.cidr);
  if (!net) return make_error(kExitUsage, what + "bad network '" + spec.cidr + "'");
  auto gw = parse_ipv4(spec.gateway);
  if (!gw || !net->contains(*gw) || *gw == net->base || *gw == net->broadcast())
    return make_error(kExitUsage, what + "gateway '" + spec.gateway + "' is not a host address of " + spec.cidr);
  if (!spec.domain.empty() &&
      (spec.domain.front() == '.' || spec.domain.front() == '-' ||
       !std::all_of(spec.domain.begin(), spec.domain.end(), [](char c) {
         return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
       })))
    return make_error(kExitUsage, what + "bad domain '" + spec.domain + "'");
  std::set<std::string> macs, hosts;
  std::set<uint32_t> addrs = {*gw};
  for (const auto& l : spec.leases) {
    auto a = parse_ipv4(l.address);
    if (!valid_host(l.host)) return make_error(kExitUsage, what + "bad host name '" + l.host + "'");
    if (!valid_mac(l.mac)) return make_error(kExitUsage, what + "bad MAC address '" + l.mac + "' for " + l.host);
    if (!a || !net->contains(*a) || *a == net->base || *a == net->broadcast())
      return make_error(kExitUsage, what + "address '" + l.address + "' of " + l.host + " is not a host address of " +
                                        spec.cidr);
    if (!addrs.insert(*a).second)
      return make_error(kExitUsage, what + "address " + l.address + " of " + l.host + " is taken");
    if (!macs.insert(lower(l.mac)).second) return make_error(kExitUsage, what + "MAC " + l.mac + " given twice");
    if (!hosts.insert(l.host).second) return make_error(kExitUsage, what + "host " + l.host + " given twice");
  }
  std::string x;
  x += "<network>\n";
  x += "  <name>" + libvirt_network_name(spec) + "</name>\n";
  x += "  <!-- Plan B rescue network: isolated (no forward element: nothing routes out), fixed DHCP leases only -->\n";
  x += "  <bridge name='" + libvirt_bridge_name(spec) + "' stp='off' delay='0'/>\n";
  if (!spec.domain.empty()) x += "  <domain name='" + xml_escape(spec.domain) + "' localOnly='yes'/>\n";
  if (!spec.leases.empty()) {
    x += "  <dns>\n";
    for (const auto& l : spec.leases) {
      x += "    <host ip='" + l.address + "'><hostname>" + xml_escape(l.host) + "</hostname>";
      if (!spec.domain.empty()) x += "<hostname>" + xml_escape(l.host + "." + spec.domain) + "</hostname>";
      x += "</host>\n";
    }
    x += "  </dns>\n";
  }
  x += "  <ip address='" + spec.gateway + "' prefix='" + std::to_string(net->prefix) + "'>\n";
  if (!spec.leases.empty()) {
    // No <range>: libvirt then runs dnsmasq with "dhcp-range=<net>,static", so only
    // these MACs get an address, and always the CMDB's.
    x += "    <dhcp>\n";
    for (const auto& l : spec.leases)
      x += "      <host mac='" + lower(l.mac) + "' name='" + xml_escape(l.host) + "' ip='" + l.address + "'/>\n";
    x += "    </dhcp>\n";
  }
  x += "  </ip>\n";
  x += "</network>\n";
  return x;
}

Result<std::string> libvirt_domain_xml(const RescueNetworkSpec& net, const VmSpec& vm, const LibvirtDomainParams& p) {
  const std::string what = "failed to start VM " + vm.host + ": ";
  if (!valid_id(net.id)) return make_error(kExitUsage, what + "bad rescue network id '" + net.id + "'");
  if (!valid_host(vm.host)) return make_error(kExitUsage, what + "bad host name '" + vm.host + "'");
  if (!valid_mac(vm.mac)) return make_error(kExitUsage, what + "bad MAC address '" + vm.mac + "'");
  if (vm.cpus < 1 || vm.cpus > 64) return make_error(kExitUsage, what + "cpus must be 1..64");
  if (vm.memory_mb < 16) return make_error(kExitUsage, what + "memory must be at least 16 MiB");
  if (p.type != "kvm" && p.type != "qemu") return make_error(kExitUsage, what + "unknown domain type '" + p.type + "'");
  if (p.backing_format != "qcow2" && p.backing_format != "raw")
    return make_error(kExitUsage, what + "unknown image format '" + p.backing_format + "'");
  for (const auto* f : {&p.base_image, &p.overlay, &p.serial_log})
    if (f->empty() || (*f)[0] != '/') return make_error(kExitUsage, what + "paths must be absolute ('" + *f + "')");
  std::string x;
  x += "<domain type='" + p.type + "'>\n";
  x += "  <name>" + libvirt_domain_name(net.id, vm.host) + "</name>\n";
  x += "  <description>Plan B rescue VM for host " + xml_escape(vm.host) + " on network " +
       libvirt_network_name(net) + "</description>\n";
  x += "  <memory unit='MiB'>" + std::to_string(vm.memory_mb) + "</memory>\n";
  x += "  <vcpu>" + std::to_string(vm.cpus) + "</vcpu>\n";
  x += "  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n    <boot dev='hd'/>\n  </os>\n";
  x += "  <features><acpi/><apic/></features>\n";
  x += p.type == "kvm" ? "  <cpu mode='host-passthrough'/>\n" : "  <cpu mode='maximum'/>\n";
  x += "  <clock offset='utc'/>\n";
  x += "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n";
  x += "  <devices>\n";
  x += "    <disk type='file' device='disk'>\n";
  x += "      <driver name='qemu' type='qcow2'/>\n";
  x += "      <source file='" + xml_escape(p.overlay) + "'/>\n";
  x += "      <backingStore type='file'>\n";
  x += "        <format type='" + p.backing_format + "'/>\n";
  x += "        <source file='" + xml_escape(p.base_image) + "'/>\n";
  x += "        <backingStore/>\n";
  x += "      </backingStore>\n";
  x += "      <target dev='vda' bus='virtio'/>\n";
  x += "    </disk>\n";
  x += "    <interface type='network'>\n";
  x += "      <mac address='" + lower(vm.mac) + "'/>\n";
  x += "      <source network='" + libvirt_network_name(net) + "'/>\n";
  x += "      <model type='virtio'/>\n";
  x += "    </interface>\n";
  x += "    <serial type='file'>\n      <source path='" + xml_escape(p.serial_log) +
       "'/>\n      <target port='0'/>\n    </serial>\n";
  x += "    <console type='file'>\n      <source path='" + xml_escape(p.serial_log) +
       "'/>\n      <target type='serial' port='0'/>\n    </console>\n";
  x += "    <memballoon model='none'/>\n";
  x += "  </devices>\n";
  // qemu runs as root and libvirt relabels nothing: the repository image (the backing
  // file) keeps its owner, mode and labels, and root-only run directories stay readable.
  for (const auto& m : p.secmodels) {
    if (m == "dac") x += "  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>\n";
    else if (!m.empty()) x += "  <seclabel type='none' model='" + xml_escape(m) + "'/>\n";
  }
  x += "</domain>\n";
  return x;
}

std::vector<std::string> libvirt_secmodels(const std::string& caps) {
  std::vector<std::string> v;
  size_t pos = 0;
  while ((pos = caps.find("<secmodel>", pos)) != std::string::npos) {
    size_t end = caps.find("</secmodel>", pos);
    size_t m = caps.find("<model>", pos);
    if (end == std::string::npos) break;
    if (m != std::string::npos && m < end) {
      size_t me = caps.find("</model>", m);
      if (me != std::string::npos && me < end) {
        std::string name = trim(caps.substr(m + 7, me - m - 7));
        if (!name.empty() && name != "none" && std::find(v.begin(), v.end(), name) == v.end()) v.push_back(name);
      }
    }
    pos = end;
  }
  return v;
}

}  // namespace planb
