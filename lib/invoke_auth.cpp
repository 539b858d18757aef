// Server side of invocation authorisation: requests on record, enrolled
// executive sets, approvals submitted, and the one gate every start passes.
#include "invoke_auth.hpp"

#include <dirent.h>

#include <algorithm>
#include <ctime>

#include "catalog.hpp"
#include "catalog_stmt.hpp"
#include "fsutil.hpp"
#include "json.hpp"

namespace planb {

std::string invocations_dir(const ServerLayout& s) { return s.root + "/invocations"; }
std::string invocation_dir(const ServerLayout& s, const std::string& id) { return invocations_dir(s) + "/" + id; }

std::string utc_time(int64_t t) {
  char b[32];
  time_t tt = time_t(t);
  std::strftime(b, sizeof b, "%Y-%m-%d %H:%M:%SZ", std::gmtime(&tt));
  return b;
}

std::string approvers_json(const std::vector<Approver>& as) {
  std::vector<std::string> items;
  for (const auto& a : as)
    items.push_back(
        JsonObject().add("name", a.name).add("email", a.email).add("key_id", a.key_id).add("signed_at", a.signed_at).str());
  return json_array(items);
}

std::string approver_actor(const Approver& a) {
  return "executive:" + a.name + (a.email.empty() ? "" : " <" + a.email + ">") + " (" + a.key_id + ")";
}

Result<std::optional<EnrolledSet>> enrolled_executives(Catalog& cat, const std::string& customer) {
  sqlite3* db = cat.handle();
  Stmt st(db, "SELECT version, quorum, enrolled_at, request, digest FROM executive_sets WHERE customer = ? ORDER BY version DESC LIMIT 1");
  st.bind(customer);
  PB_ASSIGN(bool row, st.step("read the enrolled executives of " + customer));
  if (!row) return std::optional<EnrolledSet>{};
  EnrolledSet e;
  e.version = int(st.i64(0));
  e.set.quorum = int(st.i64(1));
  e.enrolled_at = st.i64(2);
  e.request = st.text(3);
  std::string digest = st.text(4);
  Stmt ex(db, "SELECT json_extract(value, '$.key'), json_extract(value, '$.name'), json_extract(value, '$.email')"
              " FROM executive_sets, json_each(executive_sets.executives) WHERE customer = ? AND version = ?");
  ex.bind(customer).bind(e.version);
  for (;;) {
    PB_ASSIGN(bool r, ex.step("read the enrolled executives of " + customer));
    if (!r) break;
    auto raw = parse_executive_public_key(ex.text(0));
    if (!raw.ok()) return make_error(kExitCorrupt, "failed to read the enrolled executives of " + customer + ": " + raw.error().message);
    e.set.executives.push_back({*raw, ex.text(1), ex.text(2)});
  }
  std::sort(e.set.executives.begin(), e.set.executives.end(), [](const auto& x, const auto& y) { return x.key < y.key; });
  if (e.set.digest() != digest)
    return make_error(kExitCorrupt, "failed to read the enrolled executives of " + customer + ": version " +
                                        std::to_string(e.version) + " does not match its digest (catalog altered)");
  return std::optional<EnrolledSet>(std::move(e));
}

Result<int> enrol_executive_set(Catalog& cat, const std::string& customer, const ExecutiveSet& set,
                                const std::string& request_id, const std::string& actor, int64_t now,
                                const std::function<Status()>& also) {
  int version = 0;
  PB_TRY(cat.transaction([&]() -> Status {
    PB_ASSIGN(auto cur, enrolled_executives(cat, customer));
    if (request_id.empty() && cur)
      return make_error(kExitNotAuthorised, "failed to enrol the executives of " + customer + ": already enrolled (version " +
                                                std::to_string(cur->version) + "); a change needs the old quorum's approval");
    version = cur ? cur->version + 1 : 1;
    std::vector<std::string> items;
    for (const auto& e : set.executives)
      items.push_back(JsonObject().add("key", exec_key_hex(e.key)).add("name", e.name).add("email", e.email).str());
    Stmt st(cat.handle(), "INSERT INTO executive_sets (customer, version, quorum, executives, digest, enrolled_at, request)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?)");
    st.bind(customer).bind(version).bind(set.quorum).bind(json_array(items)).bind(set.digest()).bind(now).bind(request_id);
    PB_TRY(st.run("enrol the executives of " + customer));
    if (also) PB_TRY(also());
    JsonObject d;
    d.add("customer", customer).add("version", version).add("quorum", set.quorum).add("digest", set.digest());
    std::vector<std::string> ids;
    for (const auto& e : set.executives) ids.push_back(json_escape(e.name + " (" + exec_key_id(e.key) + ")"));
    d.add_raw("executives", json_array(ids));
    d.add("by", request_id.empty() ? "first enrolment (trust on first use)" : "change approved by the previous quorum");
    return audit_append(cat, request_id, "executives", actor, d.str(), now);
  }));
  return version;
}

Status record_request(Catalog& cat, const InvocationRequest& r, const std::string& bytes, const std::string& actor) {
  return cat.transaction([&]() -> Status {
    Stmt st(cat.handle(), "INSERT INTO invocations (id, kind, customer, mode, request_hash, requested_at) VALUES (?, ?, ?, ?, ?, ?)");
    st.bind(r.id).bind(r.kind).bind(r.customer).bind(r.mode).bind(request_hash(bytes)).bind(r.requested_at);
    PB_TRY(st.run("record request " + r.id + " in the catalog"));
    JsonObject d;
    d.add("kind", r.kind).add("customer", r.customer).add("reason", r.reason).add("not_before", r.not_before)
        .add("not_after", r.not_after).add("request_hash", request_hash(bytes));
    if (r.kind == kRequestKindInvocation) {
      std::vector<std::string> hs;
      for (const auto& h : r.hosts) hs.push_back(json_escape(h));
      d.add("mode", r.mode).add_raw("hosts", r.all_hosts ? "\"*\"" : json_array(hs));
    } else {
      d.add("new_quorum", r.new_executives.quorum).add("new_digest", r.new_executives.digest());
    }
    return audit_append(cat, r.id, "request", actor, d.str(), r.requested_at);
  });
}

Result<std::vector<std::pair<std::string, std::string>>> read_approvals(const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;  // none submitted
  std::vector<std::string> names;
  while (auto* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 9 && n.compare(n.size() - 9, 9, ".approval") == 0 && n[0] != '.') names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    PB_ASSIGN(std::string text, read_file(dir + "/" + n));
    out.emplace_back(n, std::move(text));
  }
  return out;
}

