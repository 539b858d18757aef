// The server catalog on SQLite. Every write runs in a transaction (BEGIN
// IMMEDIATE at top level, a SAVEPOINT when nested in transaction()).
#include "catalog.hpp"

#include <sqlite3.h>

#include <ctime>
#include <map>

#include "catalog_stmt.hpp"
#include "json.hpp"

namespace planb {

namespace {

// Migrations: kMigrations[i] takes the schema from version i to i+1. Add a
// new entry (never edit an old one) and bump kCatalogVersion.
const char* const kMigrations[] = {
    R"SQL(
CREATE TABLE snapshots (
  host        TEXT    NOT NULL,
  sequence    INTEGER NOT NULL,
  manifest    TEXT    NOT NULL,
  parent      TEXT    NOT NULL DEFAULT '',
  appliance   TEXT    NOT NULL DEFAULT '',
  bundle      TEXT    NOT NULL DEFAULT '',
  bytes       INTEGER NOT NULL DEFAULT 0,
  applied_at  INTEGER NOT NULL,
  state       TEXT    NOT NULL DEFAULT 'applied' CHECK (state IN ('applied', 'retired')),
  PRIMARY KEY (host, sequence)
);
CREATE TABLE images (
  id          INTEGER PRIMARY KEY,
  host        TEXT    NOT NULL,
  sequence    INTEGER NOT NULL,
  path        TEXT    NOT NULL,
  bytes       INTEGER NOT NULL DEFAULT 0,
  format      TEXT    NOT NULL DEFAULT 'qcow2',
  created_at  INTEGER NOT NULL,
  state       TEXT    NOT NULL DEFAULT 'candidate' CHECK (state IN ('candidate', 'good', 'failed', 'retired')),
  state_at    INTEGER NOT NULL
);
CREATE INDEX images_host ON images (host, sequence);
CREATE TABLE boot_tests (
  id          INTEGER PRIMARY KEY,
  image_id    INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
  passed      INTEGER NOT NULL CHECK (passed IN (0, 1)),
  report_dir  TEXT    NOT NULL DEFAULT '',
  started_at  INTEGER NOT NULL,
  seconds     REAL    NOT NULL DEFAULT 0,
  checks      TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(checks))
);
CREATE INDEX boot_tests_image ON boot_tests (image_id);
CREATE TABLE tickets (
  id          INTEGER PRIMARY KEY,
  host        TEXT    NOT NULL,
  sequence    INTEGER NOT NULL DEFAULT 0,
  image_id    INTEGER REFERENCES images (id) ON DELETE SET NULL,
  kind        TEXT    NOT NULL,
  summary     TEXT    NOT NULL,
  details     TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(details)),
  opened_at   INTEGER NOT NULL,
  closed_at   INTEGER,
  status      TEXT    NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed'))
);
CREATE INDEX tickets_host ON tickets (host, status);
)SQL",
    // 1 -> 2: invocation (planb-invoke, lib/invoke_auth.hpp): requests and
    // their use, the enrolled executive sets, the hash-chained audit log.
    R"SQL(
CREATE TABLE invocations (
  id          TEXT    PRIMARY KEY CHECK (length(id) = 32),
  kind        TEXT    NOT NULL CHECK (kind IN ('invocation', 'executives')),
  customer    TEXT    NOT NULL,
  mode        TEXT    NOT NULL DEFAULT '',
  request_hash TEXT   NOT NULL,
  requested_at INTEGER NOT NULL,
  state       TEXT    NOT NULL DEFAULT 'requested' CHECK (state IN ('requested', 'used')),
  used_at     INTEGER,
  approvers   TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(approvers))
);
CREATE TABLE executive_sets (
  customer    TEXT    NOT NULL,
  version     INTEGER NOT NULL,
  quorum      INTEGER NOT NULL CHECK (quorum >= 1),
  executives  TEXT    NOT NULL CHECK (json_valid(executives)),
  digest      TEXT    NOT NULL,
  enrolled_at INTEGER NOT NULL,
  request     TEXT    NOT NULL DEFAULT '',
  PRIMARY KEY (customer, version)
);
CREATE TABLE audit_log (
  seq         INTEGER PRIMARY KEY,
  time        INTEGER NOT NULL,
  invocation  TEXT    NOT NULL DEFAULT '',
  event       TEXT    NOT NULL,
  actor       TEXT    NOT NULL,
  detail      TEXT    NOT NULL DEFAULT '{}',
  prev_hash   TEXT    NOT NULL,
  hash        TEXT    NOT NULL
);
CREATE INDEX audit_log_invocation ON audit_log (invocation, seq);
CREATE TRIGGER audit_log_append_only_update BEFORE UPDATE ON audit_log
  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log
  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
)SQL",
};
static_assert(sizeof kMigrations / sizeof kMigrations[0] == kCatalogVersion);

