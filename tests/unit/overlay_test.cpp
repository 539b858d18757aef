// Overlay v1: parser, matcher and actions on a small guest tree.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "fsutil.hpp"
#include "initramfs.hpp"
#include "overlay.hpp"
#include "testutil.hpp"

using namespace planb;
namespace fs = std::filesystem;

namespace {

void put(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string get(const std::string& path) {
  auto r = read_file(path);
  return r.ok() ? *r : "<missing>";
}

const char* kHead = "[overlay]\nformat = 1\nname = \"t\"\n";

Overlay parse_ok(const std::string& body) {
  auto r = parse_overlay(std::string(kHead) + body, "t.toml");
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : Overlay{};
}

std::string parse_err(const std::string& text) {
  auto r = parse_overlay(text, "bad.toml");
  EXPECT_FALSE(r.ok());
  if (r.ok()) return "";
  EXPECT_EQ(r.error().code, kExitUsage);
  return r.error().message;
}

struct Guest {
  TempDir dir;
  std::string root() const { return dir.path; }
  std::string p(const std::string& rel) const { return dir.path + rel; }
  Guest() {
    put(p("/etc/os-release"), "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n");
    put(p("/var/lib/dpkg/status"),
        "Package: nginx\nStatus: install ok installed\n\nPackage: gone\nStatus: deinstall ok config-files\n");
    put(p("/etc/passwd"), "root:x:0:0:root:/root:/bin/bash\nweb:x:1000:1000::/home/web:/bin/bash\n");
  }
};

}  // namespace

TEST(OverlayParse, FullFile) {
  auto o = parse_ok(
      "description = \"d\"\npriority = 7\n[when]\nos_id = [\"debian\"]\nversion_id = \"1*\"\n"
      "[[action]]\ntype = \"write_file\"\npath = \"/etc/x\"\ncontent = \"a\"\nmode = \"0600\"\n"
      "[[action]]\ntype = \"replace_lines\"\npath = \"/etc/y\"\nmatch = '^a(.*)'\nreplace = \"b$1\"\n");
  EXPECT_EQ(o.name, "t");
  EXPECT_EQ(o.priority, 7);
  ASSERT_EQ(o.actions.size(), 2u);
  EXPECT_EQ(o.actions[0].mode, 0600u);
  EXPECT_EQ(o.when.version_id, std::vector<std::string>{"1*"});
}

TEST(OverlayParse, Errors) {
  EXPECT_NE(parse_err("[overlay\nformat=1").find("bad.toml"), std::string::npos);
  EXPECT_NE(parse_err("[overlay]\nname=\"x\"\n[[action]]\ntype=\"delete\"\npaths=[\"/a\"]\n").find("format"),
            std::string::npos);
  EXPECT_NE(parse_err(std::string(kHead) + "[[action]]\ntype = \"frobnicate\"\n").find("unknown action type"),
            std::string::npos);
  EXPECT_NE(parse_err(std::string(kHead) + "[[action]]\ntype = \"delete_lines\"\npath=\"/a\"\nmatch = \"(\"\n")
                .find("bad regular expression"),
            std::string::npos);
  EXPECT_NE(parse_err(std::string(kHead) + "[[action]]\ntype = \"write_file\"\npath=\"/a\"\n").find("'content' is required"),
            std::string::npos);
  EXPECT_NE(parse_err(std::string(kHead) + "[[action]]\ntype = \"write_file\"\npath=\"/a\"\ncontent=\"\"\ncolour=1\n")
                .find("unknown key 'colour'"),
            std::string::npos);
  EXPECT_NE(parse_err(std::string(kHead) + "[[action]]\ntype = \"write_file\"\npath=\"a\"\ncontent=\"\"\n").find("absolute"),
            std::string::npos);
  EXPECT_NE(parse_err(std::string(kHead) + "[when]\nflavour = \"x\"\n[[action]]\ntype=\"delete\"\npaths=[\"/a\"]\n")
                .find("unknown key 'flavour'"),
            std::string::npos);
}

TEST(OverlayLoad, LaterDirectoryOverridesByName) {
  TempDir d;
  put(d.path + "/a/x.toml", std::string(kHead) + "[[action]]\ntype=\"delete\"\npaths=[\"/one\"]\n");
  put(d.path + "/b/y.toml", "[overlay]\nformat = 1\nname = \"t\"\nenabled = false\n");
  put(d.path + "/b/z.toml", "[overlay]\nformat = 1\nname = \"early\"\npriority = 1\n[[action]]\ntype=\"delete\"\npaths=[\"/z\"]\n");
  auto r = load_overlays({d.path + "/a", d.path + "/b", d.path + "/missing"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].name, "early");
  EXPECT_EQ((*r)[1].name, "t");
  EXPECT_FALSE((*r)[1].enabled);
  put(d.path + "/b/broken.toml", "this is not toml");
  auto r2 = load_overlays({d.path + "/a", d.path + "/b"});
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code, kExitUsage);
  EXPECT_NE(r2.error().message.find("broken.toml"), std::string::npos);
}