Result<LoadedRequest> load_request(const ServerLayout& s, const std::string& id_or_path) {
  LoadedRequest lr;
  std::string by_id = invocation_dir(s, id_or_path) + "/request";
  if (valid_invocation_id(id_or_path) && path_exists(by_id)) {
    lr.path = by_id;
    lr.id_hint = id_or_path;
  } else if (path_exists(id_or_path)) {
    lr.path = id_or_path;
  } else {
    return make_error(kExitNotFound, "failed to read invocation request " + id_or_path + ": " +
                                         (valid_invocation_id(id_or_path) ? "no such request on this server (" + by_id + ")"
                                                                          : "no such file"));
  }
  PB_ASSIGN(lr.bytes, read_file(lr.path));
  return lr;
}

namespace {

struct Gate {
  InvocationRequest req;
  EnrolledSet enrolled;
  QuorumCheck quorum;
  std::vector<std::string> hosts;
  std::string server_request;
};

// Every check but "used" under a write lock; `refuse` builds the error.
Result<Gate> gate(const ServerLayout& s, const Cmdb& cmdb, Catalog& cat, const LoadedRequest& lr, std::string_view kind,
                  std::string_view wanted_mode, int64_t now) {
  auto refuse = [](const std::string& why) { return make_error(kExitNotAuthorised, why); };
  Gate g;
  auto dec = InvocationRequest::decode(lr.bytes, lr.path);
  if (!dec.ok()) return refuse("the request is malformed or was altered: " + dec.error().message);
  g.req = *dec;
  const auto& r = g.req;
  if (!lr.id_hint.empty() && r.id != lr.id_hint) return refuse("the request file under " + lr.id_hint + " holds id " + r.id);
  g.server_request = invocation_dir(s, r.id) + "/request";
  if (lr.path != g.server_request && path_exists(g.server_request)) {
    PB_ASSIGN(std::string server_copy, read_file(g.server_request));
    if (server_copy != lr.bytes) return refuse("the request differs from the server's copy " + g.server_request + " (altered)");
  }
  if (r.kind != kind) {
    if (r.kind == kRequestKindExecutives)
      return refuse("request " + r.id + " is an executives change; apply it with: planb-invoke executives --customer " +
                    r.customer + " --apply " + r.id);
    return refuse("request " + r.id + " is an invocation, not an executives change");
  }
  // The text on record when the request was made.
  {
    Stmt st(cat.handle(), "SELECT request_hash, state, coalesce(used_at, 0) FROM invocations WHERE id = ?");
    st.bind(r.id);
    PB_ASSIGN(bool row, st.step("read the catalog"));
    if (row) {
      if (st.text(0) != request_hash(lr.bytes))
        return refuse("the text of request " + r.id + " differs from the one recorded when it was made (altered)");
      if (st.text(1) == "used")
        return refuse("request " + r.id + " was already used at " + utc_time(st.i64(2)) +
                      "; a request starts once only: make a new request");
    }
  }
  if (kind == kRequestKindInvocation && r.mode != wanted_mode)
    return refuse("request " + r.id + " is for " + (r.mode == "drill" ? "a drill" : "a real invocation") + ", not " +
                  (wanted_mode == "drill" ? "a drill" : "a real invocation") + " (make a request with --mode " +
                  std::string(wanted_mode) + ")");
  if (now < r.not_before) return refuse("request " + r.id + " is not valid before " + utc_time(r.not_before));
  if (now > r.not_after) return refuse("request " + r.id + " expired at " + utc_time(r.not_after));
  const CmdbCustomer* c = cmdb.customer(r.customer);
  if (!c) return refuse("customer " + r.customer + " is not in the CMDB");
  PB_ASSIGN(auto enrolled, enrolled_executives(cat, r.customer));
  if (!enrolled)
    return refuse("no executives are enrolled for " + r.customer + ": run planb-invoke executives --customer " + r.customer +
                  " --enrol");
  g.enrolled = *enrolled;
  if (kind == kRequestKindInvocation) {
    auto cm = executive_set_from_cmdb(*c);
    if (!cm.ok() || cm->digest() != g.enrolled.set.digest())
      return refuse("the CMDB's executives for " + r.customer + " changed since enrolment" +
                    (cm.ok() ? "" : " (" + cm.error().message + ")") +
                    "; approve the change: planb-invoke request --customer " + r.customer +
                    " --executives --reason TEXT, approved by the enrolled executives (quorum " +
                    std::to_string(g.enrolled.set.quorum) + "), then planb-invoke executives --customer " + r.customer +
                    " --apply REQUEST");
  }
  if (r.executives_digest != g.enrolled.set.digest() || r.quorum != g.enrolled.set.quorum)
    return refuse("request " + r.id + " was made for another executive set of " + r.customer +
                  " (the enrolled set changed since): make a new request");
  if (kind == kRequestKindInvocation) {
    auto cust_hosts = cmdb.hosts_of(r.customer);
    if (r.all_hosts) {
      for (const auto* h : cust_hosts) g.hosts.push_back(h->name);
      if (g.hosts.empty()) return refuse("customer " + r.customer + " has no hosts in the CMDB");
    } else {
      for (const auto& h : r.hosts) {
        const CmdbHost* ch = cmdb.find(h);
        if (!ch || ch->customer != r.customer) return refuse("host " + h + " is not a host of " + r.customer + " in the CMDB");
        g.hosts.push_back(h);
      }
    }
  }
  PB_ASSIGN(auto files, read_approvals(invocation_dir(s, r.id) + "/approvals"));
  g.quorum = check_approvals(lr.bytes, r, g.enrolled.set, files, now);
  if (!g.quorum.met()) return refuse("not enough approvals for request " + r.id + ": " + g.quorum.summary());
  return g;
}

// Marks the request used (inserting its row if it was made elsewhere), in the caller's transaction.
Status mark_used(Catalog& cat, const InvocationRequest& r, const std::string& bytes, const QuorumCheck& q, int64_t now) {
  Stmt ins(cat.handle(), "INSERT OR IGNORE INTO invocations (id, kind, customer, mode, request_hash, requested_at) VALUES (?, ?, ?, ?, ?, ?)");
  ins.bind(r.id).bind(r.kind).bind(r.customer).bind(r.mode).bind(request_hash(bytes)).bind(r.requested_at);
  PB_TRY(ins.run("record request " + r.id));
  Stmt up(cat.handle(), "UPDATE invocations SET state = 'used', used_at = ?, approvers = ? WHERE id = ? AND state = 'requested' AND request_hash = ?");
  up.bind(now).bind(approvers_json(q.approvers)).bind(r.id).bind(request_hash(bytes));
  PB_TRY(up.run("mark request " + r.id + " used"));
  if (sqlite3_changes(cat.handle()) != 1)
    return make_error(kExitNotAuthorised, "request " + r.id + " was already used; a request starts once only");
  return {};
}

Error refusal(Catalog& cat, const std::string& id, const std::string& what, const Error& e, bool audit,
              std::string_view mode) {
  if (audit && e.code == kExitNotAuthorised) {
    JsonObject d;
    d.add("reason", e.message).add("command", what);
    if (!mode.empty()) d.add("mode", mode);
    (void)audit_append(cat, id, "refusal", audit_actor(), d.str());
  }
  if (e.code != kExitNotAuthorised) return e;
  return make_error(kExitNotAuthorised, "failed to authorise " + what + ": " + e.message);
}

}  // namespace

