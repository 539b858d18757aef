// planb-promote. Order of durable steps for a passing image (each re-runnable
// after kill -9):
//   1. the image is hard-linked (or copied) into SERVER/repository/HOST/SEQ.qcow2
//      under a temp name, synced, renamed, directory synced;
//   2. only then the repository's `good` ref file is replaced atomically;
//   3. the store's `good` ref, then the catalog, follow;
//   4. retention removes older images (never the good one).
// A failing report never touches `good`: a ticket, the notify hook, exit 11.
#include "promote.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "catalog.hpp"
#include "fsutil.hpp"
#include "hash_file.hpp"
#include "store.hpp"

namespace planb {

namespace {

using nlohmann::json;

std::string str_or(const json& j, const char* k, std::string def = "") {
  auto it = j.find(k);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}

std::string repo_image_name(uint64_t seq) { return std::to_string(seq) + ".qcow2"; }

// Links src to dst (same file system) or copies it, durably, never leaving a
// partial file under dst's name.
Status place_image(const std::string& src, const std::string& dst) {
  std::string tmp = temp_name(dirname_of(dst), ".image");
  if (::link(src.c_str(), tmp.c_str()) != 0) {
    if (errno != EXDEV && errno != EPERM)
      return fail("failed to link " + src + " into the repository: " + errstr(errno));
    PB_ASSIGN(AtomicFile out, AtomicFile::create(dst, 0644));
    Fd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in.valid()) return fail("failed to open " + src + ": " + errstr(errno));
    std::vector<char> buf(1 << 20);
    for (;;) {
      PB_ASSIGN(size_t n, read_full(in.get(), buf.data(), buf.size(), src));
      if (n == 0) break;
      PB_TRY(write_all(out.fd(), buf.data(), n, dst));
    }
    return out.commit();
  }
  Fd f(::open(tmp.c_str(), O_RDONLY | O_CLOEXEC));
  if (!f.valid() || ::fsync(f.get()) != 0) {
    ::unlink(tmp.c_str());
    return fail("failed to sync " + tmp + ": " + errstr(errno));
  }
  if (::rename(tmp.c_str(), dst.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return fail("failed to move the image into " + dst + ": " + errstr(errno));
  }
  return fsync_dir(dirname_of(dst));
}

std::string encode_good(const GoodRef& g) {
  return "planb-good 1\nsequence=" + std::to_string(g.sequence) + "\nimage=" + g.image + "\nhash=" + g.hash +
         "\nreport=" + g.report + "\npromoted=" + std::to_string(g.promoted_at) + "\n";
}

// Runs the notify hook: /bin/sh -c CMD, the summary on stdin, facts in the environment.
std::string run_notify(const std::string& cmd, const std::vector<std::pair<std::string, std::string>>& env,
                       const std::string& text) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return "pipe: " + errstr(errno);
  pid_t pid = ::fork();
  if (pid < 0) return "fork: " + errstr(errno);
  if (pid == 0) {
    ::dup2(pipefd[0], 0);
    for (auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(pipefd[0]);
  (void)!::write(pipefd[1], text.data(), text.size());
  ::close(pipefd[1]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return "";
  return WIFEXITED(st) ? "exit " + std::to_string(WEXITSTATUS(st)) : "killed by signal " + std::to_string(WTERMSIG(st));
}

// The catalog row of the image built from (host, seq), added when missing.
Result<int64_t> image_row(Catalog& cat, const std::string& host, uint64_t seq, const std::string& path) {
  PB_ASSIGN(auto rows, cat.images(host));
  int64_t best = 0;
  for (const auto& r : rows)
    if (r.sequence == seq) best = std::max(best, r.id);
  if (best) return best;
  ImageRow r;
  r.host = host;
  r.sequence = seq;
  r.path = path;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) r.bytes = uint64_t(st.st_size);
  return cat.add_image(r);
}

Status ensure_boot_test_row(Catalog& cat, int64_t image_id, const BootReport& rep, const std::string& dir) {
  PB_ASSIGN(auto rows, cat.boot_tests(image_id));
  for (const auto& r : rows)
    if (r.report_dir == dir) return {};
  BootTestRow b;
  b.image_id = image_id;
  b.passed = rep.passed;
  b.report_dir = dir;
  b.started_at = rep.started_at;
  b.seconds = rep.seconds;
  b.checks_json = rep.checks_json;
  PB_ASSIGN(int64_t id, cat.record_boot_test(b));
  (void)id;
  return {};
}

}  // namespace

Result<BootReport> read_boot_report(const std::string& dir) {
  std::string path = dir + "/report.json";
  if (!path_exists(path)) return make_error(kExitNotFound, "failed to read boot-test report " + path + ": no such file");
  PB_ASSIGN(std::string text, read_file(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return make_error(kExitCorrupt, "failed to read boot-test report " + path + ": not valid JSON");
  BootReport r;
  r.host = str_or(j, "host");
  if (j.contains("sequence") && j["sequence"].is_number_unsigned()) r.sequence = j["sequence"].get<uint64_t>();
  if (j.contains("image") && j["image"].is_object()) {
    r.image = str_or(j["image"], "path");
    r.image_hash = str_or(j["image"], "hash");
    r.hash_algo = str_or(j["image"], "hash_algorithm", "blake2b-256");
  } else {
    r.image = str_or(j, "image");
    r.image_hash = str_or(j, "image_hash");
    r.hash_algo = str_or(j, "hash_algorithm", "blake2b-256");
  }
  if (!j.contains("passed") || !j["passed"].is_boolean())
    return make_error(kExitCorrupt, "failed to read boot-test report " + path + ": no \"passed\" verdict");
  r.passed = j["passed"].get<bool>();
  if (j.contains("checks") && j["checks"].is_array()) {
    r.checks_json = j["checks"].dump();
    for (const auto& c : j["checks"]) {
      if (!c.is_object() || (c.contains("passed") && c["passed"].is_boolean() && c["passed"].get<bool>())) continue;
      std::string line = str_or(c, "type") + " " + str_or(c, "target");
      std::string detail = str_or(c, "detail", str_or(c, "error"));
      if (!detail.empty()) line += ": " + detail;
      r.failed_checks.push_back(line);
    }
  }
  r.serial_log = str_or(j, "serial_log");
  r.screenshot = str_or(j, "screenshot");
  if (j.contains("seconds") && j["seconds"].is_number()) r.seconds = j["seconds"].get<double>();
  if (j.contains("started_at") && j["started_at"].is_number_integer()) r.started_at = j["started_at"].get<int64_t>();
  if (path_exists(dir + "/summary.txt")) {
    auto s = read_file(dir + "/summary.txt");
    if (s.ok()) r.summary = *s;
  }
  if (r.host.empty()) return make_error(kExitCorrupt, "failed to read boot-test report " + path + ": no host");
  return r;
}

Result<std::optional<GoodRef>> read_good_ref(const ServerLayout& s, const std::string& host) {
  std::string path = s.repository(host) + "/good";
  if (!path_exists(path)) return std::optional<GoodRef>{};
  PB_ASSIGN(std::string text, read_file(path));
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != "planb-good 1")
    return make_error(kExitCorrupt, "failed to read " + path + ": not a planb-good 1 ref");
  GoodRef g;
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string k = line.substr(0, eq), v = line.substr(eq + 1);
    if (k == "sequence") g.sequence = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "image") g.image = v;
    else if (k == "hash") g.hash = v;
    else if (k == "report") g.report = v;
    else if (k == "promoted") g.promoted_at = std::strtoll(v.c_str(), nullptr, 10);
  }
  if (g.image.empty() || g.image.find('/') != std::string::npos)
    return make_error(kExitCorrupt, "failed to read " + path + ": bad image name");
  return std::optional<GoodRef>{g};
}

Result<PromoteResult> promote(const ServerLayout& s, const PromoteOptions& opt) {
  PB_TRY(validate_host_name(opt.host));
  PB_ASSIGN(auto config, read_server_config(s));
  int keep = opt.keep_images;
  if (keep < 0) keep = config.count("keep_images") ? std::atoi(config["keep_images"].c_str()) : 3;
  if (keep < 1) keep = 1;

  // Which snapshot: --sequence, else the host's candidate.
  PB_ASSIGN(Store store, Store::open(s.store(), false));
  uint64_t seq = 0;
  std::optional<Ref> cand;
  {
    PB_ASSIGN(auto c, store.read_ref(opt.host, "candidate"));
    cand = c;
  }
  if (opt.sequence) {
    seq = *opt.sequence;
  } else {
    if (!cand) return make_error(kExitNotFound, "failed to promote " + opt.host + ": the host has no candidate snapshot");
    seq = cand->sequence;
  }
  std::string dir = opt.report_dir.empty() ? s.report_dir(opt.host, seq) : opt.report_dir;
  PB_ASSIGN(BootReport rep, read_boot_report(dir));
  if (rep.host != opt.host)
    return make_error(kExitUsage, "failed to promote " + opt.host + ": the report in " + dir + " is for host " + rep.host);
  if (rep.sequence && rep.sequence != seq)
    return make_error(kExitUsage, "failed to promote " + opt.host + " snapshot " + std::to_string(seq) +
                                      ": the report is for snapshot " + std::to_string(rep.sequence));

  std::string repo = s.repository(opt.host);
  PB_TRY(mkdir_p(repo, 0755));
  PB_ASSIGN(FileLock lock, FileLock::acquire(repo + "/.lock", true, false, "repository of " + opt.host));
  PB_ASSIGN(Catalog cat, Catalog::open(s.catalog()));

  PromoteResult res;
  res.host = opt.host;
  res.sequence = seq;
  std::string image = rep.image.empty() ? s.image(opt.host, seq) : rep.image;
  std::string dst = repo + "/" + repo_image_name(seq);

  if (!rep.passed) {
    res.failed_checks = rep.failed_checks;
    PB_ASSIGN(int64_t img, image_row(cat, opt.host, seq, image));
    PB_TRY(ensure_boot_test_row(cat, img, rep, dir));
    PB_TRY(cat.set_image_state(img, "failed"));
    // One ticket per failed snapshot: a re-run does not open (or notify) twice.
    PB_ASSIGN(auto open, cat.open_tickets(opt.host));
    for (const auto& t : open)
      if (t.kind == kTicketBootTestFailed && t.sequence == seq) res.ticket = t.id;
    if (!res.ticket) {
      std::string summary = "boot test of " + opt.host + " snapshot " + std::to_string(seq) + " failed";
      if (!rep.failed_checks.empty()) summary += ": " + rep.failed_checks.front();
      if (rep.failed_checks.size() > 1) summary += " (+" + std::to_string(rep.failed_checks.size() - 1) + " more)";
      json details = {{"report_dir", dir},
                      {"image", image},
                      {"serial_log", rep.serial_log},
                      {"screenshot", rep.screenshot},
                      {"failed_checks", rep.failed_checks}};
      TicketRow t;
      t.host = opt.host;
      t.sequence = seq;
      t.image_id = img;
      t.kind = kTicketBootTestFailed;
      t.summary = summary;
      t.details_json = details.dump();
      PB_ASSIGN(int64_t id, cat.open_ticket(t));
      res.ticket = id;
      if (config.count("notify") && !config["notify"].empty()) {
        std::string text = summary + "\n\n" + rep.summary;
        res.notify_error = run_notify(config["notify"],
                                      {{"PLANB_HOST", opt.host},
                                       {"PLANB_SEQUENCE", std::to_string(seq)},
                                       {"PLANB_TICKET", std::to_string(id)},
                                       {"PLANB_REPORT_DIR", dir},
                                       {"PLANB_SERIAL_LOG", rep.serial_log},
                                       {"PLANB_SCREENSHOT", rep.screenshot},
                                       {"PLANB_SUMMARY", summary}},
                                      text);
      }
    }
    PB_ASSIGN(res.good, read_good_ref(s, opt.host));
    return res;
  }

  // Passed: the image tested is the image promoted.
  PB_ASSIGN(auto good, read_good_ref(s, opt.host));
  if (good && good->sequence > seq)
    return make_error(kExitRefused, "failed to promote " + opt.host + " snapshot " + std::to_string(seq) +
                                        ": the good image is already the newer snapshot " + std::to_string(good->sequence));
  Hash h;
  if (path_exists(dst)) {
    PB_ASSIGN(h, hash_file(dst));  // placed by an earlier, interrupted run
  } else {
    if (!path_exists(image))
      return make_error(kExitNotFound, "failed to promote " + opt.host + ": image " + image + " does not exist");
    PB_ASSIGN(h, hash_file(image));
  }
  if (!rep.image_hash.empty() && rep.hash_algo == "blake2b-256" && rep.image_hash != h.hex())
    return make_error(kExitCorrupt, "failed to promote " + opt.host + ": the image is not the one the boot test passed "
                                    "(hash " + h.hex().substr(0, 16) + "…, report says " + rep.image_hash.substr(0, 16) + "…)");
  if (!path_exists(dst)) PB_TRY(place_image(image, dst));
  res.already = good && good->sequence == seq && good->hash == h.hex();
  GoodRef g;
  g.sequence = seq;
  g.image = repo_image_name(seq);
  g.hash = h.hex();
  g.report = dir;
  g.promoted_at = res.already ? good->promoted_at : catalog_now();
  if (!res.already) PB_TRY(write_file_atomic(repo + "/good", encode_good(g)));
  res.promoted = true;
  res.image = dst;
  res.good = g;

  // The store's `good` ref follows, when the snapshot is in the store.
  {
    auto m = store.read_manifest_bytes(opt.host, seq);
    if (m.ok()) {
      Ref r{seq, manifest_id(*m)};
      PB_TRY(store.write_ref(opt.host, "good", r));
    }
  }
  PB_ASSIGN(int64_t img, image_row(cat, opt.host, seq, dst));
  PB_TRY(ensure_boot_test_row(cat, img, rep, dir));
  PB_TRY(cat.set_image_state(img, "good"));
  PB_ASSIGN(int closed, cat.close_tickets(opt.host, {kTicketBootTestFailed}));
  (void)closed;

  // Retention: the newest `keep` images stay, the good one always.
  std::vector<uint64_t> seqs;
  if (DIR* d = ::opendir(repo.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 6 && n.compare(n.size() - 6, 6, ".qcow2") == 0 && n[0] != '.')
        seqs.push_back(std::strtoull(n.c_str(), nullptr, 10));
    }
    ::closedir(d);
  }
  std::sort(seqs.rbegin(), seqs.rend());
  PB_ASSIGN(auto rows, cat.images(opt.host));
  for (size_t i = size_t(keep); i < seqs.size(); ++i) {
    if (seqs[i] == seq) continue;
    std::string p = repo + "/" + repo_image_name(seqs[i]);
    if (::unlink(p.c_str()) == 0) res.retired.push_back(p);
    for (const auto& r : rows)
      if (r.sequence == seqs[i] && r.state == "good") PB_TRY(cat.set_image_state(r.id, "retired"));
  }
  // The working copy in SERVER/images is no longer needed (the repository holds a link).
  if (image == s.image(opt.host, seq)) ::unlink(image.c_str());
  return res;
}