TEST(OverlayMatch, Conditions) {
  Guest g;
  auto tree = *GuestTree::open(g.root());
  auto facts = *read_guest_facts(tree);
  EXPECT_EQ(facts.id, "debian");
  EXPECT_EQ(facts.version_id, "12");
  EXPECT_TRUE(facts.packages.count("nginx"));
  EXPECT_FALSE(facts.packages.count("gone"));
  auto m = [&](const std::string& when) {
    return match_overlay(parse_ok(when + "[[action]]\ntype=\"delete\"\npaths=[\"/x\"]\n"), facts, tree);
  };
  EXPECT_TRUE(m("[when]\nos_id = [\"ubuntu\", \"debian\"]\nversion_id = \"1?\"\n").matched);
  auto r = m("[when]\nos_id = [\"rhel\", \"centos\"]\n");
  EXPECT_FALSE(r.matched);
  EXPECT_NE(r.reason.find("'debian'"), std::string::npos);
  EXPECT_FALSE(m("[when]\nversion_id = \"11\"\n").matched);
  EXPECT_TRUE(m("[when]\nfiles = [\"/etc/passwd\"]\npackages = [\"nginx\"]\n").matched);
  EXPECT_FALSE(m("[when]\nfiles = [\"/etc/nothing\"]\n").matched);
  EXPECT_FALSE(m("[when]\nnot_files = [\"/etc/passwd\"]\n").matched);
  EXPECT_FALSE(m("[when]\npackages = [\"gone\"]\n").matched);
}

TEST(OverlayActions, EditsStayInsideTheRoot) {
  Guest g;
  TempDir outside;
  put(outside.path + "/secret", "host file\n");
  // A hostile guest: absolute symlinks that would point at the host.
  ::symlink((outside.path + "/secret").c_str(), g.p("/etc/fstab").c_str());
  fs::create_directories(g.p("/etc/network"));
  ::symlink("/../../../../etc/evil", g.p("/etc/network/interfaces").c_str());
  auto tree = *GuestTree::open(g.root());
  BootPlan plan;
  std::vector<Change> ch;
  auto o = parse_ok("[[action]]\ntype = \"fstab\"\n[[action]]\ntype=\"write_file\"\npath=\"/etc/network/interfaces\"\ncontent=\"x\\n\"\n");
  auto st = apply_overlay(o, tree, {{"root_uuid", "U"}}, plan, ch);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(get(outside.path + "/secret"), "host file\n");
  EXPECT_FALSE(fs::exists("/etc/evil"));
  // The links dangle inside the guest root: replaced by files.
  EXPECT_EQ(get(g.p("/etc/fstab")), "UUID=U / ext4 errors=remount-ro 0 1\n");
  EXPECT_EQ(get(g.p("/etc/network/interfaces")), "x\n");
  // A link whose target exists inside the root is written through, inside.
  put(g.p(outside.path + "/secret"), "guest file\n");
  ::symlink((outside.path + "/secret").c_str(), g.p("/etc/hosts").c_str());
  auto o2 = parse_ok("[[action]]\ntype=\"append_lines\"\npath=\"/etc/hosts\"\nlines=[\"1.2.3.4 x\"]\n");
  ASSERT_TRUE(apply_overlay(o2, tree, {}, plan, ch).ok());
  EXPECT_EQ(get(outside.path + "/secret"), "host file\n");
  EXPECT_EQ(get(g.p(outside.path + "/secret")), "guest file\n1.2.3.4 x\n");
}

