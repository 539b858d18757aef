// Failback, the sending side (lib/failback.hpp).
#include "failback.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "bundle.hpp"
#include "capture.hpp"
#include "cli.hpp"
#include "failback_disk.hpp"
#include "fsutil.hpp"
#include "json.hpp"
#include "progress.hpp"
#include "server_layout.hpp"
#include "store.hpp"

namespace planb {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

constexpr const char* kDeliveryHost = "delivery";

struct HostState {
  std::string name, image, overlay, qmp, state, backend;
  uint64_t sequence = 0;
  int64_t pid = 0;
};

struct Invocation {
  std::string id, dir;
  HostState host;
};

Result<json> read_json(const std::string& path) {
  PB_ASSIGN(std::string text, read_file(path));
  try {
    return json::parse(text);
  } catch (const std::exception& e) {
    return make_error(kExitCorrupt, "failed to read " + path + ": " + e.what());
  }
}

std::string str(const json& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<Invocation> find_invocation(const ServerLayout& s, const std::string& host, const std::string& want) {
  std::string base = s.root + "/invocations";
  std::vector<std::string> ids;
  if (!want.empty()) {
    if (want.find('/') != std::string::npos || want.empty() || want[0] == '.')
      return make_error(kExitUsage, "failed to use invocation id '" + want + "'");
    ids.push_back(want);
  } else {
    std::error_code ec;
    for (auto& d : std::filesystem::directory_iterator(base, ec))
      if (d.is_directory(ec)) ids.push_back(d.path().filename().string());
  }
  Invocation best;
  std::filesystem::file_time_type best_t{};
  for (auto& id : ids) {
    std::string sp = base + "/" + id + "/state.json";
    if (!path_exists(sp)) {
      if (!want.empty()) return make_error(kExitNotFound, "failed to find invocation " + id + ": no " + sp);
      continue;
    }
    PB_ASSIGN(json j, read_json(sp));
    if (!j.contains("hosts") || !j["hosts"].is_array()) continue;
    for (auto& h : j["hosts"]) {
      if (str(h, "name") != host) continue;
      std::error_code ec;
      auto t = std::filesystem::last_write_time(sp, ec);
      if (!best.id.empty() && t <= best_t) continue;
      best_t = t;
      best.id = id;
      best.dir = base + "/" + id;
      best.host.name = host;
      best.host.image = str(h, "image");
      best.host.overlay = str(h, "overlay");
      best.host.qmp = str(h, "qmp");
      best.host.state = str(h, "state");
      best.host.backend = str(j, "backend");
      if (h.contains("vm") && h["vm"].is_object() && !str(h["vm"], "backend").empty()) best.host.backend = str(h["vm"], "backend");
      if (h.contains("sequence") && h["sequence"].is_number()) best.host.sequence = h["sequence"].get<uint64_t>();
      if (h.contains("pid") && h["pid"].is_number()) best.host.pid = h["pid"].get<int64_t>();
    }
  }
  if (best.id.empty())
    return make_error(kExitNotFound, "failed to find host " + host + " in " +
                                         (want.empty() ? "any invocation under " + base : "invocation " + want));
  // Relative paths are relative to the invocation, then the server.
  auto fix = [&](std::string& p, const std::vector<std::string>& roots) {
    if (p.empty() || p[0] == '/') return;
    for (auto& r : roots)
      if (path_exists(r + "/" + p)) {
        p = r + "/" + p;
        return;
      }
    p = roots.front() + "/" + p;
  };
  fix(best.host.image, {best.dir, s.root, s.repository(host)});
  fix(best.host.overlay, {best.dir, s.root});
  fix(best.host.qmp, {best.dir, s.root});
  if (best.host.image.empty()) return make_error(kExitCorrupt, "failed to read " + best.dir + "/state.json: host " + host + " has no image");
  if (best.host.overlay.empty())
    return make_error(kExitCorrupt, "failed to read " + best.dir + "/state.json: host " + host + " has no overlay");
  return best;
}

// SERVER/invocations/ID/failback/HOST/state.json (doc/formats.md "Failback").
struct FbState {
  std::string active_layer;
  std::vector<std::string> layers;  // added by failback, oldest first
  uint64_t base_snapshot = 0;
  std::map<std::string, uint64_t> delivered;  // target -> failback store sequence
  std::map<std::string, bool> final_done;
  int passes = 0;
  bool vm_stopped = false;

  static Result<FbState> load(const std::string& path) {
    FbState s;
    if (!path_exists(path)) return s;
    PB_ASSIGN(json j, read_json(path));
    s.active_layer = str(j, "active_layer");
    if (j.contains("layers"))
      for (auto& l : j["layers"]) s.layers.push_back(l.get<std::string>());
    s.base_snapshot = j.value("base_snapshot", uint64_t(0));
    if (j.contains("delivered"))
      for (auto& [k, v] : j["delivered"].items()) s.delivered[k] = v.get<uint64_t>();
    if (j.contains("final_done"))
      for (auto& [k, v] : j["final_done"].items()) s.final_done[k] = v.get<bool>();
    s.passes = j.value("passes", 0);
    s.vm_stopped = j.value("vm_stopped", false);
    return s;
  }
  Status save(const std::string& path) const {
    json j;
    j["format"] = 1;
    j["active_layer"] = active_layer;
    j["layers"] = layers;
    j["base_snapshot"] = base_snapshot;
    j["delivered"] = delivered;
    j["final_done"] = final_done;
    j["passes"] = passes;
    j["vm_stopped"] = vm_stopped;
    return write_file_atomic(path, j.dump(2) + "\n", 0600);
  }
};

// Paths planb-convert changed in the image (explain.json): never failed back.
std::set<std::string> p2v_paths(const ServerLayout& s, const HostState& h, std::vector<std::string>& warnings) {
  std::set<std::string> out;
  std::string ex = s.image_dir(h.name, h.sequence) + "/explain.json";
  if (!h.sequence || !path_exists(ex)) {
    warnings.push_back("no planb-convert explain.json for " + h.name + " snapshot " + std::to_string(h.sequence) +
                       ": paths edited by the P2V conversion are only told apart by comparing with the image");
    return out;
  }
  auto j = read_json(ex);
  if (!j.ok()) {
    warnings.push_back(j.error().message);
    return out;
  }
  auto add = [&](std::string p) {
    while (!p.empty() && p[0] == '/') p.erase(0, 1);
    if (!p.empty()) out.insert(p);
  };
  if (j->contains("overlays"))
    for (auto& o : (*j)["overlays"])
      if (o.contains("changes"))
        for (auto& c : o["changes"]) add(str(c, "file"));
  if (j->contains("initramfs"))
    for (auto& i : (*j)["initramfs"]) add(str(i, "initrd"));
  return out;
}

bool excluded_here(const std::vector<std::string>& pats, const std::string& rel) {
  if (pats.empty()) return false;
  for (size_t pos = 0;;) {
    size_t sl = rel.find('/', pos);
    if (excluded(pats, rel.substr(0, sl))) return true;
    if (sl == std::string::npos) return false;
    pos = sl + 1;
  }
}

Status put_manifest(Store& store, Manifest& m, std::string& bytes_out) {
  bytes_out = encode_manifest(m);
  std::string path = store.manifest_path(m.header.host, m.header.sequence);
  PB_TRY(mkdir_p(dirname_of(path)));
  return write_file_atomic(path, bytes_out);
}

struct Delivery {
  Manifest base, next;
  std::string base_bytes, next_bytes;
  uint64_t changed = 0, deleted = 0;
  std::vector<std::string> skipped;
};

// Both manifests restricted to what changed between a and b (and the
// ancestors and hard-link targets restore needs).
Delivery restrict(const Manifest& a, const Manifest& b, const std::vector<std::string>& excludes,
                  const std::set<std::string>& p2v) {
  Delivery d;
  std::unordered_set<std::string> X;
  size_t i = 0, j = 0;
  auto consider = [&](const Entry* ea, const Entry* eb) {
    const std::string& p = ea ? ea->path : eb->path;
    if (ea && eb && ea->same_metadata(*eb)) return;
    if (p.empty()) return;  // the root's own metadata: left alone
    if (excluded_here(excludes, p)) return;
    if (p2v.count(p)) {
      d.skipped.push_back("/" + p);
      return;
    }
    X.insert(p);
    if (eb) ++d.changed;
    else ++d.deleted;
    if (ea && ea->type == EntryType::Hardlink) X.insert(ea->target);
    if (eb && eb->type == EntryType::Hardlink) X.insert(eb->target);
  };
  while (i < a.entries.size() || j < b.entries.size()) {
    if (j == b.entries.size() || (i < a.entries.size() && path_less(a.entries[i].path, b.entries[j].path)))
      consider(&a.entries[i++], nullptr);
    else if (i == a.entries.size() || path_less(b.entries[j].path, a.entries[i].path))
      consider(nullptr, &b.entries[j++]);
    else
      consider(&a.entries[i++], &b.entries[j++]);
  }
  std::unordered_set<std::string> keep = X;
  keep.insert("");
  for (auto& p : X)
    for (size_t pos = p.find('/'); pos != std::string::npos; pos = p.find('/', pos + 1)) keep.insert(p.substr(0, pos));
  d.base.header = a.header;
  d.next.header = b.header;
  for (auto& e : a.entries)
    if (keep.count(e.path)) d.base.entries.push_back(e);
  for (auto& e : b.entries)
    if (keep.count(e.path)) d.next.entries.push_back(e);
  return d;
}

void finish_header(Manifest& m, uint64_t seq) {
  m.header.host = kDeliveryHost;
  m.header.sequence = seq;
  m.header.entries = m.entries.size();
  m.header.total_bytes = 0;
  for (auto& e : m.entries)
    if (e.type == EntryType::File) m.header.total_bytes += e.size;
}

// ---------------------------------------------------------------- targets

struct SshTarget {
  std::string user_host, path;
  int port = 0;
};

Result<SshTarget> parse_ssh(const std::string& url) {
  // ssh://user@host[:port]/path
  std::string rest = url.substr(6);
  auto sl = rest.find('/');
  if (sl == std::string::npos || sl == 0)
    return make_error(kExitUsage, "failed to parse target " + url + ": expected ssh://user@host[:port]/path");
  SshTarget t;
  std::string auth = rest.substr(0, sl);
  t.path = rest.substr(sl);
  auto colon = auth.rfind(':');
  if (colon != std::string::npos && auth.find(']') == std::string::npos) {
    try {
      t.port = std::stoi(auth.substr(colon + 1));
    } catch (...) {
      return make_error(kExitUsage, "failed to parse target " + url + ": bad port");
    }
    auth = auth.substr(0, colon);
  }
  if (auth.empty() || auth[0] == '-') return make_error(kExitUsage, "failed to parse target " + url + ": bad host");
  t.user_host = auth;
  return t;
}

std::string shell_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) {
    if (c == '\'') o += "'\\''";
    else o += c;
  }
  return o + "'";
}

