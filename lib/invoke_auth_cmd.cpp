// planb-invoke keygen | request | approve | submit | executives | authorise | audit.
#include "invoke_auth_cmd.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "catalog.hpp"
#include "cli.hpp"
#include "cmdb.hpp"
#include "fsutil.hpp"
#include "invoke_auth.hpp"
#include "json.hpp"
#include "retention.hpp"
#include "server_layout.hpp"
#include "timeparse.hpp"

namespace planb {

namespace {

constexpr const char* kProg = "planb-invoke";

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string o;
  for (size_t i = 0; i < v.size(); ++i) o += (i ? sep : "") + v[i];
  return o;
}

std::string str_array(const std::vector<std::string>& v) {
  std::vector<std::string> q;
  for (const auto& s : v) q.push_back(json_escape(s));
  return json_array(q);
}

std::string approvers_text(const std::vector<Approver>& as) {
  std::vector<std::string> v;
  for (const auto& a : as) v.push_back(a.name + " (" + a.key_id + ", signed " + utc_time(a.signed_at) + ")");
  return join(v, ", ");
}

std::string set_text(const ExecutiveSet& s) {
  std::vector<std::string> v;
  for (const auto& e : s.executives) v.push_back(e.name + " <" + e.email + "> " + exec_key_id(e.key));
  return "quorum " + std::to_string(s.quorum) + " of " + std::to_string(s.executives.size()) + ": " + join(v, ", ");
}

Result<Cmdb> server_cmdb(const ServerLayout& s, const std::string& cmdb) { return load_cmdb(cmdb.empty() ? s.cmdb() : cmdb); }

Result<const CmdbCustomer*> find_customer(const Cmdb& cmdb, const std::string& name) {
  if (name.empty()) return make_error(kExitUsage, "failed to parse options: --customer is required");
  const CmdbCustomer* c = cmdb.customer(name);
  if (!c) return make_error(kExitNotFound, "failed to find customer " + name + ": not in the CMDB");
  return c;
}

}  // namespace

// ---------------------------------------------------------------- keygen

Status invoke_keygen_main(const InvokeKeygenOptions& o) {
  PB_ASSIGN(std::string line, executive_keygen(o.out, o.force));
  if (o.json) {
    auto pk = parse_executive_public_key(line);
    std::printf("%s\n", JsonObject().add("secret_key", o.out).add("public_key", line).add("public_key_file", o.out + ".pub")
                            .add("key_id", pk.ok() ? exec_key_id(*pk) : "").str().c_str());
  } else {
    std::printf("%s\n", line.c_str());
    std::fprintf(stderr, "%s: wrote the secret key to %s (0600) and the public key to %s.pub; put the public key line in the "
                         "customer's CMDB ([[authorisation.executive]] key = \"...\")\n", kProg, o.out.c_str(), o.out.c_str());
  }
  return {};
}

// ---------------------------------------------------------------- request