Result<AuthorisedInvocation> authorise_check(const ServerLayout& s, const Cmdb& cmdb, const std::string& id_or_request_path,
                                             std::string_view wanted_mode, int64_t now, bool dry_run) {
  if (wanted_mode != "real" && wanted_mode != "drill")
    return make_error(kExitUsage, "failed to authorise: mode must be real or drill");
  PB_ASSIGN(LoadedRequest lr, load_request(s, id_or_request_path));
  PB_ASSIGN(Catalog cat, Catalog::open(s.catalog()));
  std::string id = lr.id_hint.empty() ? id_or_request_path : lr.id_hint;
  auto g = gate(s, cmdb, cat, lr, kRequestKindInvocation, wanted_mode, now);
  if (g.ok()) id = g->req.id;
  else if (auto d = InvocationRequest::decode(lr.bytes, lr.path); d.ok()) id = d->id;
  std::string what = std::string(wanted_mode == "drill" ? "drill " : "invocation ") + id;
  if (!g.ok()) return refusal(cat, valid_invocation_id(id) ? id : "", what, g.error(), !dry_run, wanted_mode);
  AuthorisedInvocation a;
  a.id = g->req.id;
  a.customer = g->req.customer;
  a.mode = g->req.mode;
  a.hosts = g->hosts;
  a.reason = g->req.reason;
  a.approvers = g->quorum.approvers;
  a.not_before = g->req.not_before;
  a.not_after = g->req.not_after;
  a.request_path = g->server_request;
  if (dry_run) return a;
  Status st = cat.transaction([&]() -> Status {
    PB_TRY(mark_used(cat, g->req, lr.bytes, g->quorum, now));
    std::vector<std::string> hs;
    for (const auto& h : a.hosts) hs.push_back(json_escape(h));
    JsonObject d;
    d.add("customer", a.customer).add("mode", a.mode).add_raw("hosts", json_array(hs)).add("reason", a.reason)
        .add_raw("approvers", approvers_json(a.approvers)).add("request_hash", request_hash(lr.bytes));
    return audit_append(cat, a.id, "start", audit_actor(), d.str(), now);
  });
  if (!st.ok()) return refusal(cat, a.id, what, st.error(), true, wanted_mode);
  return a;
}