class Receiver {
 public:
  virtual ~Receiver() = default;
  virtual Result<ReceiveResult> check(const std::string& base, const std::string& next) = 0;
  virtual Result<ReceiveResult> apply(const std::string& base, const std::string& bundle) = 0;
};

class LocalReceiver : public Receiver {
 public:
  LocalReceiver(std::string dir, std::string work, bool force, bool progress) {
    o_.dir = std::move(dir);
    o_.work = std::move(work);
    o_.force = force;
    o_.progress = progress;
  }
  Result<ReceiveResult> check(const std::string& base, const std::string& next) override {
    return failback_receive_check(base, next, o_);
  }
  Result<ReceiveResult> apply(const std::string& base, const std::string& bundle) override {
    return failback_receive_apply(base, bundle, o_);
  }

 private:
  ReceiveOptions o_;
};

Result<ReceiveResult> parse_receive_json(const std::string& text) {
  json j;
  try {
    auto nl = text.find_last_of('{');
    (void)nl;
    j = json::parse(text);
  } catch (const std::exception& e) {
    return fail("failed to read the target's answer: " + std::string(e.what()) + ": " + text.substr(0, 200));
  }
  ReceiveResult r;
  r.files = j.value("files", uint64_t(0));
  r.entries = j.value("entries", uint64_t(0));
  r.deleted = j.value("deleted", uint64_t(0));
  r.bytes = j.value("bytes", uint64_t(0));
  r.seconds = j.value("seconds", 0.0);
  if (j.contains("mismatches"))
    for (auto& m : j["mismatches"]) r.mismatches.push_back({str(m, "path"), str(m, "why")});
  if (j.contains("warnings"))
    for (auto& w : j["warnings"]) r.warnings.push_back(w.get<std::string>());
  return r;
}