int64_t or_now(int64_t t) { return t ? t : catalog_now(); }

bool valid_json(sqlite3* db, const std::string& s) {
  Stmt st(db, "SELECT json_valid(?)");
  st.bind(s);
  auto r = st.step("check JSON");
  return r.ok() && *r && st.i64(0) == 1;
}

const char* kSnapCols = "host, sequence, manifest, parent, appliance, bundle, bytes, applied_at, state";
SnapshotRow snap_of(const Stmt& s) {
  SnapshotRow r;
  r.host = s.text(0);
  r.sequence = uint64_t(s.i64(1));
  r.manifest = s.text(2);
  r.parent = s.text(3);
  r.appliance = s.text(4);
  r.bundle = s.text(5);
  r.bytes = uint64_t(s.i64(6));
  r.applied_at = s.i64(7);
  r.state = s.text(8);
  return r;
}

const char* kImageCols = "id, host, sequence, path, bytes, format, created_at, state";
ImageRow image_of(const Stmt& s) {
  ImageRow r;
  r.id = s.i64(0);
  r.host = s.text(1);
  r.sequence = uint64_t(s.i64(2));
  r.path = s.text(3);
  r.bytes = uint64_t(s.i64(4));
  r.format = s.text(5);
  r.created_at = s.i64(6);
  r.state = s.text(7);
  return r;
}

const char* kTicketCols = "id, host, sequence, coalesce(image_id, 0), kind, summary, details, opened_at, coalesce(closed_at, 0), status";
TicketRow ticket_of(const Stmt& s) {
  TicketRow r;
  r.id = s.i64(0);
  r.host = s.text(1);
  r.sequence = uint64_t(s.i64(2));
  r.image_id = s.i64(3);
  r.kind = s.text(4);
  r.summary = s.text(5);
  r.details_json = s.text(6);
  r.opened_at = s.i64(7);
  r.closed_at = s.i64(8);
  r.status = s.text(9);
  return r;
}

template <class Row, class F>
Result<std::vector<Row>> collect(Stmt& st, const std::string& what, F conv) {
  std::vector<Row> out;
  for (;;) {
    PB_ASSIGN(bool row, st.step(what));
    if (!row) break;
    out.push_back(conv(st));
  }
  return out;
}

template <class Row, class F>
Result<std::optional<Row>> first(Stmt& st, const std::string& what, F conv) {
  PB_ASSIGN(bool row, st.step(what));
  if (!row) return std::optional<Row>{};
  return std::optional<Row>(conv(st));
}

}  // namespace

int64_t catalog_now() { return int64_t(std::time(nullptr)); }

Catalog::Catalog(Catalog&& o) noexcept : db_(o.db_), path_(std::move(o.path_)), version_(o.version_) { o.db_ = nullptr; }

Catalog& Catalog::operator=(Catalog&& o) noexcept {
  if (this != &o) {
    if (db_) sqlite3_close_v2(db_);
    db_ = o.db_;
    o.db_ = nullptr;
    path_ = std::move(o.path_);
    version_ = o.version_;
  }
  return *this;
}

Catalog::~Catalog() {
  if (db_) sqlite3_close_v2(db_);
}

Status Catalog::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : db_error(db_);
    sqlite3_free(err);
    return make_error(code_of(db_), "failed to update catalog " + path_ + ": " + m);
  }
  return {};
}