Result<AuthorisedInvocation> authorise_start(const ServerLayout& s, const Cmdb& cmdb, const std::string& id_or_request_path,
                                             std::string_view wanted_mode, int64_t now) {
  return authorise_check(s, cmdb, id_or_request_path, wanted_mode, now, false);
}

Result<ExecutivesApplied> apply_executives_change(const ServerLayout& s, const Cmdb& cmdb, const std::string& customer,
                                                  const std::string& id_or_request_path, int64_t now) {
  PB_ASSIGN(LoadedRequest lr, load_request(s, id_or_request_path));
  PB_ASSIGN(Catalog cat, Catalog::open(s.catalog()));
  std::string id = lr.id_hint.empty() ? id_or_request_path : lr.id_hint;
  if (auto d = InvocationRequest::decode(lr.bytes, lr.path); d.ok()) id = d->id;
  std::string what = "the executives change " + id;
  auto g = gate(s, cmdb, cat, lr, kRequestKindExecutives, "", now);
  if (g.ok() && g->req.customer != customer)
    g = make_error(kExitNotAuthorised, "request " + g->req.id + " changes the executives of " + g->req.customer + ", not " + customer);
  if (!g.ok()) return refusal(cat, valid_invocation_id(id) ? id : "", what, g.error(), true, "");
  ExecutivesApplied out;
  out.approvers = g->quorum.approvers;
  out.set = g->req.new_executives;
  auto v = enrol_executive_set(cat, customer, out.set, g->req.id, audit_actor(), now,
                               [&]() { return mark_used(cat, g->req, lr.bytes, g->quorum, now); });
  if (!v.ok()) return refusal(cat, g->req.id, what, v.error(), true, "");
  out.version = *v;
  return out;
}

