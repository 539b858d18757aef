#include "failback_disk.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "fsutil.hpp"
#include "json.hpp"

namespace planb {

namespace {
using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

Result<json> parse_json(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const std::exception& e) {
    return fail("failed to read " + what + ": " + e.what());
  }
}

// A directory or a file (the FUSE export's mount point) mounted over: another
// device than its parent directory. A dead FUSE server's mount fails lstat
// with ENOTCONN: mounted too.
bool is_mountpoint(const std::string& p) {
  struct stat a, b;
  if (::lstat(p.c_str(), &a) != 0) return errno == ENOTCONN;
  std::string parent = p.substr(0, p.find_last_of('/'));
  if (parent.empty()) parent = "/";
  if (::lstat(parent.c_str(), &b) != 0) return false;
  return a.st_dev != b.st_dev;
}

void quiet_umount(const std::string& p) {
  if (::umount2(p.c_str(), 0) != 0) ::umount2(p.c_str(), MNT_DETACH);
}

// Loop devices whose backing file is `file` (losetup -j).
std::vector<std::string> loops_of(const std::string& file) {
  std::vector<std::string> out;
  auto r = fb_run_tool({"losetup", "-j", file}, "list loop devices");
  if (!r.ok()) return out;
  size_t pos = 0;
  while (pos < r->size()) {
    size_t nl = r->find('\n', pos);
    std::string line = r->substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? r->size() : nl + 1;
    auto c = line.find(':');
    if (c != std::string::npos && line.rfind("/dev/", 0) == 0) out.push_back(line.substr(0, c));
  }
  return out;
}

void stop_pid_file(const std::string& pidfile) {
  auto t = read_file(pidfile);
  if (!t.ok()) return;
  long pid = std::atol(t->c_str());
  if (pid <= 1) return;
  if (::kill(pid_t(pid), SIGTERM) != 0) return;
  for (int i = 0; i < 100 && process_alive(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (process_alive(pid)) ::kill(pid_t(pid), SIGKILL);
  for (int i = 0; i < 40 && process_alive(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

}  // namespace

Result<std::string> fb_run_tool(const std::vector<std::string>& argv, const std::string& what) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return fail("failed to " + what + ": pipe: " + errstr(errno));
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return fail("failed to " + what + ": pipe: " + errstr(errno));
  }
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return fail("failed to " + what + ": fork: " + errstr(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
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
  ::close(err[1]);
  std::string o, e;
  struct pollfd p[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(p[i].fd, buf, sizeof buf);
      if (n > 0) (i ? e : o).append(buf, size_t(n));
      else if (n == 0 || errno != EINTR) {
        ::close(p[i].fd);
        p[i].fd = -1;
        --open_fds;
      }
    }
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return o;
  e = trim(e);
  if (e.size() > 600) e = "..." + e.substr(e.size() - 600);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 127 && e.find("No such file") != std::string::npos)
    return fail("failed to " + what + ": " + argv[0] + " is not installed (scripts/deps test)");
  std::string how = WIFEXITED(st) ? "exit status " + std::to_string(WEXITSTATUS(st))
                                  : "killed by signal " + std::to_string(WTERMSIG(st));
  return fail("failed to " + what + ": " + argv[0] + " " + how + (e.empty() ? "" : ": " + e));
}

// ---------------------------------------------------------------- QMP

QmpClient::~QmpClient() {
  if (fd_ >= 0) ::close(fd_);
}

Status QmpClient::connect(const std::string& path, int timeout_ms) {
  struct sockaddr_un a {};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return fail("failed to connect to QMP socket " + path + ": path too long");
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail("failed to connect to QMP socket " + path + ": " + errstr(errno));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      fd_ = fd;
      break;
    }
    int e = errno;
    ::close(fd);
    if (Clock::now() > deadline) return fail("failed to connect to QMP socket " + path + ": " + errstr(e));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  PB_ASSIGN(std::string greeting, read_line(timeout_ms));
  if (greeting.find("\"QMP\"") == std::string::npos) return fail("failed to talk QMP on " + path + ": unexpected greeting");
  PB_TRY(execute("qmp_capabilities", "", timeout_ms));
  return {};
}

Result<std::string> QmpClient::read_line(int timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string l = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return l;
    }
    int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) return fail("failed to read from QMP: timed out");
    struct pollfd p {fd_, POLLIN, 0};
    int r = ::poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char b[65536];
    ssize_t n = ::read(fd_, b, sizeof b);
    if (n <= 0) return fail("failed to read from QMP: connection closed");
    buf_.append(b, size_t(n));
  }
}