Result<Catalog> Catalog::open(const std::string& path) {
  Catalog c;
  c.path_ = path;
  int rc = sqlite3_open_v2(path.c_str(), &c.db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return make_error(code_of(c.db_), "failed to open catalog " + path + ": " + db_error(c.db_));
  sqlite3_busy_timeout(c.db_, 30000);
  sqlite3_extended_result_codes(c.db_, 0);
  // WAL: readers never block the writer. synchronous=FULL: a committed
  // transaction survives a power cut (the inbox file moves only after it).
  {
    Stmt st(c.db_, "PRAGMA journal_mode=WAL");
    PB_ASSIGN(bool row, st.step("open catalog " + path));
    if (!row || st.text(0) != "wal")
      return make_error(kExitFailure, "failed to open catalog " + path + ": cannot switch to WAL mode");
  }
  PB_TRY(c.exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"));
  // Migrate under one write transaction, so two processes opening a new
  // catalog at once do not both create it.
  PB_TRY(c.transaction([&]() -> Status {
    PB_TRY(c.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"));
    Stmt st(c.db_, "SELECT max(version) FROM schema_version");
    PB_ASSIGN(bool row, st.step("read catalog version"));
    int v = row ? int(st.i64(0)) : 0;
    if (v > kCatalogVersion)
      return make_error(kExitCorrupt, "failed to open catalog " + path + ": schema version " + std::to_string(v) +
                                          " is newer than this program's " + std::to_string(kCatalogVersion));
    for (; v < kCatalogVersion; ++v) {
      PB_TRY(c.exec(kMigrations[v]));
      PB_TRY(c.exec("DELETE FROM schema_version"));
      Stmt ins(c.db_, "INSERT INTO schema_version (version) VALUES (?)");
      ins.bind(v + 1);
      PB_TRY(ins.run("record catalog version"));
    }
    c.version_ = v;
    return {};
  }));
  return c;
}

Status Catalog::transaction(const std::function<Status()>& body) {
  bool top = sqlite3_get_autocommit(db_) != 0;
  PB_TRY(exec(top ? "BEGIN IMMEDIATE" : "SAVEPOINT pb"));
  Status st = body();
  if (!st.ok()) {
    if (top) (void)exec("ROLLBACK");
    else (void)exec("ROLLBACK TO pb; RELEASE pb");
    return st;
  }
  Status fin = exec(top ? "COMMIT" : "RELEASE pb");
  if (!fin.ok() && top) (void)exec("ROLLBACK");
  return fin;
}

Status Catalog::record_snapshot(const SnapshotRow& s) {
  return transaction([&]() -> Status {
    Stmt st(db_, "INSERT OR REPLACE INTO snapshots (host, sequence, manifest, parent, appliance, bundle, bytes, applied_at, state)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    st.bind(s.host).bind(s.sequence).bind(s.manifest).bind(s.parent).bind(s.appliance).bind(s.bundle).bind(s.bytes)
        .bind(or_now(s.applied_at)).bind(s.state);
    return st.run("record snapshot " + s.host + " " + std::to_string(s.sequence) + " in the catalog");
  });
}

Result<std::optional<SnapshotRow>> Catalog::snapshot(const std::string& host, uint64_t sequence) {
  Stmt st(db_, (std::string("SELECT ") + kSnapCols + " FROM snapshots WHERE host = ? AND sequence = ?").c_str());
  st.bind(host).bind(sequence);
  return first<SnapshotRow>(st, "read the catalog", snap_of);
}

Result<std::optional<SnapshotRow>> Catalog::latest_snapshot(const std::string& host) {
  Stmt st(db_, (std::string("SELECT ") + kSnapCols +
                " FROM snapshots WHERE host = ? AND state = 'applied' ORDER BY sequence DESC LIMIT 1").c_str());
  st.bind(host);
  return first<SnapshotRow>(st, "read the catalog", snap_of);
}

Result<std::vector<SnapshotRow>> Catalog::snapshots(const std::string& host) {
  Stmt st(db_, (std::string("SELECT ") + kSnapCols + " FROM snapshots WHERE host = ? ORDER BY sequence").c_str());
  st.bind(host);
  return collect<SnapshotRow>(st, "read the catalog", snap_of);
}

Result<int64_t> Catalog::open_ticket(const TicketRow& t) {
  if (t.kind.empty()) return make_error(kExitUsage, "failed to open ticket: no kind given");
  if (!valid_json(db_, t.details_json)) return make_error(kExitUsage, "failed to open ticket: details are not valid JSON");
  int64_t id = 0;
  PB_TRY(transaction([&]() -> Status {
    Stmt st(db_, "INSERT INTO tickets (host, sequence, image_id, kind, summary, details, opened_at, closed_at, status)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    st.bind(t.host).bind(t.sequence);
    if (t.image_id) st.bind(t.image_id);
    else st.bind_null();
    st.bind(t.kind).bind(t.summary).bind(t.details_json).bind(or_now(t.opened_at));
    if (t.status == "closed") st.bind(or_now(t.closed_at)).bind("closed");
    else st.bind_null().bind("open");
    PB_TRY(st.run("open a ticket in the catalog"));
    id = sqlite3_last_insert_rowid(db_);
    return {};
  }));
  return id;
}

Result<int64_t> Catalog::record_refusal(const std::string& host, uint64_t sequence, const std::string& kind,
                                        const std::string& bundle, const std::string& reason, int exit_code,
                                        const std::string& appliance) {
  TicketRow t;
  t.host = host;
  t.sequence = sequence;
  t.kind = kind;
  t.summary = "bundle " + bundle + " refused (" + kind + ")";
  JsonObject d;
  d.add("bundle", bundle).add("reason", reason).add("exit_code", exit_code);
  if (!appliance.empty()) d.add("appliance", appliance);
  t.details_json = d.str();
  return open_ticket(t);
}

Status Catalog::close_ticket(int64_t id) {
  return transaction([&]() -> Status {
    Stmt st(db_, "UPDATE tickets SET status = 'closed', closed_at = ? WHERE id = ? AND status = 'open'");
    st.bind(catalog_now()).bind(id);
    PB_TRY(st.run("close ticket " + std::to_string(id)));
    if (sqlite3_changes(db_) == 0) {
      Stmt ex(db_, "SELECT 1 FROM tickets WHERE id = ?");
      ex.bind(id);
      PB_ASSIGN(bool row, ex.step("read the catalog"));
      if (!row) return make_error(kExitNotFound, "failed to close ticket " + std::to_string(id) + ": no such ticket");
    }
    return {};
  });
}

Result<int> Catalog::close_tickets(const std::string& host, const std::vector<std::string>& kinds) {
  int n = 0;
  PB_TRY(transaction([&]() -> Status {
    for (const auto& k : kinds) {
      Stmt st(db_, "UPDATE tickets SET status = 'closed', closed_at = ? WHERE host = ? AND kind = ? AND status = 'open'");
      st.bind(catalog_now()).bind(host).bind(k);
      PB_TRY(st.run("close tickets of " + host));
      n += sqlite3_changes(db_);
    }
    return {};
  }));
  return n;
}

Result<std::vector<TicketRow>> Catalog::open_tickets(const std::string& host) {
  std::string sql = std::string("SELECT ") + kTicketCols + " FROM tickets WHERE status = 'open'" +
                    (host.empty() ? "" : " AND host = ?") + " ORDER BY id";
  Stmt st(db_, sql.c_str());
  if (!host.empty()) st.bind(host);
  return collect<TicketRow>(st, "read the catalog", ticket_of);
}

Result<std::vector<TicketRow>> Catalog::tickets(const std::string& host) {
  std::string sql = std::string("SELECT ") + kTicketCols + " FROM tickets" + (host.empty() ? "" : " WHERE host = ?") +
                    " ORDER BY id";
  Stmt st(db_, sql.c_str());
  if (!host.empty()) st.bind(host);
  return collect<TicketRow>(st, "read the catalog", ticket_of);
}

Result<int64_t> Catalog::add_image(const ImageRow& img) {
  int64_t id = 0;
  PB_TRY(transaction([&]() -> Status {
    Stmt st(db_, "INSERT INTO images (host, sequence, path, bytes, format, created_at, state, state_at)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    int64_t t = or_now(img.created_at);
    st.bind(img.host).bind(img.sequence).bind(img.path).bind(img.bytes).bind(img.format).bind(t).bind(img.state).bind(t);
    PB_TRY(st.run("add image of " + img.host + " " + std::to_string(img.sequence) + " to the catalog"));
    id = sqlite3_last_insert_rowid(db_);
    return {};
  }));
  return id;
}

Status Catalog::set_image_state(int64_t image_id, const std::string& state) {
  return transaction([&]() -> Status {
    Stmt st(db_, "UPDATE images SET state = ?, state_at = ? WHERE id = ?");
    st.bind(state).bind(catalog_now()).bind(image_id);
    PB_TRY(st.run("set the state of image " + std::to_string(image_id) + " to " + state));
    if (sqlite3_changes(db_) == 0)
      return make_error(kExitNotFound, "failed to set the state of image " + std::to_string(image_id) + ": no such image");
    return {};
  });
}

Result<std::optional<ImageRow>> Catalog::image(int64_t image_id) {
  Stmt st(db_, (std::string("SELECT ") + kImageCols + " FROM images WHERE id = ?").c_str());
  st.bind(image_id);
  return first<ImageRow>(st, "read the catalog", image_of);
}

Result<std::vector<ImageRow>> Catalog::images(const std::string& host) {
  Stmt st(db_, (std::string("SELECT ") + kImageCols + " FROM images WHERE host = ? ORDER BY sequence, id").c_str());
  st.bind(host);
  return collect<ImageRow>(st, "read the catalog", image_of);
}

Result<std::optional<ImageRow>> Catalog::good_image(const std::string& host) {
  Stmt st(db_, (std::string("SELECT ") + kImageCols +
                " FROM images WHERE host = ? AND state = 'good' ORDER BY sequence DESC, id DESC LIMIT 1").c_str());
  st.bind(host);
  return first<ImageRow>(st, "read the catalog", image_of);
}

Result<int64_t> Catalog::record_boot_test(const BootTestRow& b) {
  if (!valid_json(db_, b.checks_json))
    return make_error(kExitUsage, "failed to record boot test: checks are not valid JSON");
  int64_t id = 0;
  PB_TRY(transaction([&]() -> Status {
    Stmt st(db_, "INSERT INTO boot_tests (image_id, passed, report_dir, started_at, seconds, checks) VALUES (?, ?, ?, ?, ?, ?)");
    st.bind(b.image_id).bind(b.passed ? 1 : 0).bind(b.report_dir).bind(or_now(b.started_at)).bind(b.seconds)
        .bind(b.checks_json);
    PB_TRY(st.run("record a boot test of image " + std::to_string(b.image_id)));
    id = sqlite3_last_insert_rowid(db_);
    return {};
  }));
  return id;
}

Result<std::vector<BootTestRow>> Catalog::boot_tests(int64_t image_id) {
  Stmt st(db_, "SELECT id, image_id, passed, report_dir, started_at, seconds, checks FROM boot_tests WHERE image_id = ? ORDER BY id");
  st.bind(image_id);
  return collect<BootTestRow>(st, "read the catalog", [](const Stmt& s) {
    BootTestRow r;
    r.id = s.i64(0);
    r.image_id = s.i64(1);
    r.passed = s.i64(2) != 0;
    r.report_dir = s.text(3);
    r.started_at = s.i64(4);
    r.seconds = s.real(5);
    r.checks_json = s.text(6);
    return r;
  });
}

Result<std::vector<HostStatus>> Catalog::list_hosts_status() {
  std::vector<std::string> hosts;
  {
    Stmt st(db_, "SELECT host FROM snapshots UNION SELECT host FROM images UNION SELECT host FROM tickets ORDER BY 1");
    PB_ASSIGN(hosts, collect<std::string>(st, "read the catalog", [](const Stmt& s) { return s.text(0); }));
  }
  std::vector<HostStatus> out;
  for (const auto& h : hosts) {
    HostStatus hs;
    hs.host = h;
    PB_ASSIGN(hs.latest, latest_snapshot(h));
    {
      Stmt st(db_, (std::string("SELECT ") + kImageCols +
                    " FROM images WHERE host = ? AND state = 'candidate' ORDER BY sequence DESC, id DESC LIMIT 1").c_str());
      st.bind(h);
      PB_ASSIGN(hs.candidate, first<ImageRow>(st, "read the catalog", image_of));
    }
    PB_ASSIGN(hs.good, good_image(h));
    PB_ASSIGN(hs.open_tickets, open_tickets(h));
    for (const auto& t : hs.open_tickets)
      if (t.kind == kTicketFullBundleNeeded || t.kind == kTicketGap) hs.full_bundle_needed = true;
    out.push_back(std::move(hs));
  }
  return out;
}

}  // namespace planb