class SshReceiver : public Receiver {
 public:
  SshReceiver(SshTarget t, const FailbackOptions& o, std::string work) : t_(std::move(t)), o_(o), work_(std::move(work)) {}
  Result<ReceiveResult> check(const std::string& base, const std::string& next) override {
    FailbackStream s;
    s.kind = "check";
    s.base = base;
    s.next = next;
    return run(s);
  }
  Result<ReceiveResult> apply(const std::string& base, const std::string& bundle) override {
    FailbackStream s;
    s.kind = "apply";
    s.base = base;
    s.bundle_path = bundle;
    return run(s);
  }

 private:
  Result<ReceiveResult> run(const FailbackStream& s) {
    std::vector<std::string> argv = {"ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"};
    if (!o_.known_hosts.empty()) argv.insert(argv.end(), {"-o", "UserKnownHostsFile=" + o_.known_hosts});
    if (!o_.identity.empty()) argv.insert(argv.end(), {"-o", "IdentitiesOnly=yes", "-i", o_.identity});
    if (t_.port) argv.insert(argv.end(), {"-p", std::to_string(t_.port)});
    argv.push_back(t_.user_host);
    argv.push_back("--");
    std::string remote = o_.remote_command + " failback-receive --json" + (o_.force ? " --force" : "") + " " +
                         shell_quote(t_.path);
    argv.push_back(remote);
    PB_TRY(mkdir_p(work_, 0700));
    std::string out = work_ + "/ssh.out", err = work_ + "/ssh.err";
    int in[2];
    if (::pipe2(in, O_CLOEXEC) != 0) return fail("failed to start ssh: pipe: " + errstr(errno));
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) return fail("failed to start ssh: fork: " + errstr(errno));
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(in[0], 0);
      int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (o >= 0) ::dup2(o, 1);
      if (e >= 0) ::dup2(e, 2);
      std::vector<char*> a;
      for (auto& x : argv) a.push_back(const_cast<char*>(x.c_str()));
      a.push_back(nullptr);
      ::execvp(a[0], a.data());
      std::fprintf(stderr, "ssh: %s\n", std::strerror(errno));
      ::_exit(127);
    }
    ::close(in[0]);
    auto old = std::signal(SIGPIPE, SIG_IGN);
    Status ws = write_failback_stream(in[1], s);
    ::close(in[1]);
    std::signal(SIGPIPE, old);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    std::string o = read_file(out).ok() ? *read_file(out) : "", e = read_file(err).ok() ? *read_file(err) : "";
    while (!e.empty() && (e.back() == '\n' || e.back() == ' ')) e.pop_back();
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    if (code != 0) {
      // The remote planb-invoke's own message ("planb-invoke: error: failed to ...").
      std::string msg = e;
      auto p = msg.rfind("error: ");
      if (p != std::string::npos) msg = msg.substr(p + 7);
      if (msg.size() > 800) msg = "..." + msg.substr(msg.size() - 800);
      if (code == 255 || code == 127)
        return fail("failed to reach " + t_.user_host + " over ssh: " + (msg.empty() ? "ssh exit status " + std::to_string(code) : msg));
      return make_error(code >= 2 && code <= 9 ? code : kExitFailure, msg.empty() ? "failed to fail back: the target's planb-invoke failback-receive exited " + std::to_string(code) : msg);
    }
    if (!ws.ok()) return ws.error();
    return parse_receive_json(o);
  }
  SshTarget t_;
  const FailbackOptions& o_;
  std::string work_;
};