Result<std::vector<HostOverview>> list_hosts(const ServerLayout& s) {
  std::vector<std::string> hosts;
  std::optional<Store> store;
  if (path_exists(s.store())) {
    PB_ASSIGN(Store st, Store::open(s.store(), false));
    hosts = st.hosts();
    store.emplace(std::move(st));
  }
  if (DIR* d = ::opendir((s.root + "/repository").c_str())) {
    while (struct dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') hosts.push_back(e->d_name);
    ::closedir(d);
  }
  // One catalog query gives every host it knows and their open tickets.
  std::map<std::string, std::vector<TicketRow>> tickets;
  if (path_exists(s.catalog())) {
    PB_ASSIGN(Catalog cat, Catalog::open(s.catalog()));
    PB_ASSIGN(auto all, cat.list_hosts_status());
    for (auto& h : all) {
      hosts.push_back(h.host);
      tickets[h.host] = std::move(h.open_tickets);
    }
  }
  std::sort(hosts.begin(), hosts.end());
  hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
  std::vector<HostOverview> out;
  for (const auto& h : hosts) {
    HostOverview o;
    o.host = h;
    if (store && store->has_host(h)) {
      PB_ASSIGN(auto l, store->read_ref(h, "latest"));
      PB_ASSIGN(auto c, store->read_ref(h, "candidate"));
      if (l) o.latest = l->sequence;
      if (c) o.candidate = c->sequence;
    }
    PB_ASSIGN(o.good, read_good_ref(s, h));
    if (o.candidate) {
      auto r = read_boot_report(s.report_dir(h, *o.candidate));
      if (r.ok()) o.last_test_passed = r->passed;
    }
    if (auto it = tickets.find(h); it != tickets.end()) o.tickets = std::move(it->second);
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace planb
