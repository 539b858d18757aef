// The libvirt backend's XML (no libvirtd needed; tests/rescue-libvirt.bats boots a VM
// through a real one). When virt-xml-validate (libvirt-clients) is installed, the XML is
// also checked against libvirt's own RelaxNG schemas.
#include "rescue_libvirt.hpp"

#include <unistd.h>

#include <cstdlib>
#include <optional>

#include "fsutil.hpp"
#include "testutil.hpp"

using namespace planb;

namespace {

RescueNetworkSpec net_spec() {
  RescueNetworkSpec s;
  s.id = "0a1b2c3d";
  s.cidr = "10.99.0.0/24";
  s.gateway = "10.99.0.1";
  s.domain = "acme.rescue";
  s.leases = {{"db", "52:54:00:00:00:11", "10.99.0.11"}, {"app", "52:54:00:AB:CD:EF", "10.99.0.12"}};
  s.run_dir = "/tmp";
  return s;
}

VmSpec vm_spec() {
  VmSpec v;
  v.host = "db";
  v.base_image = "/srv/planb/repository/db/7.qcow2";
  v.overlay = "/srv/planb/invocations/x/vm/db/disk.qcow2";
  v.cpus = 2;
  v.memory_mb = 384;
  v.mac = "52:54:00:00:00:11";
  v.run_dir = "/srv/planb/invocations/x/vm/db";
  return v;
}

LibvirtDomainParams params() {
  LibvirtDomainParams p;
  p.base_image = "/srv/planb/repository/db/7.qcow2";
  p.overlay = "/srv/planb/invocations/x/vm/db/disk.qcow2";
  p.serial_log = "/srv/planb/invocations/x/vm/db/serial.log";
  return p;
}

bool has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// virt-xml-validate's verdict ("" = valid), or nullopt when the tool is missing.
std::optional<std::string> validate(const std::string& xml, const std::string& schema) {
  if (std::system("command -v virt-xml-validate >/dev/null 2>&1") != 0) return std::nullopt;
  char dir[] = "/tmp/planb-lvxml-XXXXXX";
  if (!::mkdtemp(dir)) return "mkdtemp failed";
  std::string path = std::string(dir) + "/x.xml", out = std::string(dir) + "/out";
  EXPECT_TRUE(write_file_atomic(path, xml).ok());
  int rc = std::system(("virt-xml-validate " + path + " " + schema + " >" + out + " 2>&1").c_str());
  auto text = read_file(out);
  std::string verdict = rc == 0 ? "" : (text.ok() ? *text : "failed");
  std::system(("rm -rf " + std::string(dir)).c_str());
  return verdict;
}

}  // namespace

TEST(RescueLibvirt, Names) {
  auto s = net_spec();
  EXPECT_EQ(libvirt_network_name(s), "planb-0a1b2c3d");
  EXPECT_EQ(libvirt_bridge_name(s), "pb-0a1b2c3d");
  s.id = "0123456789ab";
  EXPECT_LE(libvirt_bridge_name(s).size(), 15u);  // IFNAMSIZ - 1
  EXPECT_EQ(libvirt_domain_name("0a1b2c3d", "web"), "planb-0a1b2c3d-web");
}

TEST(RescueLibvirt, UriFromEnvironment) {
  ::unsetenv("PLANB_LIBVIRT_URI");
  EXPECT_EQ(libvirt_uri(), "qemu:///system");
  ::setenv("PLANB_LIBVIRT_URI", "qemu+unix:///system?socket=/tmp/s", 1);
  EXPECT_EQ(libvirt_uri(), "qemu+unix:///system?socket=/tmp/s");
  ::unsetenv("PLANB_LIBVIRT_URI");
}

TEST(RescueLibvirt, NetworkXml) {
  auto x = libvirt_network_xml(net_spec());
  ASSERT_TRUE(x.ok()) << x.error().message;
  EXPECT_TRUE(has(*x, "<name>planb-0a1b2c3d</name>"));
  EXPECT_TRUE(has(*x, "<bridge name='pb-0a1b2c3d'"));
  EXPECT_FALSE(has(*x, "<forward"));  // isolated: nothing routes out
  EXPECT_FALSE(has(*x, "<range"));    // fixed leases only
  EXPECT_TRUE(has(*x, "<ip address='10.99.0.1' prefix='24'>"));
  EXPECT_TRUE(has(*x, "<host mac='52:54:00:00:00:11' name='db' ip='10.99.0.11'/>"));
  EXPECT_TRUE(has(*x, "<host mac='52:54:00:ab:cd:ef' name='app' ip='10.99.0.12'/>"));
  EXPECT_TRUE(has(*x, "<domain name='acme.rescue' localOnly='yes'/>"));
  EXPECT_TRUE(has(*x, "<hostname>db.acme.rescue</hostname>"));
  auto v = validate(*x, "network");
  if (v) EXPECT_EQ(*v, "");
}

