// The rescue platform's pure parts: per-host MAC addresses, the factory, and the qemu
// backend's names, validation and command lines (tests/rescue-platform.bats runs the real
// backend: namespace, dnsmasq, qemu).
#include "rescue_platform.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "rescue_qemu.hpp"

using namespace planb;

namespace {

RescueNetworkSpec net_spec() {
  RescueNetworkSpec s;
  s.id = "0a1b2c3d";
  s.cidr = "10.99.0.0/24";
  s.gateway = "10.99.0.1";
  s.domain = "acme.rescue";
  s.leases = {{"db", "52:54:00:00:00:11", "10.99.0.11"}, {"app", "52:54:00:ab:cd:ef", "10.99.0.12"}};
  s.run_dir = "/run/x/net";
  return s;
}

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

}  // namespace

TEST(RescueMac, StableDistinctLocallyAdministered) {
  const std::string id = "0123456789abcdef0123456789abcdef";
  std::string m = rescue_mac(id, "db");
  EXPECT_EQ(m, rescue_mac(id, "db"));  // stable
  ASSERT_EQ(m.size(), 17u);
  EXPECT_EQ(m.substr(0, 9), "52:54:00:");
  for (size_t i = 0; i < m.size(); i++) {
    if (i % 3 == 2) EXPECT_EQ(m[i], ':');
    else EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(m[i])) && !std::isupper(static_cast<unsigned char>(m[i])));
  }
  // 0x52: locally administered (bit 1) and unicast (bit 0 clear).
  EXPECT_EQ(0x52 & 0x02, 0x02);
  EXPECT_EQ(0x52 & 0x01, 0x00);
  EXPECT_NE(m, rescue_mac(id, "app"));                                // another host
  EXPECT_NE(m, rescue_mac("fedcba9876543210fedcba9876543210", "db"));  // another invocation
  // The separator matters: ("ab", "c") and ("a", "bc") differ.
  EXPECT_NE(rescue_mac("ab", "c"), rescue_mac("a", "bc"));
  std::set<std::string> seen;
  for (int i = 0; i < 200; i++) seen.insert(rescue_mac(id, "host" + std::to_string(i)));
  EXPECT_EQ(seen.size(), 200u);
}

TEST(RescuePlatformFactory, KnowsItsBackends) {
  auto q = make_rescue_platform("qemu");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ((*q)->backend(), "qemu");
  auto l = make_rescue_platform("libvirt");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ((*l)->backend(), "libvirt");
  auto bad = make_rescue_platform("vmware");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, kExitUsage);
  EXPECT_NE(bad.error().message.find("vmware"), std::string::npos);
}

TEST(RescueQemu, Names) {
  auto s = net_spec();
  EXPECT_EQ(qemu_netns_name(s), "planb-0a1b2c3d");
  EXPECT_EQ((*make_rescue_platform("qemu"))->check_netns(s), "/run/netns/planb-0a1b2c3d");
  EXPECT_EQ(qemu_tap_name("52:54:00:AB:CD:EF"), "tap-abcdef");
  EXPECT_LE(qemu_tap_name("52:54:00:AB:CD:EF").size(), 15u);  // IFNAMSIZ
  EXPECT_EQ(qemu_qmp_path("/srv/inv/vm/db"), "/srv/inv/vm/db/qmp.sock");
  std::string longdir = "/var/lib/planb-server/invocations/0123456789abcdef0123456789abcdef/vm/" + std::string(60, 'h');
  std::string p = qemu_qmp_path(longdir);
  EXPECT_LT(p.size(), 100u);
  EXPECT_EQ(p.rfind("/run/planb/qmp-", 0), 0u);
  EXPECT_EQ(p, qemu_qmp_path(longdir));
  EXPECT_NE(p, qemu_qmp_path(longdir + "x"));
}