std::string list_mismatches(const std::vector<ReceiveMismatch>& mm) {
  std::string list;
  for (size_t i = 0; i < mm.size() && i < 5; ++i) list += (i ? "; " : "") + mm[i].path + ": " + mm[i].why;
  if (mm.size() > 5) list += "; and " + std::to_string(mm.size() - 5) + " more";
  return list;
}

// ---------------------------------------------------------------- passes

class Failback {
 public:
  Failback(const FailbackOptions& o) : o_(o), s_(ServerLayout::at(o.server)) {}

  Result<FailbackResult> run() {
    PB_TRY(validate_host_name(o_.host));
    if (o_.to.empty()) return make_error(kExitUsage, "failed to parse options: --to is required");
    PB_ASSIGN(inv_, find_invocation(s_, o_.host, o_.invocation));
    dir_ = inv_.dir + "/failback/" + o_.host;
    PB_TRY(mkdir_p(dir_, 0700));
    PB_ASSIGN(lock_, FileLock::acquire(dir_ + "/lock", true, false, "failback of " + o_.host));
    PB_ASSIGN(st_, FbState::load(dir_ + "/state.json"));
    if (o_.to.rfind("ssh://", 0) == 0) {
      PB_ASSIGN(SshTarget t, parse_ssh(o_.to));
      recv_ = std::make_unique<SshReceiver>(t, o_, dir_ + "/ssh");
    } else {
      struct stat sb;
      if (::stat(o_.to.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode))
        return make_error(kExitNotFound, "failed to use target " + o_.to + ": not a directory");
      recv_ = std::make_unique<LocalReceiver>(o_.to, dir_ + "/receive", o_.force, o_.progress);
    }
    excludes_ = o_.default_excludes ? failback_default_excludes() : std::vector<std::string>{};
    excludes_.insert(excludes_.end(), o_.excludes.begin(), o_.excludes.end());
    p2v_ = p2v_paths(s_, inv_.host, warnings_);
    PB_ASSIGN(Store store, Store::open(dir_ + "/store", true));
    store_ = std::make_unique<Store>(std::move(store));
    FailbackResult res;
    res.host = o_.host;
    res.invocation = inv_.id;
    res.to = o_.to;
    if (st_.final_done[o_.to])
      return make_error(kExitExists, "failed to fail back " + o_.host + " to " + o_.to +
                                         ": the final pass was already delivered");
    auto tb = Clock::now();
    bool had_base = st_.base_snapshot != 0;
    PB_TRY(ensure_base());
    double base_s = had_base ? 0 : since(tb);
    if (o_.cutover || !o_.final_pass) {
      PB_ASSIGN(FailbackPass p, pass(false));
      res.passes.push_back(std::move(p));
    }
    if (o_.cutover || o_.final_pass) {
      PB_ASSIGN(FailbackPass p, pass(true));
      res.passes.push_back(std::move(p));
    }
    if (!res.passes.empty()) {
      res.passes.front().base_seconds = base_s;
      res.passes.front().seconds += base_s;
    }
    if (!warnings_.empty() && !res.passes.empty())
      for (auto& w : warnings_) res.passes.front().warnings.insert(res.passes.front().warnings.begin(), w);
    return res;
  }

