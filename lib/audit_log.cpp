// The invocation audit log: an append-only, hash-chained catalog table.
// hash = BLAKE2b-256(prev_hash (32 raw bytes) || audit_canonical(row)).
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>

#include "catalog.hpp"
#include "catalog_stmt.hpp"
#include "hash.hpp"
#include "invoke_auth.hpp"

namespace planb {

namespace {
const std::string kZeroHash(64, '0');

void field(std::string& out, std::string_view name, std::string_view v) {
  out += name;
  out += ' ';
  out += std::to_string(v.size());
  out += ':';
  out += v;
  out += '\n';
}
}  // namespace

std::string audit_canonical(const AuditRow& r) {
  std::string out = "planb-audit 1\n";
  field(out, "seq", std::to_string(r.seq));
  field(out, "time", std::to_string(r.time));
  field(out, "invocation", r.invocation);
  field(out, "event", r.event);
  field(out, "actor", r.actor);
  field(out, "detail", r.detail);
  return out;
}

std::string audit_row_hash(const AuditRow& r) {
  ensure_sodium();
  Hasher h;
  auto prev = Hash::from_hex(r.prev_hash);
  Hash p = prev ? *prev : Hash{};
  h.update(p.b.data(), p.b.size());
  std::string c = audit_canonical(r);
  h.update(c.data(), c.size());
  return h.final().hex();
}

Status audit_append(Catalog& cat, const std::string& invocation, const std::string& event, const std::string& actor,
                    const std::string& detail_json, int64_t time) {
  sqlite3* db = cat.handle();
  {
    Stmt v(db, "SELECT json_valid(?)");
    v.bind(detail_json);
    PB_ASSIGN(bool row, v.step("check audit detail"));
    if (!row || v.i64(0) != 1)
      return make_error(kExitUsage, "failed to append to the audit log: the detail of event " + event + " is not valid JSON");
  }
  if (event.empty()) return make_error(kExitUsage, "failed to append to the audit log: empty event name");
  return cat.transaction([&]() -> Status {
    AuditRow r;
    r.time = time ? time : catalog_now();
    r.invocation = invocation;
    r.event = event;
    r.actor = actor;
    r.detail = detail_json;
    Stmt last(db, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1");
    PB_ASSIGN(bool row, last.step("read the audit log"));
    r.seq = row ? last.i64(0) + 1 : 1;
    r.prev_hash = row ? last.text(1) : kZeroHash;
    r.hash = audit_row_hash(r);
    Stmt ins(db, "INSERT INTO audit_log (seq, time, invocation, event, actor, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    ins.bind(r.seq).bind(r.time).bind(r.invocation).bind(r.event).bind(r.actor).bind(r.detail).bind(r.prev_hash).bind(r.hash);
    return ins.run("append " + event + " to the audit log");
  });
}

Status audit_append(const ServerLayout& s, const std::string& invocation, const std::string& event,
                    const std::string& actor, const std::string& detail_json) {
  PB_ASSIGN(Catalog cat, Catalog::open(s.catalog()));
  return audit_append(cat, invocation, event, actor, detail_json);
}

Result<AuditVerification> audit_verify(Catalog& cat) {
  AuditVerification out;
  Stmt st(cat.handle(), "SELECT seq, time, invocation, event, actor, detail, prev_hash, hash FROM audit_log ORDER BY seq");
  std::string prev = kZeroHash;
  int64_t expect = 1;
  for (;;) {
    PB_ASSIGN(bool row, st.step("read the audit log"));
    if (!row) break;
    AuditRow r;
    r.seq = st.i64(0);
    r.time = st.i64(1);
    r.invocation = st.text(2);
    r.event = st.text(3);
    r.actor = st.text(4);
    r.detail = st.text(5);
    r.prev_hash = st.text(6);
    r.hash = st.text(7);
    if (!out.first_bad) {
      std::string problem;
      if (r.seq != expect) problem = "sequence " + std::to_string(r.seq) + " where " + std::to_string(expect) + " was expected (a row was removed)";
      else if (r.prev_hash != prev) problem = "its prev_hash does not match the previous row's hash (a row was removed or replaced)";
      else if (audit_row_hash(r) != r.hash) problem = "its hash does not match its contents (the row was altered)";
      if (!problem.empty()) {
        out.first_bad = r.seq ? r.seq : -1;
        out.problem = problem;
      }
    }
    prev = r.hash;
    expect = r.seq + 1;
    out.rows.push_back(std::move(r));
  }
  return out;
}

std::string audit_actor() {
  std::string user;
  if (const char* s = std::getenv("SUDO_USER"); s && *s) user = s;
  else if (struct passwd* pw = getpwuid(getuid())) user = pw->pw_name;
  else user = "uid " + std::to_string(getuid());
  return "operator:" + user;
}

}  // namespace planb