Status invoke_request_main(const InvokeRequestOptions& o) {
  ServerLayout s = ServerLayout::at(o.server);
  int64_t now = catalog_now();
  if (o.reason.empty()) return make_error(kExitUsage, "failed to parse options: --reason TEXT is required");
  for (char c : o.reason)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return make_error(kExitUsage, "failed to parse options: --reason must be one line without control characters");
  if (!o.valid_for.empty() && !o.not_after.empty())
    return make_error(kExitUsage, "failed to parse options: --valid-for and --not-after exclude each other");
  PB_ASSIGN(Cmdb cmdb, server_cmdb(s, o.cmdb));
  PB_ASSIGN(const CmdbCustomer* cust, find_customer(cmdb, o.customer));
  InvocationRequest r;
  r.id = new_invocation_id();
  r.customer = cust->name;
  r.reason = o.reason;
  r.requested_at = now;
  r.not_before = now;
  if (!o.not_before.empty()) {
    PB_ASSIGN(r.not_before, parse_when(o.not_before, now));
  }
  int64_t valid_for = 24 * 3600;
  if (!o.valid_for.empty()) {
    PB_ASSIGN(valid_for, parse_duration(o.valid_for));
  }
  r.not_after = r.not_before + valid_for;
  if (!o.not_after.empty()) {
    PB_ASSIGN(r.not_after, parse_when(o.not_after, now));
  }
  if (r.not_after <= r.not_before)
    return make_error(kExitUsage, "failed to parse options: the request's window ends before it begins");

  PB_ASSIGN(Catalog cat, Catalog::open(s.catalog()));
  PB_ASSIGN(auto enrolled, enrolled_executives(cat, r.customer));
  if (!enrolled)
    return make_error(kExitNotAuthorised, "failed to make a request for " + r.customer + ": no executives are enrolled; run "
                                          "planb-invoke executives --customer " + r.customer + " --enrol first");
  r.executives_digest = enrolled->set.digest();
  r.quorum = enrolled->set.quorum;
  if (o.executives) {
    if (!o.mode.empty() || o.all || !o.hosts.empty())
      return make_error(kExitUsage, "failed to parse options: --executives takes no --mode, --host or --all");
    r.kind = kRequestKindExecutives;
    PB_ASSIGN(r.new_executives, executive_set_from_cmdb(*cust));
    if (r.new_executives.digest() == enrolled->set.digest())
      return make_error(kExitUsage, "failed to make an executives change request for " + r.customer +
                                        ": the CMDB's executives and quorum are the enrolled ones (nothing to change)");
  } else {
    if (o.mode != "real" && o.mode != "drill")
      return make_error(kExitUsage, "failed to parse options: --mode real|drill is required");
    r.mode = o.mode;
    if (o.all == !o.hosts.empty()) return make_error(kExitUsage, "failed to parse options: give --host HOST... or --all");
    r.all_hosts = o.all;
    for (const auto& h : o.hosts) {
      const CmdbHost* ch = cmdb.find(h);
      if (!ch) return make_error(kExitNotFound, "failed to make a request: host " + h + " is not in the CMDB");
      if (ch->customer != r.customer)
        return make_error(kExitUsage, "failed to make a request: host " + h + " belongs to customer " + ch->customer + ", not " + r.customer);
      r.hosts.push_back(h);
    }
    std::sort(r.hosts.begin(), r.hosts.end());
    r.hosts.erase(std::unique(r.hosts.begin(), r.hosts.end()), r.hosts.end());
    if (r.all_hosts && cmdb.hosts_of(r.customer).empty())
      return make_error(kExitUsage, "failed to make a request: customer " + r.customer + " has no hosts in the CMDB");
  }
  std::string bytes = r.encode();
  // Self-check: what we write must read back as itself.
  PB_TRY(InvocationRequest::decode(bytes, "(new request)"));
  std::string dir = invocation_dir(s, r.id);
  PB_TRY(mkdir_p(dir + "/approvals", 0755));
  PB_TRY(write_file_atomic(dir + "/request", bytes, 0644));
  PB_TRY(record_request(cat, r, bytes, audit_actor()));
  bool to_stdout = o.out.empty() || o.out == "-";
  if (!to_stdout) PB_TRY(write_file_atomic(o.out, bytes, 0644));
  if (o.json) {
    JsonObject j;
    j.add("id", r.id).add("kind", r.kind).add("customer", r.customer).add("request", dir + "/request")
        .add("request_hash", request_hash(bytes)).add("not_before", r.not_before).add("not_after", r.not_after)
        .add("quorum", r.quorum);
    if (r.kind == kRequestKindInvocation) j.add("mode", r.mode).add_raw("hosts", r.all_hosts ? "\"*\"" : str_array(r.hosts));
    if (!to_stdout) j.add("output", o.out);
    std::printf("%s\n", j.str().c_str());
  } else {
    if (to_stdout) std::fwrite(bytes.data(), 1, bytes.size(), stdout);
    std::fprintf(stderr, "%s: request %s written to %s%s; each executive runs: planb-invoke approve --key KEYFILE REQUEST, "
                         "then: planb-invoke submit APPROVAL (%d approvals needed)\n",
                 kProg, r.id.c_str(), (dir + "/request").c_str(), to_stdout ? "" : (" and " + o.out).c_str(), r.quorum);
  }
  return {};
}