 private:
  // An audit row that cannot be written is a warning: the data has moved by then.
  Status audit(const std::string& event, const std::string& detail) {
    if (!o_.audit) return {};
    auto st = o_.audit(inv_.id, event, detail);
    if (!st.ok()) warnings_.push_back("audit log: " + st.error().message);
    return {};
  }

  Result<uint64_t> capture_layer(const std::string& layer, const std::string& what, double& read_s, double& cap_s,
                                 bool copy) {
    auto t0 = Clock::now();
    PB_ASSIGN(auto disk, MountedDisk::open(layer, dir_ + "/mnt", copy));
    read_s = since(t0);
    auto t1 = Clock::now();
    CaptureOptions co;
    co.host = o_.host;
    co.source = disk->root();
    co.progress = o_.progress;
    PB_ASSIGN(CaptureResult cr, capture(*store_, co));
    cap_s = since(t1);
    for (auto& w : cr.warnings) warnings_.push_back(what + ": " + w);
    return cr.sequence;
  }

  Status ensure_base() {
    if (st_.base_snapshot) return {};
    double r = 0, c = 0;
    if (!path_exists(inv_.host.image))
      return make_error(kExitNotFound, "failed to find the image " + o_.host + " booted from: " + inv_.host.image);
    PB_ASSIGN(uint64_t seq, capture_layer(inv_.host.image, "the image", r, c, true));
    st_.base_snapshot = seq;
    return st_.save(dir_ + "/state.json");
  }