TEST(RescueLibvirt, NetworkXmlRefusesBadSpecs) {
  auto bad = [](auto change) {
    auto s = net_spec();
    change(s);
    auto x = libvirt_network_xml(s);
    return x.ok() ? std::string("accepted") : x.error().message;
  };
  EXPECT_TRUE(has(bad([](auto& s) { s.id = "0a1b'2c"; }), "id"));
  EXPECT_TRUE(has(bad([](auto& s) { s.id = "0123456789abc"; }), "id"));  // bridge name > 15
  EXPECT_TRUE(has(bad([](auto& s) { s.cidr = "10.99.0.1/24"; }), "bad network"));
  EXPECT_TRUE(has(bad([](auto& s) { s.gateway = "10.98.0.1"; }), "gateway"));
  EXPECT_TRUE(has(bad([](auto& s) { s.gateway = "10.99.0.255"; }), "gateway"));
  EXPECT_TRUE(has(bad([](auto& s) { s.leases[0].address = "10.99.1.5"; }), "not a host address"));
  EXPECT_TRUE(has(bad([](auto& s) { s.leases[1].address = "10.99.0.11"; }), "taken"));
  EXPECT_TRUE(has(bad([](auto& s) { s.leases[1].address = "10.99.0.1"; }), "taken"));
  EXPECT_TRUE(has(bad([](auto& s) { s.leases[1].mac = "52:54:00:00:00:11"; }), "twice"));
  EXPECT_TRUE(has(bad([](auto& s) { s.leases[1].mac = "52:54:00:00:00"; }), "bad MAC"));
  EXPECT_TRUE(has(bad([](auto& s) { s.leases[1].host = "a'b"; }), "bad host name"));
  EXPECT_TRUE(has(bad([](auto& s) { s.domain = "acme rescue"; }), "bad domain"));
}

TEST(RescueLibvirt, DomainXml) {
  auto p = params();
  p.secmodels = {"dac", "apparmor"};
  auto x = libvirt_domain_xml(net_spec(), vm_spec(), p);
  ASSERT_TRUE(x.ok()) << x.error().message;
  EXPECT_TRUE(has(*x, "<domain type='qemu'>"));
  EXPECT_TRUE(has(*x, "<name>planb-0a1b2c3d-db</name>"));
  EXPECT_TRUE(has(*x, "<memory unit='MiB'>384</memory>"));
  EXPECT_TRUE(has(*x, "<vcpu>2</vcpu>"));
  EXPECT_TRUE(has(*x, "<source file='/srv/planb/invocations/x/vm/db/disk.qcow2'/>"));
  EXPECT_TRUE(has(*x, "<format type='qcow2'/>\n        <source file='/srv/planb/repository/db/7.qcow2'/>"));
  EXPECT_TRUE(has(*x, "<source network='planb-0a1b2c3d'/>"));
  EXPECT_TRUE(has(*x, "<mac address='52:54:00:00:00:11'/>"));
  EXPECT_TRUE(has(*x, "<model type='virtio'/>"));
  EXPECT_TRUE(has(*x, "<serial type='file'>\n      <source path='/srv/planb/invocations/x/vm/db/serial.log'/>"));
  EXPECT_FALSE(has(*x, "<graphics"));
  EXPECT_TRUE(has(*x, "<seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>"));
  EXPECT_TRUE(has(*x, "<seclabel type='none' model='apparmor'/>"));
  auto v = validate(*x, "domain");
  if (v) EXPECT_EQ(*v, "");

  p.type = "kvm";
  p.backing_format = "raw";
  p.secmodels = {"dac"};
  x = libvirt_domain_xml(net_spec(), vm_spec(), p);
  ASSERT_TRUE(x.ok()) << x.error().message;
  EXPECT_TRUE(has(*x, "<domain type='kvm'>"));
  EXPECT_TRUE(has(*x, "<format type='raw'/>"));
  EXPECT_FALSE(has(*x, "apparmor"));
  v = validate(*x, "domain");
  if (v) EXPECT_EQ(*v, "");
}

TEST(RescueLibvirt, DomainXmlRefusesBadSpecs) {
  auto vm = vm_spec();
  vm.host = "db'x";
  EXPECT_FALSE(libvirt_domain_xml(net_spec(), vm, params()).ok());
  vm = vm_spec();
  vm.mac = "nonsense";
  EXPECT_FALSE(libvirt_domain_xml(net_spec(), vm, params()).ok());
  auto p = params();
  p.overlay = "relative/disk.qcow2";
  EXPECT_FALSE(libvirt_domain_xml(net_spec(), vm_spec(), p).ok());
  p = params();
  p.backing_format = "vmdk";
  EXPECT_FALSE(libvirt_domain_xml(net_spec(), vm_spec(), p).ok());
}

TEST(RescueLibvirt, SecurityModelsFromCapabilities) {
  const std::string caps = R"(<capabilities><host>
    <secmodel>
      <model>apparmor</model>
      <doi>0</doi>
    </secmodel>
    <secmodel>
      <model>dac</model>
      <doi>0</doi>
      <baselabel type='kvm'>+64055:+994</baselabel>
    </secmodel>
  </host></capabilities>)";
  EXPECT_EQ(libvirt_secmodels(caps), (std::vector<std::string>{"apparmor", "dac"}));
  EXPECT_TRUE(libvirt_secmodels("<capabilities><host><secmodel><model>none</model></secmodel></host></capabilities>").empty());
}