// ---------------------------------------------------------------- approve

Status invoke_approve_main(const InvokeApproveOptions& o) {
  if (o.key.empty()) return make_error(kExitUsage, "failed to parse options: --key FILE is required");
  PB_ASSIGN(ExecutiveSecretKey key, load_executive_secret_key(o.key));
  std::string bytes;
  if (o.request.empty() || o.request == "-") {
    bytes.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    if (!path_exists(o.request)) return make_error(kExitNotFound, "failed to read invocation request " + o.request + ": no such file");
    PB_ASSIGN(bytes, read_file(o.request));
  }
  PB_ASSIGN(InvocationRequest r, InvocationRequest::decode(bytes, o.request.empty() ? "(standard input)" : o.request));
  int64_t now = catalog_now();
  int64_t signed_at = now;
  if (!o.signed_at.empty()) {
    PB_ASSIGN(signed_at, parse_when(o.signed_at, now));
  }
  std::string kid = exec_key_id(key.public_key);

  // What is being approved, on stderr (stdout may carry the approval).
  std::string what;
  if (r.kind == kRequestKindInvocation) {
    what = std::string(r.mode == "real" ? "a REAL INVOCATION (recovery on the rescue platform, DNS switched)"
                                        : "a DRILL (isolated network, no DNS changes)") +
           "\n  customer:  " + r.customer + "\n  hosts:     " + (r.all_hosts ? "all hosts of " + r.customer : join(r.hosts, ", "));
  } else {
    what = "a CHANGE OF EXECUTIVES\n  customer:  " + r.customer + "\n  new set:   " + set_text(r.new_executives);
  }
  std::fprintf(stderr,
               "You are approving %s\n  reason:    %s\n  valid:     %s to %s\n  request:   %s (hash %s)\n"
               "  your key:  %s%s\n  signed at: %s\n",
               what.c_str(), r.reason.c_str(), utc_time(r.not_before).c_str(), utc_time(r.not_after).c_str(), r.id.c_str(),
               request_hash(bytes).substr(0, 16).c_str(), kid.c_str(), key.comment.empty() ? "" : (" (" + key.comment + ")").c_str(),
               utc_time(signed_at).c_str());
  if (signed_at < r.not_before || signed_at > r.not_after)
    print_warning(kProg, "the signing time lies outside the request's window: this approval will not count");
  if (!o.yes && isatty(0) && isatty(2) && !o.request.empty() && o.request != "-") {
    std::fprintf(stderr, "Approve? [y/N] ");
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes")
      return make_error(kExitFailure, "failed to approve request " + r.id + ": not confirmed");
  }
  Approval a = sign_approval(bytes, r, key, signed_at);
  std::string text = a.encode();
  std::string out = o.out.empty() ? r.id + "." + kid + ".approval" : o.out;
  if (out == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
  } else {
    PB_TRY(write_file_atomic(out, text, 0644));
  }
  if (o.json) {
    std::printf("%s\n", JsonObject().add("request", r.id).add("request_hash", a.request_hash).add("key_id", kid)
                            .add("signed_at", signed_at).add("approval", out == "-" ? "" : out).str().c_str());
  } else if (out != "-") {
    std::fprintf(stderr, "%s: approval written to %s; send it to the Plan B operator (planb-invoke submit %s)\n", kProg,
                 out.c_str(), out.c_str());
  }
  return {};
}

// ---------------------------------------------------------------- submit

Status invoke_submit_main(const InvokeSubmitOptions& o) {
  ServerLayout s = ServerLayout::at(o.server);
  if (o.approvals.empty()) return make_error(kExitUsage, "failed to parse options: give one or more APPROVAL files");
  std::vector<std::string> items;
  std::optional<Error> first;
  for (const auto& f : o.approvals) {
    auto r = submit_approval(s, f, catalog_now());
    if (!r.ok()) {
      if (!first) first = r.error();
      if (o.json) items.push_back(JsonObject().add("file", f).add("accepted", false).add("error", r.error().message).str());
      else print_warning(kProg, r.error().message);
      continue;
    }
    if (o.json)
      items.push_back(JsonObject().add("file", f).add("accepted", true).add("request", r->request_id).add("key_id", r->key_id)
                          .add("name", r->approver.name).add("stored", r->path).str());
    else
      std::printf("accepted: %s (%s) approves request %s\n", r->approver.name.c_str(), r->key_id.c_str(), r->request_id.c_str());
  }
  if (o.json) std::printf("%s\n", json_array(items).c_str());
  if (first) return *first;
  return {};
}