  bool vm_running() {
    if (st_.vm_stopped || !process_alive(inv_.host.pid) || inv_.host.qmp.empty()) return false;
    QmpClient q;
    return q.connect(inv_.host.qmp, 2000).ok();
  }

  Result<FailbackPass> pass(bool final) {
    auto t0 = Clock::now();
    FailbackPass p;
    p.pass = ++st_.passes;
    p.kind = final ? "final" : "bulk";
    std::string active = st_.active_layer.empty() ? inv_.host.overlay : st_.active_layer;
    std::string layer = active;
    bool running = vm_running();
    if (inv_.host.backend == "libvirt" && !st_.vm_stopped && inv_.host.state != "stopped" && inv_.host.state != "down" &&
        inv_.host.state != "failed")
      return make_error(kExitUsage, "failed to fail back " + o_.host + ": its VM runs under libvirt, which failback cannot "
                                    "freeze or stop yet; stop it (planb-invoke stop) and run failback --final");
    Clock::time_point downtime_start = t0;
    if (running && final) {
      downtime_start = Clock::now();
      PB_TRY(audit("failback.stop-vm", JsonObject().add("host", o_.host).str()));
      PB_ASSIGN(p.stop, power_off_vm(inv_.host.qmp, inv_.host.pid, o_.grace_s));
      st_.vm_stopped = true;
      PB_TRY(st_.save(dir_ + "/state.json"));
      p.vm = "stopped by this pass (" + p.stop + ")";
    } else if (running) {
      PB_TRY(mkdir_p(dir_ + "/layers", 0700));
      std::string next = dir_ + "/layers/active-" + std::to_string(st_.layers.size() + 1) + ".qcow2";
      std::error_code ec;
      std::filesystem::remove(next, ec);  // a leftover of a killed run (never the VM's: state says so)
      PB_TRY(freeze_active_layer(inv_.host.qmp, active, next));
      st_.layers.push_back(next);
      st_.active_layer = next;
      PB_TRY(st_.save(dir_ + "/state.json"));
      p.vm = "running (point in time frozen with blockdev-snapshot-sync)";
    } else {
      p.vm = "stopped";
      if (final) st_.vm_stopped = true;
    }
    p.layer = layer;
    PB_ASSIGN(p.snapshot, capture_layer(layer, "the rescue disk", p.read_seconds, p.capture_seconds, o_.copy));
    auto it = st_.delivered.find(o_.to);
    p.base_snapshot = it == st_.delivered.end() ? st_.base_snapshot : it->second;
    auto t2 = Clock::now();
    PB_TRY(deliver(p));
    p.deliver_seconds = since(t2);
    st_.delivered[o_.to] = p.snapshot;
    if (final) st_.final_done[o_.to] = true;
    PB_TRY(st_.save(dir_ + "/state.json"));
    p.seconds = since(t0);
    if (final) p.downtime_seconds = running ? since(downtime_start) : 0;
    PB_TRY(audit("failback.pass", JsonObject()
                                      .add("host", o_.host)
                                      .add("to", o_.to)
                                      .add("pass", int64_t(p.pass))
                                      .add("kind", p.kind)
                                      .add("files", p.files)
                                      .add("deleted", p.deleted)
                                      .add("bytes", p.bytes)
                                      .add("seconds", p.seconds)
                                      .str()));
    return p;
  }