TEST(RescueQemu, ValidatesTheNetwork) {
  EXPECT_TRUE(validate_rescue_network(net_spec()).ok());
  auto bad = [](auto mutate) {
    auto s = net_spec();
    mutate(s);
    Status st = validate_rescue_network(s);
    return !st.ok() && st.error().code == kExitUsage;
  };
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.id = ""; }));
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.id = "a/b"; }));
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.cidr = "10.99.0.1/24"; }));
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.gateway = "10.98.0.1"; }));
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.gateway = "10.99.0.0"; }));
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.domain = "acme..rescue"; }));
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.leases[0].address = "10.99.1.11"; }));   // outside
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.leases[0].address = "10.99.0.1"; }));    // the gateway
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.leases[1].address = "10.99.0.11"; }));   // twice
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.leases[1].mac = "52:54:00:00:00:11"; }));  // twice
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.leases[1].mac = "52:54:01:00:00:11"; }));  // same tap
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.leases[1].mac = "52:54:00:00:00"; }));
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.leases[1].host = "db"; }));
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.leases[1].host = "a,b"; }));  // would split a dnsmasq option
  EXPECT_TRUE(bad([](RescueNetworkSpec& s) { s.run_dir = ""; }));
}

TEST(RescueQemu, DnsmasqFixedLeasesOnly) {
  auto a = qemu_dnsmasq_argv(net_spec());
  EXPECT_EQ(a[0], "dnsmasq");
  EXPECT_TRUE(has(a, "--conf-file=/dev/null"));
  EXPECT_TRUE(has(a, "--interface=br0"));
  EXPECT_TRUE(has(a, "--bind-interfaces"));
  EXPECT_TRUE(has(a, "--no-resolv"));
  EXPECT_TRUE(has(a, "--dhcp-range=10.99.0.0,static,255.255.255.0,12h"));
  EXPECT_TRUE(has(a, "--dhcp-host=52:54:00:00:00:11,10.99.0.11,db"));
  EXPECT_TRUE(has(a, "--dhcp-host=52:54:00:ab:cd:ef,10.99.0.12,app"));
  EXPECT_TRUE(has(a, "--domain=acme.rescue"));
  EXPECT_TRUE(has(a, "--host-record=db,db.acme.rescue,10.99.0.11"));  // DNS before any lease
  EXPECT_TRUE(has(a, "--dhcp-leasefile=/run/x/net/dnsmasq.leases"));
  EXPECT_TRUE(has(a, "--pid-file=/run/x/net/dnsmasq.pid"));
  for (const auto& x : a) EXPECT_EQ(x.find("--dhcp-range=10.99.0.0,10."), std::string::npos) << "a dynamic range";
}

TEST(RescueQemu, VmCommandLine) {
  VmSpec vm;
  vm.host = "db";
  vm.cpus = 2;
  vm.memory_mb = 256;
  vm.mac = "52:54:00:00:00:11";
  QemuVmParams p;
  p.accel = "tcg";
  p.tap = "tap-000011";
  p.serial_log = "/r/serial.log";
  p.qmp = "/r/qmp.sock";
  p.pid_file = "/r/pid";
  p.overlay = "/r/disk.qcow2";
  auto a = qemu_vm_argv(vm, p);
  EXPECT_EQ(a[0], "qemu-system-x86_64");
  EXPECT_TRUE(has(a, "-daemonize"));
  EXPECT_TRUE(has(a, "max"));  // -cpu max under TCG
  EXPECT_TRUE(has(a, "file=/r/disk.qcow2,if=none,id=disk0,format=qcow2"));
  EXPECT_TRUE(has(a, "tap,id=net0,ifname=tap-000011,script=no,downscript=no"));
  EXPECT_TRUE(has(a, "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:11"));
  EXPECT_TRUE(has(a, "unix:/r/qmp.sock,server=on,wait=off"));
  EXPECT_TRUE(has(a, "2"));
  EXPECT_TRUE(has(a, "256"));
  p.accel = "kvm";
  EXPECT_TRUE(has(qemu_vm_argv(vm, p), "host"));
}
