// rescue-platform-driver: a test-only front to lib/rescue_platform.hpp, so Bats tests drive a
// rescue-platform backend (network up, VM start/state/stop, network down) without the whole
// invocation machinery. Not installed.
//
//   rescue-platform-driver [--backend B] net-up   NET...
//   rescue-platform-driver [--backend B] net-down NET...
//   rescue-platform-driver [--backend B] vm-start NET... --host H --image IMG --overlay OV
//                          --mac MAC --vm-dir DIR [--cpus N] [--memory MB] [--accel A] --handle FILE
//   rescue-platform-driver [--backend B] vm-state --handle FILE      prints running|stopped|unknown
//   rescue-platform-driver [--backend B] vm-stop  --handle FILE [--grace S]
//   rescue-platform-driver --backend libvirt vm-freeze --handle FILE --next NEW.qcow2
// NET: --id ID --cidr CIDR --gateway GW [--domain D] --run-dir DIR [--lease HOST,MAC,ADDR]...
// The handle file holds the VmHandle as key=value lines (vm-start writes it).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <sstream>

#include "cli.hpp"
#include "cli_parse.hpp"
#include "fsutil.hpp"
#include "rescue_libvirt.hpp"
#include "rescue_platform.hpp"

using namespace planb;

namespace {

struct Opts {
  std::string backend = "qemu";
  RescueNetworkSpec net;
  std::vector<std::string> leases;
  VmSpec vm;
  std::string handle;
  int grace = 10;
};

Result<std::unique_ptr<RescuePlatform>> platform(const std::string& backend) {
  return make_rescue_platform(backend);
}

Status parse_leases(Opts& o) {
  for (const auto& l : o.leases) {
    size_t a = l.find(','), b = a == std::string::npos ? a : l.find(',', a + 1);
    if (b == std::string::npos) return make_error(kExitUsage, "failed to parse --lease '" + l + "': want HOST,MAC,ADDR");
    o.net.leases.push_back({l.substr(0, a), l.substr(a + 1, b - a - 1), l.substr(b + 1)});
  }
  return {};
}

Status write_handle(const std::string& path, const VmHandle& h) {
  std::ostringstream s;
  s << "backend=" << h.backend << "\nhost=" << h.host << "\nid=" << h.id << "\npid=" << h.pid
    << "\nserial_log=" << h.serial_log << "\nqmp=" << h.qmp << "\noverlay=" << h.overlay << "\n";
  return write_file_atomic(path, s.str());
}

Result<VmHandle> read_handle(const std::string& path) {
  PB_ASSIGN(std::string text, read_file(path));
  std::map<std::string, std::string> kv;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  VmHandle h;
  h.backend = kv["backend"];
  h.host = kv["host"];
  h.id = kv["id"];
  h.pid = kv["pid"].empty() ? 0 : std::stoll(kv["pid"]);
  h.serial_log = kv["serial_log"];
  h.qmp = kv["qmp"];
  h.overlay = kv["overlay"];
  return h;
}

void net_options(CLI::App* c, Opts& o) {
  c->add_option("--id", o.net.id, "Network id (names the namespace / libvirt network)")->required();
  c->add_option("--cidr", o.net.cidr, "Rescue network, e.g. 10.99.0.0/24")->required();
  c->add_option("--gateway", o.net.gateway, "Platform address on it")->required();
  c->add_option("--domain", o.net.domain, "DNS domain for the VMs");
  c->add_option("--run-dir", o.net.run_dir, "Directory for the network's files")->required();
  c->add_option("--lease", o.leases, "HOST,MAC,ADDR (repeatable)");
}

}  // namespace

int main(int argc, char** argv) {
  Opts o;
  CLI::App app{"rescue-platform-driver: drive a rescue-platform backend (tests only)"};
  app.add_option("--backend", o.backend, "qemu (default) or libvirt");
  app.require_subcommand(1);
  auto* up = app.add_subcommand("net-up", "Create the rescue network");
  net_options(up, o);
  auto* down = app.add_subcommand("net-down", "Remove the rescue network and its VMs");
  net_options(down, o);
  auto* start = app.add_subcommand("vm-start", "Create the overlay and start a VM; write its handle");
  net_options(start, o);
  start->add_option("--host", o.vm.host, "CMDB host name")->required();
  start->add_option("--image", o.vm.base_image, "Repository image (never written)")->required();
  start->add_option("--overlay", o.vm.overlay, "Copy-on-write layer to create")->required();
  start->add_option("--mac", o.vm.mac, "MAC address")->required();
  start->add_option("--vm-dir", o.vm.run_dir, "Per-VM directory")->required();
  start->add_option("--cpus", o.vm.cpus, "vCPUs");
  start->add_option("--memory", o.vm.memory_mb, "Memory in MiB");
  start->add_option("--accel", o.vm.accel, "auto|kvm|tcg");
  start->add_option("--handle", o.handle, "Where to write the VM handle")->required();
  auto* st = app.add_subcommand("vm-state", "Print running, stopped or unknown");
  st->add_option("--handle", o.handle, "VM handle file")->required();
  auto* stop = app.add_subcommand("vm-stop", "ACPI power-off, hard stop after --grace seconds");
  stop->add_option("--handle", o.handle, "VM handle file")->required();
  stop->add_option("--grace", o.grace, "Seconds to wait for the guest (default 10)");
  std::string next;
  auto* freeze = app.add_subcommand("vm-freeze", "libvirt: point-in-time disk freeze (failback); prints the frozen layer");
  freeze->add_option("--handle", o.handle, "VM handle file")->required();
  freeze->add_option("--next", next, "New active layer to create")->required();
  app.footer(exit_codes_help());
  if (int rc = parse_args(app, "rescue-platform-driver", argc, argv); rc >= 0) return rc;
  return run_command("rescue-platform-driver", [&]() -> Status {
    PB_TRY(parse_leases(o));
    PB_ASSIGN(auto p, platform(o.backend));
    if (up->parsed()) return p->create_network(o.net);
    if (down->parsed()) return p->destroy_network(o.net);
    if (start->parsed()) {
      PB_ASSIGN(VmHandle h, p->start_vm(o.net, o.vm));
      return write_handle(o.handle, h);
    }
    PB_ASSIGN(VmHandle h, read_handle(o.handle));
    if (st->parsed()) {
      VmState s = p->state(h);
      std::printf("%s\n", s == VmState::Running ? "running" : s == VmState::Stopped ? "stopped" : "unknown");
      return {};
    }
    if (freeze->parsed()) {
      PB_ASSIGN(std::string frozen, libvirt_freeze_active_layer(h.id, next));
      std::printf("%s\n", frozen.c_str());
      return {};
    }
    return p->stop_vm(h, o.grace);
  });
}