  Status deliver(FailbackPass& p) {
    PB_ASSIGN(Manifest a, store_->load_manifest(o_.host, p.base_snapshot));
    PB_ASSIGN(Manifest b, store_->load_manifest(o_.host, p.snapshot));
    Delivery d = restrict(a, b, excludes_, p2v_);
    p.skipped = d.skipped;
    for (auto& s : d.skipped)
      p.warnings.push_back("not failed back: " + s + " was edited by planb-convert (P2V) and changed on the rescue VM");
    if (d.changed == 0 && d.deleted == 0) return {};
    PB_ASSIGN(auto latest, store_->read_ref(kDeliveryHost, "latest"));
    uint64_t seq = latest ? latest->sequence + 1 : 1;
    finish_header(d.base, seq);
    finish_header(d.next, seq + 1);
    PB_TRY(put_manifest(*store_, d.base, d.base_bytes));
    d.next.header.parent = manifest_id(d.base_bytes);
    PB_TRY(put_manifest(*store_, d.next, d.next_bytes));
    PB_TRY(store_->write_ref(kDeliveryHost, "latest", {seq + 1, manifest_id(d.next_bytes)}));
    PB_ASSIGN(ReceiveResult chk, recv_->check(d.base_bytes, d.next_bytes));
    if (!chk.mismatches.empty()) {
      if (!o_.force)
        return make_error(kExitExists, "failed to fail back " + o_.host + ": the target differs from what the rescue VM " +
                                           "started from at " + std::to_string(chk.mismatches.size()) + " path(s): " +
                                           list_mismatches(chk.mismatches) + " (use --force to replace them)");
      // --force: those contents go whole (no delta against what the target lacks).
      std::unordered_set<std::string> bad;
      for (auto& m : chk.mismatches) bad.insert(m.path.substr(1));
      for (auto& e : d.base.entries)
        if (bad.count(e.path) && e.has_content()) {
          e.flags |= kFlagUnreadable;
          e.content = Hash{};
        }
      for (auto& m : chk.mismatches) p.warnings.push_back("replaced (--force): " + m.path + ": " + m.why);
      PB_TRY(put_manifest(*store_, d.base, d.base_bytes));
      d.next.header.parent = manifest_id(d.base_bytes);
      PB_TRY(put_manifest(*store_, d.next, d.next_bytes));
      PB_TRY(store_->write_ref(kDeliveryHost, "latest", {seq + 1, manifest_id(d.next_bytes)}));
    }
    DiffOptions dopt;
    dopt.host = kDeliveryHost;
    dopt.from = seq;
    dopt.to = seq + 1;
    dopt.out = dir_ + "/pass-" + std::to_string(p.pass) + ".bundle";
    dopt.progress = o_.progress;
    PB_ASSIGN(DiffResult dr, write_bundle(*store_, dopt));
    p.bundle_bytes = dr.bundle_bytes;
    PB_ASSIGN(ReceiveResult r, recv_->apply(d.base_bytes, dopt.out));
    p.files = r.files;
    p.entries = r.entries;
    p.deleted = r.deleted;
    p.bytes = r.bytes;
    for (auto& w : r.warnings) p.warnings.push_back(w);
    std::error_code ec;
    std::filesystem::remove(dopt.out, ec);
    return {};
  }