Result<std::string> QmpClient::execute(const std::string& cmd, const std::string& args, int timeout_ms) {
  if (fd_ < 0) return fail("failed to send QMP " + cmd + ": not connected");
  std::string line = "{\"execute\":" + json_escape(cmd) + (args.empty() ? "" : ",\"arguments\":" + args) + "}\n";
  PB_TRY(write_all(fd_, line.data(), line.size(), "QMP socket"));
  for (;;) {
    PB_ASSIGN(std::string l, read_line(timeout_ms));
    PB_ASSIGN(json j, parse_json(l, "QMP reply"));
    if (j.contains("event")) continue;
    if (j.contains("error")) {
      std::string d = j["error"].value("desc", std::string("unknown error"));
      return fail("failed to run QMP " + cmd + ": " + d);
    }
    if (j.contains("return")) return j["return"].dump();
  }
}

bool process_alive(int64_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid_t(pid), 0) != 0 && errno == ESRCH) return false;
  // A zombie child of ours counts as gone.
  auto st = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (st.ok()) {
    auto p = st->rfind(')');
    if (p != std::string::npos && p + 2 < st->size() && (*st)[p + 2] == 'Z') return false;
  }
  return true;
}

Result<std::string> freeze_active_layer(const std::string& qmp_socket, const std::string& active,
                                        const std::string& new_layer) {
  QmpClient q;
  PB_TRY(q.connect(qmp_socket, 10000));
  PB_ASSIGN(std::string blocks, q.execute("query-block"));
  PB_ASSIGN(json jb, parse_json(blocks, "QMP query-block"));
  std::string node, device;
  std::error_code ec;
  auto canon = [&](const std::string& p) {
    auto c = std::filesystem::weakly_canonical(p, ec);
    return ec ? p : c.string();
  };
  std::string want = canon(active);
  std::vector<std::string> seen;
  for (auto& b : jb) {
    if (!b.contains("inserted")) continue;
    auto& in = b["inserted"];
    std::string file = in.value("file", std::string());
    seen.push_back(file);
    if (canon(file) == want) {
      node = in.value("node-name", std::string());
      device = b.value("device", std::string());
    }
  }
  if (node.empty()) {
    std::string list;
    for (auto& s : seen) list += (list.empty() ? "" : ", ") + s;
    return fail("failed to find the VM's disk " + active + " in QMP query-block (its active layers: " +
                (list.empty() ? "none" : list) + ")");
  }
  std::string args = JsonObject()
                         .add("node-name", node)
                         .add("snapshot-file", new_layer)
                         .add("snapshot-node-name", "planb-fb-" + std::to_string(::getpid()) + "-" +
                                                        std::to_string(Clock::now().time_since_epoch().count() % 1000000))
                         .add("format", "qcow2")
                         .add("mode", "absolute-paths")
                         .str();
  PB_TRY(q.execute("blockdev-snapshot-sync", args, 60000));
  return node;
}

