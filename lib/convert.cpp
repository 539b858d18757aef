#include "convert.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_set>

#include "json.hpp"
#include "progress.hpp"
#include "restore.hpp"
#include "store.hpp"

namespace planb {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Runs a host tool (never a guest binary). Returns its stdout; on failure the
// error names the tool and carries the end of its stderr.
Result<std::string> run_tool(const std::vector<std::string>& argv, const std::string& what,
                             const std::string& err_file) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return fail("failed to " + what + ": pipe: " + errstr(errno));
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return fail("failed to " + what + ": fork: " + errstr(errno));
  if (pid == 0) {
    // The tool dies with planb-convert (kill -9 included).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(out[1], 1);
    int e = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (e >= 0) ::dup2(e, 2);
    int n = ::open("/dev/null", O_RDONLY);
    if (n >= 0) ::dup2(n, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::setenv("LC_ALL", "C", 1);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "%s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string stdout_text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n > 0) stdout_text.append(buf, size_t(n));
    else if (n == 0 || errno != EINTR) break;
  }
  ::close(out[0]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return stdout_text;
  std::string err;
  if (auto e = read_file(err_file); e.ok()) err = *e;
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  if (err.size() > 600) err = "..." + err.substr(err.size() - 600);
  std::string how = WIFEXITED(st) ? "exit status " + std::to_string(WEXITSTATUS(st))
                                  : "killed by signal " + std::to_string(WTERMSIG(st));
  if (WIFEXITED(st) && WEXITSTATUS(st) == 127 && err.find("No such file") != std::string::npos)
    return fail("failed to " + what + ": " + argv[0] + " is not installed (scripts/deps test)");
  return fail("failed to " + what + ": " + argv[0] + " " + how + (err.empty() ? "" : ": " + err));
}

std::string new_uuid() {
  auto u = read_file("/proc/sys/kernel/random/uuid");
  std::string s = u.ok() ? *u : "";
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// Allocated bytes and inode count of a tree (hard links once).
struct TreeSize {
  uint64_t bytes = 0, inodes = 0;
};
TreeSize* g_size;
std::unordered_set<uint64_t>* g_links;
int size_cb(const char*, const struct stat* st, int, struct FTW*) {
  if (st->st_nlink > 1 && !S_ISDIR(st->st_mode) && !g_links->insert(uint64_t(st->st_ino)).second) return 0;
  g_size->bytes += uint64_t(st->st_blocks) * 512;
  g_size->inodes++;
  return 0;
}
Result<TreeSize> tree_size(const std::string& root) {
  TreeSize s;
  std::unordered_set<uint64_t> links;
  g_size = &s;
  g_links = &links;
  if (::nftw(root.c_str(), size_cb, 64, FTW_PHYS | FTW_MOUNT) != 0)
    return fail("failed to measure the staging tree " + root + ": " + errstr(errno));
  return s;
}

// Unmounts anything below dir and detaches loop devices backed by files in it
// (left by a killed convert), then removes it.
void remove_work_dir(const std::string& dir) {
  auto mounts = read_file("/proc/self/mounts");
  if (mounts.ok()) {
    std::vector<std::string> below;
    std::istringstream is(*mounts);
    std::string dev, mp, rest;
    while (is >> dev >> mp && std::getline(is, rest))
      if (mp.rfind(dir + "/", 0) == 0) below.push_back(mp);
    std::sort(below.rbegin(), below.rend());
    for (auto& m : below) ::umount2(m.c_str(), MNT_DETACH);
  }
  if (DIR* d = ::opendir("/sys/block")) {
    while (auto* de = ::readdir(d)) {
      std::string n = de->d_name;
      if (n.rfind("loop", 0) != 0) continue;
      auto bf = read_file("/sys/block/" + n + "/loop/backing_file");
      if (!bf.ok()) continue;
      std::string f = *bf;
      while (!f.empty() && f.back() == '\n') f.pop_back();
      if (f.rfind(dir + "/", 0) == 0) {
        std::string dev = "/dev/" + n;
        (void)run_tool({"losetup", "-d", dev}, "detach " + dev, "/dev/null");
      }
    }
    ::closedir(d);
  }
  (void)run_tool({"rm", "-rf", "--one-file-system", dir}, "remove " + dir, "/dev/null");
}

struct Cleanup {
  std::string dir;
  bool keep;
  ~Cleanup() {
    if (!keep) remove_work_dir(dir);
  }
};

uint64_t mem_available() {
  auto m = read_file("/proc/meminfo");
  if (!m.ok()) return 0;
  auto p = m->find("MemAvailable:");
  if (p == std::string::npos) return 0;
  return std::strtoull(m->c_str() + p + 13, nullptr, 10) * 1024;
}

bool pid_alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// Work directories of converts that died: ".convert-<seq>-<pid>".
void clean_stale(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  while (auto* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n.rfind(".convert-", 0) != 0) continue;
    pid_t pid = pid_t(std::atol(n.substr(n.find_last_of('-') + 1).c_str()));
    if (!pid_alive(pid)) stale.push_back(join_path(dir, n));
  }
  ::closedir(d);
  for (auto& s : stale) remove_work_dir(s);
}

std::string self_dir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string p(buf, size_t(n));
  return p.substr(0, p.find_last_of('/'));
}

// The test agent's key pair: made with ssh-keygen when missing. The private key
// is renamed into place last, so its presence means the pair is complete.
Result<std::string> test_agent_key(const std::string& keys, const std::string& work) {
  std::string priv = keys + "/test-agent", pub = priv + ".pub";
  if (!path_exists(priv) || !path_exists(pub)) {
    PB_TRY(mkdir_p(keys, 0700));
    std::string tmp = temp_name(keys, "test-agent");
    PB_TRY(run_tool({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "planb-test-agent", "-f", tmp},
                    "create the test agent key " + priv, work + "/ssh-keygen.err"));
    if (::rename((tmp + ".pub").c_str(), pub.c_str()) != 0 || ::rename(tmp.c_str(), priv.c_str()) != 0)
      return fail("failed to create the test agent key " + priv + ": " + errstr(errno));
    PB_TRY(fsync_dir(keys));
  }
  PB_ASSIGN(std::string text, read_file(pub));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

Status fsync_path(const std::string& p) {
  Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid() || ::fsync(fd.get()) != 0) return fail("failed to sync " + p + ": " + errstr(errno));
  return {};
}

struct Kernel {
  std::string version, vmlinuz, initrd;
};

Result<Kernel> find_kernel(GuestTree& tree) {
  PB_ASSIGN(auto names, tree.list("/boot"));
  Kernel best;
  for (auto& n : names) {
    if (n.rfind("vmlinuz-", 0) != 0) continue;
    PB_ASSIGN(auto link, tree.readlink("/boot/" + n));
    if (link) continue;
    std::string v = n.substr(8);
    if (v.ends_with(".old")) continue;
    if (best.version.empty() || version_less(best.version, v)) best.version = v;
  }
  if (best.version.empty()) return fail("failed to make the image bootable: no kernel (/boot/vmlinuz-*) in the snapshot");
  best.vmlinuz = "/boot/vmlinuz-" + best.version;
  for (auto cand : {"/boot/initrd.img-" + best.version, "/boot/initramfs-" + best.version + ".img"})
    if (tree.exists(cand)) best.initrd = cand;
  return best;
}

std::string grub_cfg(const Kernel& k, const std::string& uuid, const std::vector<std::string>& cmdline) {
  std::string args = "root=UUID=" + uuid + " ro";
  for (auto& a : cmdline) args += " " + a;
  std::string s =
      "# Written by planb-convert for the rescue image (root file system UUID " + uuid + ").\n"
      "set default=0\nset timeout=1\n"
      "serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\n"
      "insmod part_msdos\ninsmod ext2\n"
      "search --no-floppy --fs-uuid --set=root " + uuid + "\n"
      "menuentry 'Plan B rescue image (" + k.version + ")' {\n"
      "\tinsmod part_msdos\n\tinsmod ext2\n"
      "\tsearch --no-floppy --fs-uuid --set=root " + uuid + "\n"
      "\tlinux " + k.vmlinuz + " " + args + "\n";
  if (!k.initrd.empty()) s += "\tinitrd " + k.initrd + "\n";
  s += "}\n";
  return s;
}

// guestfish string quoting.
std::string gf_quote(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o + "\"";
}


// GRUB for BIOS from the Plan B server's own grub-pc-bin, without running any
// guest code and without mounting anything: its modules go into the staging
// tree's /boot/grub/i386-pc (before mke2fs), then boot.img goes into the MBR
// and a core.img (grub-mkimage, finding the root by UUID) into the gap after
// it, as grub-bios-setup does for an embedded core image.
const char* kGrubDir = "/usr/lib/grub/i386-pc";

Status copy_grub_modules(GuestTree& tree) {
  if (!path_exists(std::string(kGrubDir) + "/boot.img"))
    return fail(std::string("failed to install the bootloader: ") + kGrubDir + " missing (install grub-pc-bin)");
  // The guest's own modules belong to its GRUB version; the core image is ours.
  PB_ASSIGN(bool had, tree.remove("/boot/grub/i386-pc"));
  (void)had;
  PB_TRY(tree.mkdirs("/boot/grub/i386-pc", 0755));
  DIR* d = ::opendir(kGrubDir);
  if (!d) return fail(std::string("failed to read ") + kGrubDir + ": " + errstr(errno));
  std::vector<std::string> names;
  while (auto* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n.ends_with(".mod") || n.ends_with(".lst")) names.push_back(n);
  }
  ::closedir(d);
  for (auto& n : names) {
    PB_ASSIGN(std::string data, read_file(std::string(kGrubDir) + "/" + n));
    PB_TRY(tree.write("/boot/grub/i386-pc/" + n, data, 0644));
  }
  return {};
}