// ---------------------------------------------------------------- executives

Status invoke_executives_main(const InvokeExecutivesOptions& o) {
  ServerLayout s = ServerLayout::at(o.server);
  if (o.enrol && !o.apply.empty()) return make_error(kExitUsage, "failed to parse options: --enrol and --apply exclude each other");
  PB_ASSIGN(Cmdb cmdb, server_cmdb(s, o.cmdb));
  PB_ASSIGN(const CmdbCustomer* cust, find_customer(cmdb, o.customer));
  int64_t now = catalog_now();
  if (!o.apply.empty()) {
    PB_ASSIGN(auto applied, apply_executives_change(s, cmdb, cust->name, o.apply, now));
    if (o.json)
      std::printf("%s\n", JsonObject().add("customer", cust->name).add("version", applied.version)
                              .add_raw("enrolled", applied.set.json()).add_raw("approvers", approvers_json(applied.approvers))
                              .str().c_str());
    else
      std::printf("enrolled version %d of the executives of %s (%s), approved by %s\n", applied.version, cust->name.c_str(),
                  set_text(applied.set).c_str(), approvers_text(applied.approvers).c_str());
    return {};
  }
  PB_ASSIGN(Catalog cat, Catalog::open(s.catalog()));
  if (o.enrol) {
    PB_ASSIGN(auto cur, enrolled_executives(cat, cust->name));
    if (cur)
      return make_error(kExitNotAuthorised,
                        "failed to enrol the executives of " + cust->name + ": version " + std::to_string(cur->version) +
                            " is enrolled; a change needs the enrolled quorum: planb-invoke request --customer " + cust->name +
                            " --executives --reason TEXT, approvals, then planb-invoke executives --customer " + cust->name +
                            " --apply REQUEST");
    PB_ASSIGN(ExecutiveSet set, executive_set_from_cmdb(*cust));
    PB_ASSIGN(int version, enrol_executive_set(cat, cust->name, set, "", audit_actor(), now));
    if (o.json)
      std::printf("%s\n", JsonObject().add("customer", cust->name).add("version", version).add_raw("enrolled", set.json()).str().c_str());
    else
      std::printf("enrolled the executives of %s from the CMDB (trust on first use): %s\n", cust->name.c_str(), set_text(set).c_str());
    return {};
  }
  // Show enrolled vs CMDB.
  PB_ASSIGN(auto cur, enrolled_executives(cat, cust->name));
  auto cm = executive_set_from_cmdb(*cust);
  std::string state = !cur ? "not_enrolled" : !cm.ok() ? "cmdb_invalid" : cm->digest() == cur->set.digest() ? "match" : "differs";
  if (o.json) {
    JsonObject j;
    j.add("customer", cust->name).add("state", state);
    if (cur) j.add("version", cur->version).add("enrolled_at", cur->enrolled_at).add("by_request", cur->request).add_raw("enrolled", cur->set.json());
    else j.add_raw("enrolled", "null");
    if (cm.ok()) j.add_raw("cmdb", cm->json());
    else j.add_raw("cmdb", "null").add("cmdb_error", cm.error().message);
    std::printf("%s\n", j.str().c_str());
    return {};
  }
  if (cur)
    std::printf("enrolled: version %d, %s, since %s%s\n", cur->version, set_text(cur->set).c_str(), utc_time(cur->enrolled_at).c_str(),
                cur->request.empty() ? " (trust on first use)" : (" (change request " + cur->request + ")").c_str());
  else
    std::printf("enrolled: none (planb-invoke executives --customer %s --enrol)\n", cust->name.c_str());
  if (cm.ok()) std::printf("CMDB:     %s\n", set_text(*cm).c_str());
  else std::printf("CMDB:     invalid: %s\n", cm.error().message.c_str());
  if (state == "match") std::printf("state:    the CMDB matches the enrolled set\n");
  else if (state == "differs")
    std::printf("state:    the CMDB differs from the enrolled set: invocations are refused until the change is approved by "
                "the enrolled quorum (planb-invoke request --customer %s --executives --reason TEXT; approve; submit; "
                "planb-invoke executives --customer %s --apply REQUEST)\n", cust->name.c_str(), cust->name.c_str());
  return {};
}