Result<std::string> power_off_vm(const std::string& qmp_socket, int64_t pid, int grace_s) {
  if (!process_alive(pid)) return std::string("already stopped");
  QmpClient q;
  bool have_qmp = q.connect(qmp_socket, 5000).ok();
  if (have_qmp && q.execute("system_powerdown").ok()) {
    auto deadline = Clock::now() + std::chrono::seconds(grace_s);
    while (Clock::now() < deadline) {
      if (!process_alive(pid)) return std::string("powerdown");
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  if (have_qmp) {
    (void)q.execute("quit", "", 5000);
    for (int i = 0; i < 50 && process_alive(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!process_alive(pid)) return std::string("quit");
  }
  ::kill(pid_t(pid), SIGKILL);
  for (int i = 0; i < 50 && process_alive(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (process_alive(pid)) return fail("failed to stop the rescue VM (pid " + std::to_string(pid) + ")");
  return std::string("killed");
}

// ---------------------------------------------------------------- mounting

void MountedDisk::cleanup_stale(const std::string& work) {
  if (!path_exists(work)) return;
  std::error_code ec;
  for (auto& d : std::filesystem::directory_iterator(work, ec)) {
    std::string p = d.path().string();
    if (d.is_directory(ec) && is_mountpoint(p)) quiet_umount(p);
  }
  for (auto& l : loops_of(work + "/disk.raw")) (void)fb_run_tool({"losetup", "-d", l}, "detach " + l);
  if (auto shm = read_file(work + "/shm-path"); shm.ok() && shm->rfind("/dev/shm/planb-failback-", 0) == 0) {
    for (auto& l : loops_of(*shm)) (void)fb_run_tool({"losetup", "-d", l}, "detach " + l);
    ::unlink(shm->c_str());
  }
  stop_pid_file(work + "/qsd.pid");
  if (is_mountpoint(work + "/disk.raw")) quiet_umount(work + "/disk.raw");
  // Never delete through a mount that is still there.
  for (auto& d : std::filesystem::directory_iterator(work, ec))
    if (is_mountpoint(d.path().string())) return;
  std::filesystem::remove_all(work, ec);
}

Result<std::unique_ptr<MountedDisk>> MountedDisk::open(const std::string& image, const std::string& work, bool copy) {
  auto t0 = Clock::now();
  cleanup_stale(work);
  PB_TRY(mkdir_p(work, 0700));
  std::unique_ptr<MountedDisk> m(new MountedDisk());
  m->work_ = work;
  // Format by magic, never by probing.
  std::string fmt = "raw";
  {
    Fd fd(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return make_error(kExitNotFound, "failed to open disk image " + image + ": " + errstr(errno));
    char magic[4] = {};
    if (::pread(fd.get(), magic, 4, 0) == 4 && std::memcmp(magic, "QFI\xfb", 4) == 0) fmt = "qcow2";
  }
  std::error_code ec;
  std::string abs_image = std::filesystem::absolute(image, ec).string();
  std::string scratch = work + "/scratch.qcow2", raw = work + "/disk.raw";
  if (copy) {
    // A sparse raw copy of the whole chain: the throwaway layer and the block
    // device at once. In memory when the allocated size fits.
    uint64_t need = 0;
    if (auto info = fb_run_tool({"qemu-img", "info", "--force-share", "--output=json", "--backing-chain", abs_image},
                                "read " + image);
        info.ok()) {
      try {
        auto j = json::parse(*info);
        for (auto& l : j) need += l.value("actual-size", uint64_t(0));
      } catch (...) {
      }
    }
    uint64_t avail = 0;
    if (auto mi = read_file("/proc/meminfo"); mi.ok()) {
      auto p = mi->find("MemAvailable:");
      if (p != std::string::npos) avail = std::strtoull(mi->c_str() + p + 13, nullptr, 10) * 1024;
    }
    if (need && need < avail / 4 && path_exists("/dev/shm")) {
      raw = "/dev/shm/planb-failback-" + std::to_string(::getpid()) + "-" +
            std::to_string(Clock::now().time_since_epoch().count() % 1000000000) + ".raw";
      PB_TRY(write_file_atomic(work + "/shm-path", raw, 0600));
    }
    PB_TRY(fb_run_tool({"qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", "-t", "unsafe", abs_image, raw},
                       "copy " + image + " to a raw scratch file"));
  } else {
    PB_TRY(fb_run_tool({"qemu-img", "create", "-q", "-f", "qcow2", "-b", abs_image, "-F", fmt, scratch},
                       "create a throwaway layer on " + image));
    { Fd f(::open(raw.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600)); }
    // JSON syntax: no escaping of commas in paths.
    std::string file_node = JsonObject().add("driver", "file").add("filename", scratch).add("node-name", "f").str();
    std::string fmt_node = JsonObject().add("driver", "qcow2").add("file", "f").add("node-name", "q").str();
    std::string exp = JsonObject()
                          .add("type", "fuse")
                          .add("id", "e")
                          .add("node-name", "q")
                          .add("mountpoint", raw)
                          .add("writable", true)
                          .str();
    PB_TRY(fb_run_tool({"qemu-storage-daemon", "--blockdev", file_node, "--blockdev", fmt_node, "--export", exp,
                        "--daemonize", "--pidfile", work + "/qsd.pid"},
                       "export " + image + " with qemu-storage-daemon"));
  }
  // Partitions: sfdisk's table, or the whole disk as one file system.
  struct Part {
    int n;
    uint64_t start, size;
  };
  std::vector<Part> parts;
  auto sf = fb_run_tool({"sfdisk", "--json", raw}, "read the partition table of " + image);
  if (sf.ok()) {
    PB_ASSIGN(json j, parse_json(*sf, "sfdisk --json"));
    uint64_t ss = j["partitiontable"].value("sectorsize", uint64_t(512));
    int n = 0;
    for (auto& p : j["partitiontable"]["partitions"]) {
      ++n;
      std::string type = p.value("type", std::string());
      if (type == "5" || type == "f" || type == "85" || type == "82") continue;  // extended, swap
      parts.push_back({n, p.value("start", uint64_t(0)) * ss, p.value("size", uint64_t(0)) * ss});
    }
  } else {
    struct stat st;
    if (::stat(raw.c_str(), &st) != 0) return fail("failed to stat " + raw + ": " + errstr(errno));
    parts.push_back({0, 0, uint64_t(st.st_size)});
  }
  // Mount each partition that holds a known file system; keep the root (the
  // one with /etc/fstab, else the largest).
  struct Mounted {
    int n;
    std::string dir, type, loop;
    uint64_t size;
    bool has_etc;
  };
  std::vector<Mounted> mounted;
  for (auto& p : parts) {
    PB_ASSIGN(std::string loop, fb_run_tool({"losetup", "-f", "--show", "-o", std::to_string(p.start), "--sizelimit",
                                             std::to_string(p.size), raw},
                                            "attach a loop device to " + image));
    loop = trim(loop);
    m->loops_.push_back(loop);
    auto t = fb_run_tool({"blkid", "-p", "-o", "value", "-s", "TYPE", loop}, "probe partition");
    std::string type = t.ok() ? trim(*t) : "";
    if (type != "ext2" && type != "ext3" && type != "ext4" && type != "xfs" && type != "btrfs") continue;
    std::string dir = work + "/p" + std::to_string(p.n);
    PB_TRY(mkdir_p(dir, 0700));
    // Read-only mount; the loop device is writable so a dirty journal is
    // replayed into the throwaway layer.
    if (::mount(loop.c_str(), dir.c_str(), type.c_str(), MS_RDONLY | MS_NODEV | MS_NOSUID | MS_NOEXEC, nullptr) != 0)
      return fail("failed to mount partition " + std::to_string(p.n) + " (" + type + ") of " + image + ": " +
                  errstr(errno));
    mounted.push_back({p.n, dir, type, loop, p.size, path_exists(dir + "/etc/fstab")});
  }
  if (mounted.empty()) return fail("failed to find a file system (ext2/3/4, xfs, btrfs) on " + image);
  size_t best = 0;
  for (size_t i = 1; i < mounted.size(); ++i) {
    auto& a = mounted[i];
    auto& b = mounted[best];
    if ((a.has_etc && !b.has_etc) || (a.has_etc == b.has_etc && a.size > b.size)) best = i;
  }
  for (size_t i = 0; i < mounted.size(); ++i)
    if (i != best) quiet_umount(mounted[i].dir);
  m->root_ = mounted[best].dir;
  m->fs_type_ = mounted[best].type;
  m->partition_ = mounted[best].n;
  m->seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
  return m;
}

void MountedDisk::teardown() {
  if (work_.empty()) return;
  if (!root_.empty() && is_mountpoint(root_)) quiet_umount(root_);
  for (auto& l : loops_) (void)fb_run_tool({"losetup", "-d", l}, "detach " + l);
  loops_.clear();
  cleanup_stale(work_);
  work_.clear();
}

MountedDisk::~MountedDisk() { teardown(); }

}  // namespace planb