Result<SubmittedApproval> submit_approval(const ServerLayout& s, const std::string& file, int64_t now) {
  PB_ASSIGN(std::string text, read_file(file));
  auto bad = [&](const std::string& why) { return make_error(kExitNotAuthorised, "failed to submit approval " + file + ": " + why); };
  auto a = Approval::decode(text, file);
  if (!a.ok()) return bad(a.error().message);
  std::string dir = invocation_dir(s, a->request_id);
  if (!path_exists(dir + "/request"))
    return make_error(kExitNotFound, "failed to submit approval " + file + ": no request " + a->request_id + " on this server");
  PB_ASSIGN(std::string bytes, read_file(dir + "/request"));
  auto req = InvocationRequest::decode(bytes, dir + "/request");
  if (!req.ok()) return bad(req.error().message);
  PB_ASSIGN(Catalog cat, Catalog::open(s.catalog()));
  PB_ASSIGN(auto enrolled, enrolled_executives(cat, req->customer));
  if (!enrolled) return bad("no executives are enrolled for " + req->customer);
  auto q = check_approvals(bytes, *req, enrolled->set, {{file, text}}, now);
  SubmittedApproval out;
  out.request_id = a->request_id;
  out.key_id = exec_key_id(a->key);
  if (q.approvers.empty()) {
    std::string why = q.verdicts.empty() ? "not counted" : q.verdicts[0].reason;
    JsonObject d;
    d.add("reason", "approval " + file + " refused: " + why).add("command", "submit").add("key_id", out.key_id);
    (void)audit_append(cat, a->request_id, "refusal", audit_actor(), d.str());
    return bad(why);
  }
  out.approver = q.approvers[0];
  out.path = dir + "/approvals/" + out.key_id + ".approval";
  PB_TRY(mkdir_p(dir + "/approvals", 0755));
  PB_TRY(write_file_atomic(out.path, text, 0644));
  JsonObject d;
  d.add("key_id", out.key_id).add("name", out.approver.name).add("signed_at", a->signed_at).add("request_hash", a->request_hash);
  PB_TRY(audit_append(cat, a->request_id, "approval", approver_actor(out.approver), d.str()));
  return out;
}

}  // namespace planb