TEST(OverlayActions, FstabNetworkKeysUnitsKeys) {
  Guest g;
  put(g.p("/etc/fstab"),
      "# comment\nUUID=aaa / ext4 errors=remount-ro 0 1\nUUID=bbb /data ext4 defaults 0 2\n"
      "/dev/sdb1 none swap sw 0 0\ntmpfs /tmp tmpfs defaults 0 0\nproc /proc proc defaults 0 0\n");
  put(g.p("/etc/network/interfaces"), "auto lo\niface lo inet loopback\n\nauto enp3s0\niface enp3s0 inet static\n\taddress 10.0.0.2/24\n");
  put(g.p("/etc/initramfs-tools/initramfs.conf"), "# MODULES: most or dep\nMODULES=dep\nBUSYBOX=auto\n");
  put(g.p("/lib/systemd/system/systemd-networkd.service"),
      "[Unit]\nDescription=n\n[Install]\nWantedBy=multi-user.target\nAlso=systemd-networkd.socket\nAlias=dbus-org.freedesktop.network1.service\n");
  put(g.p("/lib/systemd/system/systemd-networkd.socket"), "[Socket]\n[Install]\nWantedBy=sockets.target\n");
  put(g.p("/lib/systemd/system/serial-getty@.service"), "[Install]\nWantedBy=getty.target\n");
  fs::create_directories(g.p("/etc/systemd/system/multi-user.target.wants"));
  ::symlink("/lib/systemd/system/old.service", g.p("/etc/systemd/system/multi-user.target.wants/old.service").c_str());
  put(g.p("/etc/udev/rules.d/70-persistent-net.rules"), "x\n");
  auto tree = *GuestTree::open(g.root());
  auto o = parse_ok(R"(
[[action]]
type = "fstab"
[[action]]
type = "replace_lines"
path = "/etc/network/interfaces"
match = '^(\s*(auto|iface|address)\s+(?!lo\b).*)$'
replace = "#x# $1"
[[action]]
type = "set_key"
path = "/etc/initramfs-tools/initramfs.conf"
key = "MODULES"
value = "most"
[[action]]
type = "set_key"
path = "/etc/initramfs-tools/initramfs.conf"
key = "NEWKEY"
value = "1"
[[action]]
type = "append_lines"
path = "/etc/initramfs-tools/modules"
lines = ["virtio_blk", "virtio_blk"]
[[action]]
type = "enable_unit"
unit = "systemd-networkd.service"
[[action]]
type = "enable_unit"
unit = "serial-getty@ttyS0.service"
[[action]]
type = "disable_unit"
unit = "old.service"
[[action]]
type = "delete"
paths = ["/etc/udev/rules.d/*-persistent-net.rules"]
[[action]]
type = "authorized_key"
key = "${test_agent_pub}"
[[action]]
type = "delete_lines"
path = "/etc/initramfs-tools/initramfs.conf"
match = "^BUSYBOX"
[[action]]
type = "bootloader"
kind = "grub-bios"
cmdline = ["console=ttyS0,115200"]
[[action]]
type = "initramfs_modules"
modules = ["virtio_pci"]
[[action]]
type = "guest_command"
command = "echo ${host}"
)");
  BootPlan plan;
  std::vector<Change> ch;
  auto st = apply_overlay(o, tree, {{"root_uuid", "NEW"}, {"test_agent_pub", "ssh-ed25519 AAAA test"}, {"host", "web1"}},
                          plan, ch);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(get(g.p("/etc/fstab")),
            "# comment\nUUID=NEW / ext4 errors=remount-ro 0 1\n"
            "# planb: disk absent in the rescue image (its files are in the root file system): UUID=bbb /data ext4 defaults 0 2\n"
            "# planb: swap device absent in the rescue image: /dev/sdb1 none swap sw 0 0\n"
            "tmpfs /tmp tmpfs defaults 0 0\nproc /proc proc defaults 0 0\n");
  EXPECT_EQ(get(g.p("/etc/network/interfaces")),
            "auto lo\niface lo inet loopback\n\n#x# auto enp3s0\n#x# iface enp3s0 inet static\n#x# \taddress 10.0.0.2/24\n");
  EXPECT_EQ(get(g.p("/etc/initramfs-tools/initramfs.conf")), "# MODULES: most or dep\nMODULES=most\nNEWKEY=1\n");
  EXPECT_EQ(get(g.p("/etc/initramfs-tools/modules")), "virtio_blk\n");
  char buf[256];
  ssize_t n = ::readlink(g.p("/etc/systemd/system/multi-user.target.wants/systemd-networkd.service").c_str(), buf, sizeof buf);
  EXPECT_EQ(std::string(buf, n > 0 ? size_t(n) : 0), "/lib/systemd/system/systemd-networkd.service");
  EXPECT_TRUE(fs::is_symlink(g.p("/etc/systemd/system/sockets.target.wants/systemd-networkd.socket")));
  EXPECT_TRUE(fs::is_symlink(g.p("/etc/systemd/system/dbus-org.freedesktop.network1.service")));
  n = ::readlink(g.p("/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service").c_str(), buf, sizeof buf);
  EXPECT_EQ(std::string(buf, n > 0 ? size_t(n) : 0), "/lib/systemd/system/serial-getty@.service");
  EXPECT_FALSE(fs::is_symlink(g.p("/etc/systemd/system/multi-user.target.wants/old.service")));
  EXPECT_FALSE(fs::exists(g.p("/etc/udev/rules.d/70-persistent-net.rules")));
  EXPECT_EQ(get(g.p("/root/.ssh/authorized_keys")), "ssh-ed25519 AAAA test\n");
  struct stat s;
  ASSERT_EQ(::stat(g.p("/root/.ssh").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0700u);
  ASSERT_EQ(::stat(g.p("/root/.ssh/authorized_keys").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0600u);
  EXPECT_EQ(plan.bootloader, "grub-bios");
  EXPECT_EQ(plan.cmdline, std::vector<std::string>{"console=ttyS0,115200"});
  EXPECT_EQ(plan.initramfs_modules, std::vector<std::string>{"virtio_pci"});
  ASSERT_EQ(plan.guest_commands.size(), 1u);
  EXPECT_EQ(plan.guest_commands[0].second, "echo web1");
  // Every action is explained; the fstab change names both lines.
  bool saw = false;
  for (auto& c : ch)
    if (c.action == "fstab" && c.before.find("/data") != std::string::npos) saw = c.after.find("commented out") == 0;
  EXPECT_TRUE(saw);
  // Applying again changes nothing (idempotent), and an unknown variable is an error.
  std::vector<Change> again;
  ASSERT_TRUE(apply_overlay(o, tree, {{"root_uuid", "NEW"}, {"test_agent_pub", "ssh-ed25519 AAAA test"}, {"host", "web1"}},
                            plan, again).ok());
  EXPECT_EQ(get(g.p("/root/.ssh/authorized_keys")), "ssh-ed25519 AAAA test\n");
  EXPECT_EQ(get(g.p("/etc/initramfs-tools/modules")), "virtio_blk\n");
  auto bad = apply_overlay(o, tree, {}, plan, again);
  EXPECT_FALSE(bad.ok());
}

TEST(Initramfs, AppendsModulesWithDependencies) {
  Guest g;
  std::string m = "/lib/modules/6.1.0-9-amd64";
  put(g.p(m + "/modules.dep"),
      "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n"
      "kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\n"
      "kernel/drivers/virtio/virtio.ko:\nkernel/fs/other.ko:\n");
  put(g.p(m + "/modules.builtin"), "kernel/fs/ext4/ext4.ko\n");
  put(g.p(m + "/modules.alias"), "alias virtio:d00000002v* virtio_blk\n");
  for (auto f : {"drivers/block/virtio_blk.ko", "drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko"})
    put(g.p(m + "/kernel/" + f), std::string("ELF ") + f);
  put(g.p("/boot/initrd.img-6.1.0-9-amd64"), "ORIGINAL");
  auto tree = *GuestTree::open(g.root());
  auto r = add_initramfs_modules(tree, {"virtio-blk", "ext4", "nosuch"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 1u);
  auto& u = (*r)[0];
  EXPECT_EQ(u.added, (std::vector<std::string>{"virtio", "virtio_blk", "virtio_ring"}));
  EXPECT_EQ(u.builtin, std::vector<std::string>{"ext4"});
  EXPECT_EQ(u.missing, std::vector<std::string>{"nosuch"});
  std::string img = get(g.p("/boot/initrd.img-6.1.0-9-amd64"));
  ASSERT_GT(img.size(), 512u);
  EXPECT_EQ(img.substr(0, 8), "ORIGINAL");
  EXPECT_EQ(img.substr(512, 6), "070701");  // the appended archive starts aligned
  EXPECT_EQ(img.size() % 512, 0u);
  EXPECT_NE(img.find("lib/modules/6.1.0-9-amd64/kernel/drivers/block/virtio_blk.ko"), std::string::npos);
  EXPECT_NE(img.find("ELF drivers/virtio/virtio.ko"), std::string::npos);
  EXPECT_NE(img.find("modules.alias"), std::string::npos);
  EXPECT_EQ(img.find("other.ko"), img.find("other.ko"));  // only in modules.dep
  EXPECT_NE(img.find("TRAILER!!!"), std::string::npos);
  // When cpio(1) is present, it reads the archive back.
  if (::access("/usr/bin/cpio", X_OK) == 0) {
    std::ofstream(g.p("/a.cpio")) << img.substr(512);
    std::string cmd = "cd " + g.root() + " && mkdir x && cd x && cpio -id --quiet < ../a.cpio 2>/dev/null";
    ASSERT_EQ(::system(cmd.c_str()), 0);
    EXPECT_EQ(get(g.p("/x/lib/modules/6.1.0-9-amd64/kernel/drivers/virtio/virtio.ko")), "ELF drivers/virtio/virtio.ko");
  }
}

TEST(Version, Order) {
  EXPECT_TRUE(version_less("6.1.0-9-amd64", "6.1.0-10-amd64"));
  EXPECT_FALSE(version_less("6.1.0-10-amd64", "6.1.0-9-amd64"));
  EXPECT_TRUE(version_less("5.10.0", "6.1.0"));
}