  const FailbackOptions& o_;
  ServerLayout s_;
  Invocation inv_;
  std::string dir_;
  std::optional<FileLock> lock_;
  FbState st_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Receiver> recv_;
  std::vector<std::string> excludes_, warnings_;
  std::set<std::string> p2v_;
};

std::string pass_json(const FailbackPass& p) {
  std::vector<std::string> sk, w;
  for (auto& s : p.skipped) sk.push_back(json_escape(s));
  for (auto& s : p.warnings) w.push_back(json_escape(s));
  return JsonObject()
      .add("pass", int64_t(p.pass))
      .add("kind", p.kind)
      .add("vm", p.vm)
      .add("stop", p.stop)
      .add("layer", p.layer)
      .add("snapshot", p.snapshot)
      .add("base_snapshot", p.base_snapshot)
      .add("files", p.files)
      .add("entries", p.entries)
      .add("deleted", p.deleted)
      .add("bytes", p.bytes)
      .add("bundle_bytes", p.bundle_bytes)
      .add("base_seconds", p.base_seconds)
      .add("read_seconds", p.read_seconds)
      .add("capture_seconds", p.capture_seconds)
      .add("deliver_seconds", p.deliver_seconds)
      .add("seconds", p.seconds)
      .add("downtime_seconds", p.downtime_seconds)
      .add_raw("skipped", json_array(sk))
      .add_raw("warnings", json_array(w))
      .str();
}

}  // namespace

std::vector<std::string> failback_default_excludes() {
  return {
      "/var/log/journal/*",            // the rescue VM's binary journal (its own machine's boots)
      "/var/lib/systemd/random-seed",  // per-machine entropy
      "/var/lib/systemd/timers/*",     // timer stamps of the rescue run
      "/var/lib/dhcp/*",               // leases from the rescue network
      "/var/cache/*",                  // caches (package lists, man-db): rebuilt on their own
      "/lost+found",
  };
}

Result<FailbackResult> failback(const FailbackOptions& opt) {
  Failback f(opt);
  return f.run();
}

Status failback_main(FailbackCmdOptions o) {
  if (o.json) o.fb.progress = false;
  PB_ASSIGN(FailbackResult r, failback(o.fb));
  if (o.json) {
    std::vector<std::string> ps;
    for (auto& p : r.passes) ps.push_back(pass_json(p));
    std::printf("%s\n", JsonObject()
                            .add("host", r.host)
                            .add("invocation", r.invocation)
                            .add("to", r.to)
                            .add_raw("passes", json_array(ps))
                            .str()
                            .c_str());
  } else {
    for (auto& p : r.passes) {
      std::printf("pass %d (%s): %llu files (%s), %llu deleted, %s bundle, %.1f s (read %.1f, capture %.1f, deliver %.1f)%s; VM %s\n",
                  p.pass, p.kind.c_str(), static_cast<unsigned long long>(p.files), human_bytes(p.bytes).c_str(),
                  static_cast<unsigned long long>(p.deleted), human_bytes(p.bundle_bytes).c_str(), p.seconds,
                  p.read_seconds, p.capture_seconds, p.deliver_seconds,
                  p.kind == "final" ? (", downtime " + std::to_string(p.downtime_seconds).substr(0, 5) + " s").c_str() : "",
                  p.vm.c_str());
    }
  }
  for (auto& p : r.passes)
    for (auto& w : p.warnings) print_warning("planb-invoke", w);
  return {};
}

}  // namespace planb