Status embed_grub(const std::string& raw, const std::string& uuid, const std::string& work, const std::string& err) {
  std::string early = work + "/grub-early.cfg", core = work + "/core.img";
  PB_TRY(write_file_atomic(early, "search.fs_uuid " + uuid + " root\nset prefix=($root)/boot/grub\n"));
  PB_TRY(run_tool({"grub-mkimage", "-O", "i386-pc", "-o", core, "-c", early, "-p", "/boot/grub", "biosdisk", "part_msdos",
                   "ext2", "search_fs_uuid"},
                  "make the GRUB core image (grub-mkimage)", err));
  PB_ASSIGN(std::string boot, read_file(std::string(kGrubDir) + "/boot.img"));
  PB_ASSIGN(std::string img, read_file(core));
  if (boot.size() != 512) return fail("failed to install the bootloader: boot.img is not 512 bytes");
  if (img.size() > (2048 - 1) * 512) return fail("failed to install the bootloader: core.img does not fit before the partition");
  // boot.img's defaults already say: core image at sector 1, boot drive from
  // the BIOS; grub-mkimage filled in the core image's length. As grub-bios-setup
  // does for hard disks, the floppy drive check becomes two NOPs.
  boot[0x66] = char(0x90);
  boot[0x67] = char(0x90);
  Fd fd(::open(raw.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return fail("failed to open " + raw + ": " + errstr(errno));
  // Code only: the partition table (from 446) and the signature stay sfdisk's.
  if (::pwrite(fd.get(), boot.data(), 440, 0) != 440 || ::pwrite(fd.get(), img.data(), img.size(), 512) != ssize_t(img.size()))
    return fail("failed to write the bootloader to " + raw + ": " + errstr(errno));
  return {};
}

}  // namespace

std::string builtin_overlay_dir() {
  if (const char* e = std::getenv("PLANB_OVERLAYS"); e && *e) return e;
  std::string bin = self_dir();
  // The source tree's overlays/ (this file is lib/convert.cpp in it), for
  // binaries run from a build directory.
  std::string src = dirname_of(dirname_of(__FILE__)) + "/overlays";
  for (auto cand : {bin + "/../share/planb/overlays", src})
    if (path_exists(cand)) return cand;
  return src;
}

Result<ConvertResult> convert_snapshot(const ConvertOptions& opt) {
  auto t_all = Clock::now();
  ConvertResult res;
  res.host = opt.host;
  PB_TRY(validate_host_name(opt.host));
  const std::string server = opt.server;

  // Everything that can be refused is checked before anything is written.
  PB_ASSIGN(auto overlays, load_overlays(opt.overlay_dirs));
  PB_ASSIGN(Store store, Store::open(server + "/store", false));
  PB_TRY(store.require_host(opt.host));
  uint64_t seq = opt.snapshot;
  if (seq == 0) {
    PB_ASSIGN(auto ref, store.read_ref(opt.host, "candidate"));
    if (!ref)
      return make_error(kExitNotFound, "failed to find the candidate of host " + opt.host +
                                           ": no candidate ref (assemble a bundle first, or give --snapshot)");
    seq = ref->sequence;
  }
  res.sequence = seq;
  std::string out = opt.output.empty() ? server + "/images/" + opt.host + "/" + std::to_string(seq) + "/disk.qcow2"
                                       : opt.output;
  std::string out_dir = dirname_of(out);
  res.image = out;
  res.explain_path = opt.output.empty() ? out_dir + "/explain.json" : out + ".explain.json";
  if (path_exists(out) && !opt.force)
    return make_error(kExitExists, "failed to convert snapshot " + std::to_string(seq) + " of " + opt.host + ": " + out +
                                       " exists (use --force to replace it)");
  PB_ASSIGN(Manifest m, store.load_manifest(opt.host, seq));

  // A work directory beside the output (same file system, so the image is
  // renamed into place), named with our pid so a later run removes it when we
  // are gone; one convert per output directory at a time.
  PB_TRY(mkdir_p(out_dir));
  PB_ASSIGN(FileLock lock, FileLock::acquire(out_dir + "/.convert.lock", true, false, "the image directory " + out_dir));
  clean_stale(out_dir);
  std::string work = out_dir + "/.convert-" + std::to_string(seq) + "-" + std::to_string(::getpid());
  PB_TRY(mkdir_p(work, 0700));
  Cleanup cleanup{work, opt.keep_work};
  // Scratch space for the staging tree and the raw disk: memory (/dev/shm)
  // when both fit comfortably, so writing and deleting them costs no disk I/O;
  // else the work directory.
  std::string scratch = work;
  std::string shm = opt.scratch.empty() ? "/dev/shm" : opt.scratch;
  if (opt.scratch != "-" && path_exists(shm)) {
    clean_stale(shm);
    uint64_t need = m.header.total_bytes * 5 / 2 + (512ull << 20);
    struct statvfs vs;
    uint64_t avail = 0;
    if (::statvfs(shm.c_str(), &vs) == 0) avail = uint64_t(vs.f_bavail) * vs.f_frsize;
    if (opt.scratch.empty()) avail = std::min(avail, mem_available() / 2);
    if (need <= avail) {
      scratch = shm + "/.convert-" + std::to_string(seq) + "-" + std::to_string(::getpid());
      PB_TRY(mkdir_p(scratch, 0700));
    } else if (!opt.scratch.empty()) {
      res.warnings.push_back("scratch " + shm + " has " + human_bytes(avail) + " free, " + human_bytes(need) +
                             " needed: using " + work);
    }
  }
  Cleanup scratch_cleanup{scratch, opt.keep_work || scratch == work};
  std::string staging = scratch + "/root", err = work + "/tool.err";

  PB_ASSIGN(std::string agent_pub, test_agent_key(server + "/keys", work));

  // 1. Materialize.
  auto t = Clock::now();
  RestoreOptions ro;
  ro.dest = staging;
  ro.paths = {""};
  ro.progress = opt.progress;
  ro.fresh = true;
  PB_ASSIGN(RestoreResult rr, restore_entries(store, m, ro));
  res.entries = rr.entries;
  for (auto& w : rr.warnings) res.warnings.push_back(w);
  res.timings.emplace_back("materialize", since(t));

  // 2. Overlays.
  t = Clock::now();
  PB_ASSIGN(GuestTree tree, GuestTree::open(staging));
  PB_ASSIGN(res.facts, read_guest_facts(tree));
  res.root_uuid = new_uuid();
  std::map<std::string, std::string> vars = {{"root_uuid", res.root_uuid}, {"host", opt.host},
                                             {"snapshot", std::to_string(seq)}, {"test_agent_pub", agent_pub}};
  BootPlan plan;
  for (auto& o : overlays) {
    OverlayReport rep;
    rep.name = o.name;
    rep.file = o.file;
    rep.description = o.description;
    auto mr = match_overlay(o, res.facts, tree);
    if (!mr.matched) {
      rep.reason = mr.reason;
      res.overlays.push_back(std::move(rep));
      continue;
    }
    rep.applied = true;
    PB_TRY(apply_overlay(o, tree, vars, plan, rep.changes));
    res.overlays.push_back(std::move(rep));
  }
  res.timings.emplace_back("overlays", since(t));

  // 3. Initramfs: the guest's own driver modules appended (no guest code runs).
  t = Clock::now();
  if (!plan.initramfs_modules.empty()) {
    PB_ASSIGN(res.initramfs, add_initramfs_modules(tree, plan.initramfs_modules));
    if (res.initramfs.empty())
      res.warnings.push_back("no initramfs with matching /lib/modules in /boot: drivers not added");
  }
  Kernel kernel;
  if (!plan.bootloader.empty()) {
    PB_ASSIGN(kernel, find_kernel(tree));
    res.kernel = kernel.version;
    PB_ASSIGN(auto old, tree.read("/boot/grub/grub.cfg"));
    std::string cfg = grub_cfg(kernel, res.root_uuid, plan.cmdline);
    PB_TRY(tree.write("/boot/grub/grub.cfg", cfg, 0644));
    PB_TRY(copy_grub_modules(tree));
    std::string src;
    for (auto& r : res.overlays)
      for (auto& c : r.changes)
        if (c.action == "bootloader") src = r.name;
    for (auto& r : res.overlays)
      if (r.name == src)
        r.changes.push_back({r.name, "bootloader", "/boot/grub/grub.cfg", old ? "the server's own (other disk)" : "absent",
                             "boots " + kernel.vmlinuz + " root=UUID=" + res.root_uuid});
  }
  res.timings.emplace_back("initramfs", since(t));

  // 4. File system: mke2fs -d straight into the partition of the raw disk.
  t = Clock::now();
  PB_ASSIGN(TreeSize ts, tree_size(staging));
  res.tree_bytes = ts.bytes;
  const uint64_t MiB = 1 << 20;
  uint64_t fs_mib = opt.size_mib ? opt.size_mib : std::max<uint64_t>(1024, (ts.bytes * 5 / 4 + ts.inodes * 256) / MiB + 512);
  uint64_t inodes = std::max<uint64_t>(ts.inodes * 2, fs_mib * MiB / 16384);
  res.fs_bytes = fs_mib * MiB;
  std::string raw = scratch + "/disk.raw";
  {
    Fd fd(::open(raw.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.valid() || ::ftruncate(fd.get(), off_t((fs_mib + 1) * MiB)) != 0)
      return fail("failed to create " + raw + ": " + errstr(errno));
  }
  PB_TRY(run_tool({"mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-U", res.root_uuid, "-L", "rescue-root", "-m", "1",
                   "-N", std::to_string(inodes), "-E", "offset=" + std::to_string(MiB) + ",nodiscard,lazy_itable_init=1",
                   "-d", staging, raw, std::to_string(fs_mib * 1024) + "k"},
                  "make the file system (mke2fs -d)", err));
  res.timings.emplace_back("mke2fs", since(t));
  // The staging tree is not needed any more: remove it while the disk is finished.
  std::thread remover;
  if (!opt.keep_work)
    remover = std::thread([staging] { (void)run_tool({"rm", "-rf", "--one-file-system", staging}, "remove " + staging, "/dev/null"); });
  struct Join {
    std::thread& t;
    ~Join() {
      if (t.joinable()) t.join();
    }
  } join{remover};

  // 5. Partition table and bootloader (host GRUB, i386-pc, into the MBR gap).
  t = Clock::now();
  {
    std::string table = "label: dos\nstart=2048, size=" + std::to_string(fs_mib * MiB / 512) + ", type=83, bootable\n";
    std::string tfile = work + "/sfdisk.in";
    PB_TRY(write_file_atomic(tfile, table));
    PB_TRY(run_tool({"sh", "-c", "exec sfdisk -q --no-reread --no-tell-kernel \"$1\" <\"$2\"", "sh", raw, tfile},
                    "partition the disk (sfdisk)", err));
  }
  if (plan.bootloader == "grub-bios") PB_TRY(embed_grub(raw, res.root_uuid, work, err));
  res.timings.emplace_back("partition+grub", since(t));

  // 6. What must run inside the guest: one libguestfs session (sandboxed VM).
  if (!plan.guest_commands.empty()) {
    t = Clock::now();
    std::string script = work + "/guest.gf";
    std::string text = "run\nmount /dev/sda1 /\n";
    for (auto& [o, c] : plan.guest_commands) text += "sh " + gf_quote(c) + "\n";
    PB_TRY(write_file_atomic(script, text));
    PB_TRY(run_tool({"guestfish", "--rw", "--format=raw", "-a", raw, "-f", script},
                    "run the guest commands in a libguestfs appliance (guestfish)", err));
    res.timings.emplace_back("guest", since(t));
  }

  // 7. qcow2, made durable, then renamed into place (with explain.json first).
  t = Clock::now();
  std::string tmp_img = work + "/disk.qcow2";
  std::vector<std::string> qargs = {"qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2"};
  if (opt.compress) qargs.insert(qargs.end(), {"-c", "-o", "compression_type=zstd"});
  qargs.insert(qargs.end(), {raw, tmp_img});
  PB_TRY(run_tool(qargs, "write the qcow2 image", err));
  PB_TRY(fsync_path(tmp_img));
  struct stat st;
  if (::stat(tmp_img.c_str(), &st) == 0) res.image_bytes = uint64_t(st.st_size);
  res.timings.emplace_back("qcow2", since(t));
  res.seconds = since(t_all);
  PB_TRY(write_file_atomic(res.explain_path, explain_json(res) + "\n"));
  if (::rename(tmp_img.c_str(), out.c_str()) != 0) return fail("failed to rename the image to " + out + ": " + errstr(errno));
  PB_TRY(fsync_dir(out_dir));
  if (opt.keep_work) res.warnings.push_back("work directory kept: " + work);
  res.seconds = since(t_all);
  return res;
}

std::string explain_json(const ConvertResult& r) {
  std::vector<std::string> ovs;
  for (auto& o : r.overlays) {
    std::vector<std::string> ch;
    for (auto& c : o.changes)
      ch.push_back(JsonObject().add("action", c.action).add("file", c.file).add("before", c.before).add("after", c.after).str());
    ovs.push_back(JsonObject()
                      .add("name", o.name)
                      .add("file", o.file)
                      .add("description", o.description)
                      .add("applied", o.applied)
                      .add("reason", o.reason)
                      .add_raw("changes", json_array(ch))
                      .str());
  }
  std::vector<std::string> irs;
  for (auto& u : r.initramfs) {
    std::vector<std::string> added, builtin, missing;
    for (auto& s : u.added) added.push_back(json_escape(s));
    for (auto& s : u.builtin) builtin.push_back(json_escape(s));
    for (auto& s : u.missing) missing.push_back(json_escape(s));
    irs.push_back(JsonObject()
                      .add("initrd", u.initrd)
                      .add("kernel", u.version)
                      .add_raw("added", json_array(added))
                      .add_raw("builtin", json_array(builtin))
                      .add_raw("missing", json_array(missing))
                      .add("bytes_before", u.bytes_before)
                      .add("bytes_appended", u.bytes_appended)
                      .str());
  }
  JsonObject tj;
  for (auto& [k, v] : r.timings) tj.add(k, v);
  std::vector<std::string> warns;
  for (auto& w : r.warnings) warns.push_back(json_escape(w));
  return JsonObject()
      .add("format", 1)
      .add("host", r.host)
      .add("snapshot", r.sequence)
      .add("image", r.image)
      .add("image_bytes", r.image_bytes)
      .add("fs_bytes", r.fs_bytes)
      .add("tree_bytes", r.tree_bytes)
      .add("entries", r.entries)
      .add("root_uuid", r.root_uuid)
      .add("kernel", r.kernel)
      .add_raw("guest", JsonObject()
                            .add("id", r.facts.id)
                            .add("version_id", r.facts.version_id)
                            .add("pretty_name", r.facts.pretty_name)
                            .str())
      .add_raw("overlays", json_array(ovs))
      .add_raw("initramfs", json_array(irs))
      .add_raw("timings", tj.str())
      .add("seconds", r.seconds)
      .add_raw("warnings", json_array(warns))
      .str();
}

std::string explain_text(const ConvertResult& r) {
  std::ostringstream os;
  os << "guest: " << (r.facts.pretty_name.empty() ? r.facts.id : r.facts.pretty_name) << "; root UUID " << r.root_uuid
     << "; kernel " << (r.kernel.empty() ? "-" : r.kernel) << "\n";
  for (auto& o : r.overlays) {
    if (!o.applied) {
      os << "overlay " << o.name << ": skipped (" << o.reason << ")\n";
      continue;
    }
    os << "overlay " << o.name << ": applied (" << o.file << ")\n";
    for (auto& c : o.changes) {
      os << "  " << c.action << " " << c.file << ": ";
      if (!c.before.empty()) os << c.before << " -> ";
      os << c.after << "\n";
    }
  }
  for (auto& u : r.initramfs) {
    os << "initramfs " << u.initrd << ": appended " << u.added.size() << " modules (";
    for (size_t i = 0; i < u.added.size(); ++i) os << (i ? " " : "") << u.added[i];
    os << "), " << u.bytes_appended << " bytes";
    if (!u.builtin.empty()) os << "; built in: " << u.builtin.size();
    if (!u.missing.empty()) {
      os << "; not in this kernel:";
      for (auto& m : u.missing) os << " " << m;
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace planb
