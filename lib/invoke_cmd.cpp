#include "invoke_cmd.hpp"

#include <unistd.h>

#include <cstdio>

#include "fsutil.hpp"
#include "invoke_auth.hpp"
#include "json.hpp"

namespace planb {

namespace {

std::string cmdb_path(const ServerLayout& s, const std::string& cmdb) { return cmdb.empty() ? s.cmdb() : cmdb; }

void print(const std::string& text) { std::fwrite(text.data(), 1, text.size(), stdout); }

std::string hosts_table(const InvocationState& st) {
  std::string out = "invocation " + st.id + " (" + st.mode + ", " + st.customer + "): " + st.status;
  if (st.seconds_to_verified >= 0) out += ", all verified " + std::to_string(int(st.seconds_to_verified + 0.5)) + " s after start";
  out += "\n";
  char line[512];
  std::snprintf(line, sizeof line, "  %-16s %-15s %-9s %-10s %s\n", "HOST", "ADDRESS", "STATE", "VERIFIED", "CHECKS");
  out += line;
  for (const auto& h : st.hosts) {
    int ok = 0;
    for (const auto& c : h.checks) ok += c.passed;
    std::string ver = h.verified_s >= 0 ? std::to_string(int(h.verified_s + 0.5)) + " s" : "-";
    std::snprintf(line, sizeof line, "  %-16s %-15s %-9s %-10s %d/%zu\n", h.name.c_str(), h.address.c_str(), h.state.c_str(),
                  ver.c_str(), ok, h.checks.size());
    out += line;
    for (const auto& c : h.checks)
      out += "      [" + std::string(c.passed ? "PASS" : "FAIL") + "] " + c.label + (c.detail.empty() ? "" : ": " + c.detail) + "\n";
    if (!h.detail.empty() && h.state != "verified") out += "      " + h.detail + "\n";
  }
  return out;
}

Status finish(const ServerLayout& s, const InvocationState& st, bool json) {
  if (json) print(invocation_state_json(st));
  bool all = true;
  for (const auto& h : st.hosts) all = all && (h.state == "verified" || (h.state == "stopped" && h.verified_s >= 0));
  if (!all) {
    std::string bad;
    for (const auto& h : st.hosts)
      if (h.verified_s < 0) bad += (bad.empty() ? "" : ", ") + h.name + " (" + h.state + ")";
    return make_error(kExitNotVerified, "failed to verify invocation " + st.id + ": " + bad + "; see " +
                                            invocation_dir(s, st.id) + "/report.md");
  }
  return {};
}

Status start_common(InvokeStartOptions& o, bool drill) {
  ServerLayout s = ServerLayout::at(o.server);
  PB_ASSIGN(Cmdb cmdb, load_cmdb(cmdb_path(s, o.cmdb)));
  if (o.run.actor.empty()) o.run.actor = audit_actor();
  o.run.drill = drill;
  o.run.progress = o.run.progress && ::isatty(2);
  PB_ASSIGN(AuthorisedInvocation auth, authorise_start(s, cmdb, o.request, drill ? "drill" : "real", int64_t(::time(nullptr))));
  std::vector<std::string> approvers;
  for (const auto& a : auth.approvers) approvers.push_back(a.name + (a.email.empty() ? "" : " <" + a.email + ">"));
  if (o.run.progress) {
    std::fprintf(stderr, "authorised by %s\n", [&] {
      std::string x;
      for (const auto& a : approvers) x += (x.empty() ? "" : ", ") + a;
      return x;
    }().c_str());
  }
  PB_ASSIGN(InvocationState st, run_invocation(s, cmdb, auth.id, auth.customer, auth.mode, auth.hosts, auth.reason,
                                               approvers, o.run));
  if (!o.json) {
    print(hosts_table(st));
    print("report: " + invocation_dir(s, st.id) + "/report.md\n");
  }
  return finish(s, st, o.json);
}

}  // namespace

Status invoke_plan_main(const InvokePlanOptions& o) {
  ServerLayout s = ServerLayout::at(o.server);
  PB_ASSIGN(Cmdb cmdb, load_cmdb(cmdb_path(s, o.cmdb)));
  std::string customer = o.customer;
  std::vector<std::string> hosts = o.hosts;
  if (!o.request.empty()) {
    PB_ASSIGN(LoadedRequest lr, load_request(s, o.request));
    PB_ASSIGN(InvocationRequest r, InvocationRequest::decode(lr.bytes, lr.path));
    customer = r.customer;
    hosts = r.all_hosts ? std::vector<std::string>{} : r.hosts;
  }
  if (customer.empty()) {
    if (cmdb.customers.size() != 1)
      return make_error(kExitUsage, "failed to plan: say which customer (--customer NAME) or which request");
    customer = cmdb.customers[0].name;
  }
  PB_ASSIGN(InvocationPlan p, plan_invocation(s, cmdb, customer, hosts));
  print(o.json ? plan_json(p) + "\n" : plan_text(p));
  return {};
}

Status invoke_start_main(InvokeStartOptions o) { return start_common(o, false); }
Status invoke_drill_main(InvokeStartOptions o) { return start_common(o, true); }

Status invoke_status_main(const InvokeIdOptions& o) {
  ServerLayout s = ServerLayout::at(o.server);
  Cmdb cmdb;
  if (o.live) {
    PB_ASSIGN(cmdb, load_cmdb(cmdb_path(s, o.cmdb)));
  }
  PB_ASSIGN(InvocationState st, invocation_status(s, cmdb, o.id, o.live));
  print(o.json ? invocation_state_json(st) : hosts_table(st));
  return {};
}

Status invoke_stop_main(const InvokeIdOptions& o) {
  ServerLayout s = ServerLayout::at(o.server);
  PB_ASSIGN(InvocationState st, stop_invocation(s, o.id, audit_actor(), ::isatty(2)));
  if (o.json) print(invocation_state_json(st));
  else print("invocation " + st.id + " stopped" + (st.mode == "drill" ? "" : "; DNS restored") + "\n");
  return {};
}

Status invoke_report_main(const InvokeIdOptions& o) {
  ServerLayout s = ServerLayout::at(o.server);
  PB_ASSIGN(InvocationState st, load_invocation_state(s, o.id));
  PB_TRY(write_handover_report(s, st));
  std::string dir = invocation_dir(s, o.id);
  if (o.json || o.format == "json") {
    print(invocation_state_json(st));
  } else if (o.format == "html") {
    PB_ASSIGN(std::string h, read_file(dir + "/report.html"));
    print(h);
  } else {
    print(handover_markdown(s, st));
  }
  return {};
}

}  // namespace planb
