#include "ship.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "bytes.hpp"
#include "fsutil.hpp"
#include "hash_file.hpp"
#include "progress.hpp"
#include "store.hpp"

namespace planb {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

constexpr uint32_t kMaxSealHeader = 64 * 1024;

bool safe_name(const std::string& n) {
  if (n.empty() || n[0] == '.' || n.size() > 200) return false;
  for (char c : n)
    if (!(std::isalnum(uint8_t(c)) || c == '.' || c == '_' || c == '-' || c == '+')) return false;
  return true;
}

struct Pending {
  std::string name, path;
  SealHeader header;
  uint64_t size = 0;
};

class Shipper {
 public:
  Shipper(const ShipOptions& opt, Transport& t) : opt_(opt), t_(t) {}

  // One attempt at delivering b. Transient errors come back with kTransient.
  Status attempt(const Pending& b, ShippedBundle& rec, Progress& bar, uint64_t done_before, uint64_t total_all) {
    // Delivered by an earlier, interrupted run?
    PB_ASSIGN(auto there, t_.size_of(b.name));
    if (there) {
      if (*there != b.size)
        return fail("failed to ship " + b.name + ": the inbox already holds a different " + b.name + " (" +
                    std::to_string(*there) + " bytes, ours " + std::to_string(b.size) + ")");
      if (opt_.readback) {
        PB_ASSIGN(Hash local, local_hash(b));
        PB_ASSIGN(Hash remote, t_.hash_of(b.name));
        if (!(local == remote))
          return fail("failed to ship " + b.name + ": the inbox already holds a different " + b.name +
                      " (same size, other content)");
      }
      rec.state = "already-there";
      return {};
    }
    std::string tmp = ship_temp_name(b.name);
    uint64_t offset = 0;
    PB_ASSIGN(auto partial, t_.size_of(tmp));
    if (partial) {
      if (t_.can_resume() && *partial <= b.size) {
        offset = *partial;
      } else {
        PB_TRY(t_.remove(tmp));
      }
    }
    PB_ASSIGN(auto free_bytes, t_.free_space());
    if (free_bytes && *free_bytes < b.size - offset)
      return fail("failed to ship " + b.name + ": disk full on the server (needs " + human_bytes(b.size - offset) +
                  ", " + human_bytes(*free_bytes) + " free)");
    rec.resumed_from = std::max(rec.resumed_from, offset);
    if (offset < b.size || !partial) {
      Fd in(::open(b.path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!in.valid()) return fail("failed to open " + b.path + ": " + errstr(errno));
      ::posix_fadvise(in.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
      uint64_t base = done_before + offset;
      XferProgress prog = [&](uint64_t n) { bar.update(rec.attempts, base + n, total_all); };
      PB_TRY(t_.upload(in.get(), offset, b.size, tmp, prog));
      sent_bytes_ += b.size - offset;
    }
    // Verify before the rename: size, then (by default) the hash read back.
    PB_ASSIGN(auto got, t_.size_of(tmp));
    if (!got || *got != b.size) {
      if (got && *got > b.size) (void)t_.remove(tmp);
      return transient("failed to ship " + b.name + ": size after upload is " +
                       (got ? std::to_string(*got) : std::string("missing")) + ", expected " + std::to_string(b.size));
    }
    if (opt_.readback) {
      PB_ASSIGN(Hash local, local_hash(b));
      PB_ASSIGN(Hash remote, t_.hash_of(tmp));
      if (!(local == remote)) {
        PB_TRY(t_.remove(tmp));
        return transient("failed to ship " + b.name + ": the upload read back differs from the bundle (hash mismatch)");
      }
    }
    PB_TRY(t_.rename(tmp, b.name));
    rec.state = "sent";
    return {};
  }

  uint64_t sent_bytes() const { return sent_bytes_; }

 private:
  Result<Hash> local_hash(const Pending& b) {
    if (cached_name_ != b.name) {
      PB_ASSIGN(Hash h, hash_file(b.path));
      cached_ = h;
      cached_name_ = b.name;
    }
    return cached_;
  }

  const ShipOptions& opt_;
  Transport& t_;
  uint64_t sent_bytes_ = 0;
  std::string cached_name_;
  Hash cached_;
};

// Moves a delivered bundle to OUTBOX/sent/ (or deletes it) durably.
Status retire(const ShipOptions& opt, const Pending& b) {
  if (opt.keep_sent <= 0) {
    if (::unlink(b.path.c_str()) != 0 && errno != ENOENT) return fail("failed to remove " + b.path + ": " + errstr(errno));
    return fsync_dir(opt.outbox);
  }
  std::string sent = join_path(opt.outbox, "sent");
  PB_TRY(mkdir_p(sent, 0700));
  if (::rename(b.path.c_str(), join_path(sent, b.name).c_str()) != 0)
    return fail("failed to move " + b.path + " to " + sent + ": " + errstr(errno));
  PB_TRY(fsync_dir(sent));
  return fsync_dir(opt.outbox);
}

// Keeps the newest keep_sent files of OUTBOX/sent/.
void prune_sent(const ShipOptions& opt) {
  std::string sent = join_path(opt.outbox, "sent");
  DIR* d = ::opendir(sent.c_str());
  if (!d) return;
  std::vector<std::pair<int64_t, std::string>> files;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    struct stat st;
    if (::stat(join_path(sent, e->d_name).c_str(), &st) == 0 && S_ISREG(st.st_mode))
      files.push_back({int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec, e->d_name});
  }
  ::closedir(d);
  if (files.size() <= size_t(opt.keep_sent)) return;
  std::sort(files.begin(), files.end(), std::greater<>());
  for (size_t i = size_t(opt.keep_sent); i < files.size(); ++i) ::unlink(join_path(sent, files[i].second).c_str());
}

}  // namespace

std::string ship_temp_name(const std::string& name) { return "." + name + ".part"; }

Result<SealHeader> read_sealed_header(const std::string& path) {
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return fail("failed to open " + path + ": " + errstr(errno));
  char pre[9];
  PB_ASSIGN(size_t n, read_full(in.get(), pre, 9, path));
  if (n < 9 || std::memcmp(pre, "PBSL", 4) != 0)
    return make_error(kExitCorrupt, "failed to read " + path + ": not a sealed bundle (bad magic)");
  if (uint8_t(pre[4]) != kSealVersion)
    return make_error(kExitCorrupt, "failed to read " + path + ": unsupported sealed-bundle version " +
                                        std::to_string(uint8_t(pre[4])));
  uint32_t hlen = get_le32(pre + 5);
  if (hlen > kMaxSealHeader) return make_error(kExitCorrupt, "failed to read " + path + ": bad header length");
  std::string text(hlen, '\0');
  PB_ASSIGN(n, read_full(in.get(), text.data(), hlen, path));
  if (n < hlen) return make_error(kExitCorrupt, "failed to read " + path + ": truncated header");
  auto h = SealHeader::decode(text);
  if (!h.ok()) return make_error(kExitCorrupt, "failed to read " + path + ": damaged header");
  return h;
}

Result<ShipReport> ship(const ShipOptions& opt) {
  auto start = Clock::now();
  PB_ASSIGN(auto transport, open_transport(opt.dest, opt.transport));
  struct stat ost;
  if (::stat(opt.outbox.c_str(), &ost) != 0 || !S_ISDIR(ost.st_mode))
    return make_error(kExitNotFound, "failed to open outbox " + opt.outbox + ": no such directory");
  PB_ASSIGN(FileLock lock, FileLock::acquire(join_path(opt.outbox, ".lock"), true, false, "outbox " + opt.outbox));

  ShipReport rep;
  rep.destination = transport->describe();

  // What is waiting, in (host, sequence) order.
  std::vector<Pending> pending;
  DIR* d = ::opendir(opt.outbox.c_str());
  if (!d) return fail("failed to read outbox " + opt.outbox + ": " + errstr(errno));
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) names.push_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    if (n[0] == '.' || n == "sent" || n == "requests") continue;
    std::string p = join_path(opt.outbox, n);
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    ShippedBundle rec;
    rec.name = n;
    if (!safe_name(n)) {
      rec.state = "invalid";
      rec.error = "failed to ship " + n + ": name must be letters, digits and . _ - + only";
    } else {
      auto h = read_sealed_header(p);
      if (h.ok()) {
        pending.push_back({n, p, *h, uint64_t(st.st_size)});
        continue;
      }
      rec.state = "invalid";
      rec.error = h.error().message;
    }
    ++rep.failed;
    if (rep.first_error.message.empty()) rep.first_error = fail(rec.error);
    rep.bundles.push_back(rec);
  }
  std::stable_sort(pending.begin(), pending.end(), [](const Pending& a, const Pending& b) {
    return std::tie(a.header.host, a.header.sequence) < std::tie(b.header.host, b.header.sequence);
  });
  uint64_t total = 0;
  for (const auto& b : pending) total += b.size;

  Shipper shipper(opt, *transport);
  Progress bar("ship", opt.progress);
  std::string held_host;
  bool abort = false;
  uint64_t done_bytes = 0;
  for (const auto& b : pending) {
    ShippedBundle rec;
    rec.name = b.name;
    rec.host = b.header.host;
    rec.sequence = b.header.sequence;
    rec.bytes = b.size;
    auto t0 = Clock::now();
    if (abort || b.header.host == held_host) {
      // A later night must not overtake an undelivered one: the server would see a gap.
      rec.state = "held-back";
      ++rep.failed;
      rep.bundles.push_back(rec);
      continue;
    }
    double delay = opt.retry_delay;
    Status st;
    for (;;) {
      ++rec.attempts;
      st = shipper.attempt(b, rec, bar, done_bytes, total);
      if (st.ok() || st.error().code != kTransient || rec.attempts > opt.retries) break;
      std::this_thread::sleep_for(std::chrono::duration<double>(delay));
      delay = std::min(delay * 2, opt.max_delay);
    }
    if (st.ok()) st = retire(opt, b);
    rec.seconds = since(t0);
    done_bytes += b.size;
    if (st.ok()) {
      if (rec.state == "sent") ++rep.sent; else ++rep.already;
    } else {
      rec.state = "failed";
      rec.error = st.error().message;
      if (st.error().code == kTransient)
        rec.error += " (gave up after " + std::to_string(rec.attempts) + " attempts)";
      ++rep.failed;
      if (rep.first_error.message.empty()) rep.first_error = make_error(st.error().code, rec.error);
      held_host = b.header.host;
      // Unreachable, refused or full: nothing else will get through either.
      if (rec.error.find("already holds") == std::string::npos) abort = true;
    }
    rep.bundles.push_back(rec);
  }
  bar.done();

  // The server's requests for full bundles (after a gap or a wrong parent), for
  // every host this outbox has sent or is sending. Best effort: an unreachable
  // server was reported above.
  if (!abort) {
    std::vector<std::string> hosts;
    for (const auto& b : pending) hosts.push_back(b.header.host);
    std::string sent_dir = join_path(opt.outbox, "sent");
    if (DIR* sd = ::opendir(sent_dir.c_str())) {
      while (struct dirent* e = ::readdir(sd)) {
        if (e->d_name[0] == '.') continue;
        auto h = read_sealed_header(join_path(sent_dir, e->d_name));
        if (h.ok()) hosts.push_back(h->host);
      }
      ::closedir(sd);
    }
    std::sort(hosts.begin(), hosts.end());
    hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
    for (const auto& host : hosts) {
      if (!validate_host_name(host).ok()) continue;
      std::string name = host + ".full-bundle-needed";
      auto there = transport->size_of(".requests/" + name);
      if (!there.ok() || !*there) continue;
      std::string local = join_path(join_path(opt.outbox, "requests"), name);
      if (mkdir_p(dirname_of(local), 0700).ok() &&
          write_file_atomic(local, "planb-request 1\nhost=" + host + "\nrequest=full-bundle\n").ok())
        rep.full_bundle_requested.push_back(host);
    }
  }
  if (opt.keep_sent > 0) prune_sent(opt);
  rep.bytes_sent = shipper.sent_bytes();
  rep.seconds = since(start);
  return rep;
}

}  // namespace planb