// ---------------------------------------------------------------- authorise

Status invoke_authorise_main(const InvokeAuthoriseOptions& o) {
  ServerLayout s = ServerLayout::at(o.server);
  if (o.request.empty()) return make_error(kExitUsage, "failed to parse options: REQUEST (id or file) is required");
  PB_ASSIGN(Cmdb cmdb, server_cmdb(s, o.cmdb));
  PB_ASSIGN(AuthorisedInvocation a, authorise_check(s, cmdb, o.request, o.mode, catalog_now(), o.dry_run));
  if (o.json) {
    std::printf("%s\n", JsonObject().add("id", a.id).add("customer", a.customer).add("mode", a.mode).add_raw("hosts", str_array(a.hosts))
                            .add("reason", a.reason).add_raw("approvers", approvers_json(a.approvers)).add("dry_run", o.dry_run)
                            .add("used", !o.dry_run).str().c_str());
  } else {
    std::printf("authorised: %s %s of %s, hosts %s\napproved by: %s\n%s\n", a.mode == "real" ? "invocation" : "drill", a.id.c_str(),
                a.customer.c_str(), join(a.hosts, ", ").c_str(), approvers_text(a.approvers).c_str(),
                o.dry_run ? "(dry run: the request is not marked used)" : "the request is now marked used");
  }
  return {};
}

// ---------------------------------------------------------------- audit

Status invoke_audit_main(const InvokeAuditOptions& o) {
  ServerLayout s = ServerLayout::at(o.server);
  if (!path_exists(s.catalog())) return make_error(kExitNotFound, "failed to open catalog " + s.catalog() + ": no such file");
  PB_ASSIGN(Catalog cat, Catalog::open(s.catalog()));
  PB_ASSIGN(AuditVerification v, audit_verify(cat));
  size_t shown = 0;
  std::vector<std::string> items;
  for (const auto& r : v.rows) {
    if (!o.invocation.empty() && r.invocation != o.invocation) continue;
    ++shown;
    if (o.json) {
      items.push_back(JsonObject().add("seq", r.seq).add("time", r.time).add("invocation", r.invocation).add("event", r.event)
                          .add("actor", r.actor).add_raw("detail", r.detail.empty() ? "null" : r.detail)
                          .add("prev_hash", r.prev_hash).add("hash", r.hash).str());
    } else {
      std::printf("%6lld %s %-10s %-32s %s %s\n", (long long)r.seq, utc_time(r.time).c_str(), r.event.c_str(),
                  r.invocation.empty() ? "-" : r.invocation.c_str(), r.actor.c_str(), r.detail.c_str());
    }
  }
  if (o.json) {
    JsonObject j;
    j.add_raw("rows", json_array(items)).add("total_rows", uint64_t(v.rows.size())).add("intact", v.first_bad == 0);
    if (v.first_bad) j.add("first_bad", v.first_bad).add("problem", v.problem);
    std::printf("%s\n", j.str().c_str());
  } else if (!v.first_bad) {
    std::printf("audit log: %zu rows, hash chain intact%s\n", v.rows.size(),
                o.invocation.empty() ? "" : (" (" + std::to_string(shown) + " of invocation " + o.invocation + ")").c_str());
  }
  if (v.first_bad)
    return make_error(kExitCorrupt, "failed to verify the audit log: row " + std::to_string(v.first_bad) + ": " + v.problem);
  return {};
}

}  // namespace planb
