// planb-assemble: inbox → verified, opened, checked, applied, catalogued.
//
// Per bundle, in (host, sequence) order:
//   1. open_sealed (structure, hashes, signer, signature — then decrypt) into
//      SERVER/tmp/<host>/, never /tmp;
//   2. the bundle's own header must repeat the sealed header's host,
//      sequence and parent;
//   3. classify against the head (STORE/hosts/<host>/refs/latest): next,
//      already applied (a re-run after a kill), replay, gap, wrong parent;
//   4. apply_bundle (objects and manifest durable, then `latest` and
//      `candidate`);
//   5. the catalog row, then the inbox file moves to inbox/done/.
// A refusal writes a ticket, inbox/refused/NAME.reason, then moves the file.
// A failure that is not the bundle's fault (I/O, a locked store) leaves the
// file in the inbox and stops that host.
#include "assemble.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "bundle.hpp"
#include "catalog.hpp"
#include "fsutil.hpp"
#include "json.hpp"
#include "keys.hpp"
#include "progress.hpp"
#include "seal.hpp"
#include "ship.hpp"
#include "store.hpp"

namespace planb {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Inboxed {
  std::string name, path;
  SealHeader header;
  uint64_t bytes = 0;
};

struct Ctx {
  std::string root, inbox, done, refused, requests, tmp, locks;
  Key server_key;
  std::string signers;
  Store* store = nullptr;
  Catalog* catalog = nullptr;
};

Status move_into(const std::string& from, const std::string& dir, const std::string& name) {
  std::string to = join_path(dir, name);
  if (::rename(from.c_str(), to.c_str()) != 0)
    return fail("failed to move " + from + " to " + to + ": " + errstr(errno));
  PB_TRY(fsync_dir(dir));
  return fsync_dir(dirname_of(from));
}

std::string request_path(const Ctx& c, const std::string& host) {
  return join_path(c.requests, host + ".full-bundle-needed");
}

// The request a later stage ships back to the appliance: send a full bundle.
Status write_full_bundle_request(const Ctx& c, const AssembledBundle& b, const std::optional<Ref>& head) {
  std::string text = "planb-request 1\nhost=" + b.host + "\nrequest=full-bundle\nkind=" + b.kind +
                     "\nbundle=" + b.name + "\nsequence=" + std::to_string(b.sequence) +
                     "\nhead-sequence=" + std::to_string(head ? head->sequence : 0) +
                     "\nhead-manifest=" + (head ? head->manifest.hex() : "") +
                     "\ntime=" + std::to_string(catalog_now()) + "\n";
  return write_file_atomic(request_path(c, b.host), text);
}

// Refuse: ticket (once per bundle), reason file, then the move.
Status refuse(const Ctx& c, const Inboxed& in, AssembledBundle& b, const std::string& kind, const Error& why,
              const std::optional<Ref>& head) {
  b.state = kind == kTicketFullBundleNeeded || kind == kTicketGap ? (kind == kTicketGap ? "refused" : "full_bundle_needed")
                                                                   : "refused";
  b.kind = kind;
  b.reason = why.message;
  b.code = why.code;
  // A re-run after a kill between the ticket and the move must not open a second ticket.
  PB_ASSIGN(auto open, c.catalog->open_tickets(b.host));
  // (A ticket whose bundle already reached refused/ is an earlier copy's: a new ticket then.)
  auto completed = [&](int64_t id) {
    std::string target = b.name;
    for (int i = 1; path_exists(join_path(c.refused, target)); ++i) {
      auto r = read_file(join_path(c.refused, target + ".reason"));
      if (r.ok() && r->find("\nticket=" + std::to_string(id) + "\n") != std::string::npos) return true;
      target = b.name + "." + std::to_string(i);
    }
    return false;
  };
  for (const auto& t : open)
    if (t.kind == kind && t.sequence == b.sequence &&
        t.details_json.find("\"bundle\":" + json_escape(b.name)) != std::string::npos && !completed(t.id))
      b.ticket = t.id;
  if (!b.ticket) {
    PB_ASSIGN(b.ticket, c.catalog->record_refusal(b.host, b.sequence, kind, b.name, why.message, why.code,
                                                  in.header.appliance));
  }
  if (kind == kTicketFullBundleNeeded || kind == kTicketGap) PB_TRY(write_full_bundle_request(c, b, head));
  // Never replace earlier evidence: a second refused copy under the same name gets NAME.1, NAME.2, ...
  std::string target = b.name;
  for (int i = 1; path_exists(join_path(c.refused, target)); ++i) target = b.name + "." + std::to_string(i);
  PB_TRY(write_file_atomic(join_path(c.refused, target + ".reason"),
                           "kind=" + kind + "\nexit=" + std::to_string(why.code) + "\nticket=" + std::to_string(b.ticket) +
                               "\nreason=" + why.message + "\n"));
  return move_into(in.path, c.refused, target);
}

Status remove_tree_files(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return {};
  while (auto* e = ::readdir(d)) {
    if (!std::strcmp(e->d_name, ".") || !std::strcmp(e->d_name, "..")) continue;
    ::unlink(join_path(dir, e->d_name).c_str());
  }
  ::closedir(d);
  return {};
}

struct TmpFile {
  std::string path;
  ~TmpFile() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

// One bundle. Returns an error only for failures that are not the bundle's
// fault (the file stays in the inbox); refusals are recorded in `b`.
Status process(const Ctx& c, const Inboxed& in, AssembledBundle& b) {
  Store& store = *c.store;
  Catalog& cat = *c.catalog;
  PB_ASSIGN(auto head, store.read_ref(b.host, "latest"));
  auto refused = [&](const std::string& kind, int code, const std::string& msg) {
    return refuse(c, in, b, kind, make_error(code, msg), head);
  };
  if (in.header.server_key != c.server_key.id)
    return refused(kTicketWrongRecipient, kExitFailure,
                   "failed to open sealed bundle " + in.name + ": wrong recipient key: it is sealed to server key " +
                       in.header.server_key + ", not " + c.server_key.id);

  // 1. Verify, then decrypt into SERVER/tmp/<host>/.
  std::string hostdir = join_path(c.tmp, b.host);
  PB_TRY(mkdir_p(hostdir, 0700));
  TmpFile plain{join_path(hostdir, in.name + ".bundle")};
  OpenOptions oo;
  oo.in = in.path;
  oo.out = plain.path;
  oo.signers = c.signers;
  auto opened = open_sealed(c.server_key, oo);
  if (!opened.ok()) {
    const Error& e = opened.error();
    if (e.code == kExitBadSignature) return refused(kTicketBadSignature, e.code, e.message);
    if (e.code == kExitCorrupt) return refused(kTicketCorrupt, e.code, e.message);
    if (e.code == kExitNotFound && !path_exists(in.path)) {  // taken by another assemble
      b.state = "gone";
      return {};
    }
    return e;
  }
  const SealHeader& sh = opened->header;

  // 2. The bundle inside must say what the signed header says.
  std::string prefix(1 << 20, '\0');
  {
    Fd fd(::open(plain.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return fail("failed to open " + plain.path + ": " + errstr(errno));
    PB_ASSIGN(size_t n, read_full(fd.get(), prefix.data(), prefix.size(), plain.path));
    prefix.resize(n);
  }
  auto inner = sniff_bundle_header(prefix.data(), prefix.size());
  if (!inner)
    return refused(kTicketCorrupt, kExitCorrupt,
                   "failed to read bundle in " + in.name + ": not a Plan B bundle (no PLANB-BUNDLE header)");
  b.full = inner->full;
  b.manifest = inner->manifest.hex();
  if (inner->host != sh.host || inner->sequence != sh.sequence || inner->parent_manifest != sh.parent)
    return refused(kTicketMismatch, kExitRefused,
                   "failed to check bundle " + in.name + ": its header (host " + inner->host + ", sequence " +
                       std::to_string(inner->sequence) + ", parent " + (inner->full ? "none" : inner->parent_manifest.hex()) +
                       ") does not match the signed sealed header (host " + sh.host + ", sequence " +
                       std::to_string(sh.sequence) + ", parent " + (sh.parent.is_zero() ? "none" : sh.parent.hex()) +
                       "): tampering or a bug");

  // 3. Against the head.
  std::string what = "failed to apply bundle " + in.name + ": ";
  bool already = false;
  if (head && inner->sequence <= head->sequence) {
    PB_ASSIGN(auto row, cat.snapshot(b.host, inner->sequence));
    bool same_snapshot = inner->sequence == head->sequence && head->manifest == inner->manifest;
    // Applied by a run that was killed before the catalog row or the move;
    // a second copy of an applied bundle (another name, or its name already
    // in done/) is a replay.
    if (same_snapshot && (!row || (row->bundle == in.name && !path_exists(join_path(c.done, in.name)))))
      already = true;
    else
      return refused(kTicketReplay, kExitRefused,
                     what + "sequence " + std::to_string(inner->sequence) + " is not after host " + b.host +
                         "'s current " + std::to_string(head->sequence) + " (replay)");
  } else if (!inner->full) {
    if (!head)
      return refused(kTicketFullBundleNeeded, kExitRefused,
                     what + "host " + b.host + " has no snapshot on the server yet: an incremental bundle (parent " +
                         std::to_string(inner->parent_sequence) + ") cannot be applied (a full bundle is needed)");
    if (inner->parent_sequence > head->sequence)
      return refused(kTicketGap, kExitRefused,
                     what + "its parent is snapshot " + std::to_string(inner->parent_sequence) + " but host " + b.host +
                         " is at " + std::to_string(head->sequence) + " (gap: a bundle is missing; a full bundle is needed)");
    if (inner->parent_manifest != head->manifest)
      return refused(kTicketFullBundleNeeded, kExitRefused,
                     what + "its parent (snapshot " + std::to_string(inner->parent_sequence) + ", " +
                         inner->parent_manifest.hex().substr(0, 16) + ") is not host " + b.host + "'s current snapshot (" +
                         std::to_string(head->sequence) + ", " + head->manifest.hex().substr(0, 16) +
                         "): a full bundle is needed");
  }

  // 4. Apply.
  if (!already) {
    auto ar = apply_bundle(store, plain.path, "candidate");
    if (!ar.ok()) {
      Error e = ar.error();
      // Name the inbox file, not the temp file.
      for (size_t p; (p = e.message.find(plain.path)) != std::string::npos;) e.message.replace(p, plain.path.size(), in.name);
      if (e.code == kExitCorrupt) return refused(kTicketCorrupt, e.code, e.message);
      if (e.code == kExitRefused) return refused(kTicketReplay, e.code, e.message);  // raced: re-checked under the store lock
      return e;
    }
    b.objects = ar->objects;
    b.deltas = ar->deltas;
  } else {
    // The candidate ref may not have moved before the kill.
    PB_ASSIGN(auto cand, store.read_ref(b.host, "candidate"));
    if (!cand || cand->sequence < head->sequence) PB_TRY(store.write_ref(b.host, "candidate", *head));
  }

  // 5. Catalog row (and the requests it resolves), then the move.
  SnapshotRow row;
  row.host = b.host;
  row.sequence = inner->sequence;
  row.manifest = inner->manifest.hex();
  row.parent = inner->full ? "" : inner->parent_manifest.hex();
  row.appliance = sh.appliance;
  row.bundle = in.name;
  row.bytes = in.bytes;
  PB_TRY(cat.transaction([&]() -> Status {
    PB_TRY(cat.record_snapshot(row));
    PB_ASSIGN(int n, cat.close_tickets(b.host, {kTicketFullBundleNeeded, kTicketGap}));
    (void)n;
    return {};
  }));
  if (path_exists(request_path(c, b.host))) {
    ::unlink(request_path(c, b.host).c_str());
    PB_TRY(fsync_dir(c.requests));
  }
  PB_TRY(move_into(in.path, c.done, in.name));
  b.state = already ? "already_applied" : "applied";
  return {};
}

}  // namespace

std::string default_server_path() {
  const char* env = std::getenv("PLANB_SERVER");
  return env && *env ? env : "/var/lib/planb-server";
}

int assemble_exit_code(const AssembleReport& r) {
  if (r.failed > 0) return r.first_failure.code ? r.first_failure.code : kExitFailure;
  if (r.refused > 0) return r.applied + r.already > 0 ? kExitPartial : kExitRefused;
  if (!r.locked_hosts.empty()) return kExitLocked;
  return kExitOk;
}

Result<AssembleReport> assemble(const AssembleOptions& opt) {
  auto t0 = Clock::now();
  AssembleReport rep;
  Ctx c;
  c.root = opt.server.empty() ? default_server_path() : opt.server;
  rep.server = c.root;
  if (!opt.host.empty()) PB_TRY(validate_host_name(opt.host));
  c.inbox = join_path(c.root, "inbox");
  struct stat st;
  if (::stat(c.inbox.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return make_error(kExitNotFound, "failed to open inbox " + c.inbox + ": no such directory");
  c.done = join_path(c.inbox, "done");
  c.refused = join_path(c.inbox, "refused");
  // Inside the inbox (hidden), so planb-ship, which can only reach the inbox, brings it back.
  c.requests = join_path(c.inbox, ".requests");
  c.tmp = join_path(c.root, "tmp");
  c.locks = join_path(c.root, "locks");
  for (const auto* d : {&c.done, &c.refused, &c.requests, &c.tmp, &c.locks}) PB_TRY(mkdir_p(*d));
  ::chmod(c.tmp.c_str(), 0700);
  c.signers = join_path(c.root, "signers");
  PB_ASSIGN(c.server_key, load_key_file(join_path(c.root, "keys/server.key")));
  if (c.server_key.type != KeyType::ServerSecret)
    return make_error(kExitUsage, "failed to load " + join_path(c.root, "keys/server.key") + ": not a server secret key");
  PB_ASSIGN(Store store, Store::open(join_path(c.root, "store"), true));
  PB_ASSIGN(Catalog cat, Catalog::open(join_path(c.root, "catalog.db")));
  c.store = &store;
  c.catalog = &cat;

  // The inbox: every visible regular file (names starting with "." travel).
  std::map<std::string, std::vector<Inboxed>> by_host;
  std::vector<Inboxed> unreadable;
  {
    DIR* d = ::opendir(c.inbox.c_str());
    if (!d) return fail("failed to read inbox " + c.inbox + ": " + errstr(errno));
    std::vector<std::string> names;
    while (auto* e = ::readdir(d))
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      Inboxed in;
      in.name = n;
      in.path = join_path(c.inbox, n);
      struct stat fst;
      if (::lstat(in.path.c_str(), &fst) != 0 || !S_ISREG(fst.st_mode)) continue;  // done/, refused/, gone
      in.bytes = uint64_t(fst.st_size);
      auto h = read_sealed_header(in.path);
      if (!h.ok() || !validate_host_name(h->host).ok()) {
        if (opt.host.empty()) unreadable.push_back(in);
        continue;
      }
      in.header = *h;
      if (!opt.host.empty() && h->host != opt.host) continue;
      by_host[h->host].push_back(in);
    }
  }
  Progress prog("assemble", opt.progress);
  uint64_t done_items = 0, done_bytes = 0, total_bytes = 0;
  for (auto& [h, v] : by_host)
    for (auto& in : v) total_bytes += in.bytes;

  // Not a sealed bundle (or a bad host name): no host to file it under.
  for (const auto& in : unreadable) {
    AssembledBundle b;
    b.name = in.name;
    b.bytes = in.bytes;
    auto h = read_sealed_header(in.path);
    Error e = h.ok() ? make_error(kExitCorrupt, "failed to read " + in.path + ": bad host name '" + h->host + "'")
                     : h.error();
    if (!path_exists(in.path)) continue;
    auto st2 = refuse(c, in, b, kTicketCorrupt, e, std::nullopt);
    if (!st2.ok()) {
      b.state = "failed";
      b.reason = st2.error().message;
      b.code = st2.error().code;
      ++rep.failed;
      if (rep.first_failure.message.empty()) rep.first_failure = st2.error();
    } else {
      ++rep.refused;
    }
    rep.bundles.push_back(b);
  }

  for (auto& [host, list] : by_host) {
    std::stable_sort(list.begin(), list.end(),
                     [](const Inboxed& a, const Inboxed& b) { return a.header.sequence < b.header.sequence; });
    auto lock = FileLock::acquire(join_path(c.locks, "assemble-" + host), true, false, "host " + host);
    if (!lock.ok()) {
      if (lock.error().code != kExitLocked) return lock.error();
      rep.locked_hosts.push_back(host);
      continue;
    }
    // Anything left in our temp dir is from a killed run.
    PB_TRY(remove_tree_files(join_path(c.tmp, host)));
    store.objects().clean_stale_temps();  // temps of dead processes only
    store.objects().clean_stale_temps(store.host_dir(host) + "/manifests");
    store.objects().clean_stale_temps(store.host_dir(host) + "/refs");
    for (const auto& in : list) {
      if (!path_exists(in.path)) continue;  // handled by a run that held the lock before us
      AssembledBundle b;
      b.name = in.name;
      b.host = host;
      b.sequence = in.header.sequence;
      b.bytes = in.bytes;
      auto t = Clock::now();
      Status s = process(c, in, b);
      b.seconds = since(t);
      if (b.state == "gone") continue;
      done_bytes += in.bytes;
      prog.update(++done_items, done_bytes, total_bytes);
      if (!s.ok()) {
        b.state = "failed";
        b.reason = s.error().message;
        b.code = s.error().code;
        ++rep.failed;
        if (rep.first_failure.message.empty()) rep.first_failure = s.error();
        rep.bundles.push_back(b);
        break;  // later bundles of this host would only be gaps
      }
      if (b.state == "applied") ++rep.applied;
      else if (b.state == "already_applied") ++rep.already;
      else ++rep.refused;
      rep.bundles.push_back(b);
    }
  }
  prog.done();
  rep.seconds = since(t0);
  return rep;
}

}  // namespace planb
