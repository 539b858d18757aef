// planb-invoke dns ID --apply | --rollback | --show: the operator's manual lever
// on an invocation's DNS redirection (lib/dns_redirect.hpp).
#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dns_redirect.hpp"
#include "fsutil.hpp"
#include "invoke_auth.hpp"
#include "json.hpp"
#include "server_layout.hpp"

namespace planb {

using nlohmann::json;

namespace {

struct InvocationInfo {
  std::string dir, customer, mode;
  std::map<std::string, std::string> addresses;  // from state.json
};

bool valid_id(const std::string& id) {
  if (id.size() < 8 || id.size() > 64) return false;
  for (char c : id)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// The customer, mode and host addresses of an invocation: state.json when the
// orchestrator has written it, else the request ("customer" key, JSON or key = value lines).
Result<InvocationInfo> read_invocation(const ServerLayout& s, const std::string& id) {
  if (!valid_id(id))
    return make_error(kExitUsage, "failed to parse options: invocation id '" + id + "' is not hex digits (8..64)");
  InvocationInfo inv;
  inv.dir = s.root + "/invocations/" + id;
  if (!path_exists(inv.dir)) return make_error(kExitNotFound, "failed to find invocation " + id + ": no " + inv.dir);
  std::string state = inv.dir + "/state.json";
  if (path_exists(state)) {
    PB_ASSIGN(std::string text, read_file(state));
    try {
      json j = json::parse(text);
      inv.customer = j.value("customer", "");
      inv.mode = j.value("mode", "");
      if (j.contains("hosts"))
        for (const auto& h : j.at("hosts")) {
          std::string name = h.value("name", ""), addr = h.value("address", "");
          if (!name.empty() && !addr.empty()) inv.addresses[name] = addr;
        }
    } catch (const std::exception& e) {
      return make_error(kExitCorrupt, "failed to read " + state + ": " + e.what());
    }
  }
  std::string req = inv.dir + "/request";
  if (inv.customer.empty() && path_exists(req)) {
    PB_ASSIGN(std::string text, read_file(req));
    try {
      json j = json::parse(text);
      if (j.is_object()) {
        inv.customer = j.value("customer", "");
        if (inv.mode.empty()) inv.mode = j.value("mode", "");
      }
    } catch (const std::exception&) {
      std::istringstream in(text);
      std::string line;
      while (std::getline(in, line)) {
        auto k = line.find_first_of(":= \t");
        if (k == std::string::npos) continue;
        std::string key = line.substr(0, k);
        std::string v = line.substr(k);
        size_t b = v.find_first_not_of(":= \t\"");
        size_t e = v.find_last_not_of(" \t\r\"");
        v = b == std::string::npos ? "" : v.substr(b, e - b + 1);
        if (key == "customer" && inv.customer.empty()) inv.customer = v;
        if (key == "mode" && inv.mode.empty()) inv.mode = v;
      }
    }
  }
  if (inv.customer.empty())
    return make_error(kExitNotFound, "failed to find the customer of invocation " + id + ": neither " + state +
                                         " nor " + req + " names one");
  return inv;
}

std::string rrset_line(const DnsRRsetState& r) {
  auto set = [](const std::vector<std::string>& v, int ttl, bool exists) {
    if (!exists || v.empty()) return std::string("(none)");
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
    return s + " ttl " + std::to_string(ttl);
  };
  return r.name + " " + r.type + " @" + r.server + ":" + std::to_string(r.port) + "  original: " +
         set(r.original, r.original_ttl, r.original_exists) + "  rescue: " + set(r.redirect, r.redirect_ttl, true) +
         "  [" + r.state + "]";
}

std::string rrset_json(const DnsRRsetState& r) {
  std::vector<std::string> orig, red;
  for (const auto& d : r.original) orig.push_back(json_escape(d));
  for (const auto& d : r.redirect) red.push_back(json_escape(d));
  return JsonObject()
      .add("name", r.name)
      .add("type", r.type)
      .add("server", r.server)
      .add("port", r.port)
      .add("zone", r.zone)
      .add("original_exists", r.original_exists)
      .add("original_ttl", r.original_ttl)
      .add_raw("original", json_array(orig))
      .add("rescue_ttl", r.redirect_ttl)
      .add_raw("rescue", json_array(red))
      .add("state", r.state)
      .str();
}

}  // namespace

Status invoke_dns_main(const InvokeDnsOptions& o) {
  int actions = int(o.apply) + int(o.rollback) + int(o.show);
  if (actions > 1) return make_error(kExitUsage, "failed to parse options: give one of --apply, --rollback, --show");
  const char* action = o.apply ? "apply" : o.rollback ? "rollback" : "show";
  ServerLayout s = ServerLayout::at(o.server);
  PB_ASSIGN(InvocationInfo inv, read_invocation(s, o.id));
  const std::string journal = inv.dir + "/dns/rollback.json";
  DnsOptions opt;
  opt.timeout_s = o.timeout_s;
  if (!o.json) opt.note = [](const std::string& line) { std::printf("%s\n", line.c_str()); };
  // Each RRset changed or restored goes into the catalog's audit log; a failure to
  // log is a warning (the DNS change has happened and the journal records it).
  const std::string actor = audit_actor();
  opt.audit = [&](const std::string& event, const std::string& detail) {
    Status a = audit_append(s, o.id, event, actor, detail);
    if (!a.ok()) std::fprintf(stderr, "planb-invoke: warning: audit log: %s\n", a.error().message.c_str());
  };

  std::vector<DnsRRsetState> planned;  // --show without a journal
  if (o.rollback) {
    PB_TRY(rollback_dns(journal, opt));
  } else {
    PB_ASSIGN(Cmdb cmdb, load_cmdb(s.cmdb()));
    const CmdbCustomer* cust = cmdb.customer(inv.customer);
    if (!cust) return make_error(kExitNotFound, "failed to find customer " + inv.customer + " in the CMDB " + s.cmdb());
    std::map<std::string, std::string> addr;
    for (const CmdbHost* h : cmdb.hosts_of(inv.customer)) {
      auto it = inv.addresses.find(h->name);
      addr[h->name] = it != inv.addresses.end() ? it->second : h->address;
    }
    PB_ASSIGN(std::vector<DnsChange> plan, plan_dns(*cust, addr));
    if (o.apply) {
      if (inv.mode == "drill")
        return make_error(kExitUsage, "failed to redirect DNS for invocation " + o.id + ": it is a drill (drills make no DNS changes)");
      if (plan.empty() && opt.note) opt.note("the CMDB of " + inv.customer + " lists no [[dns]] records: nothing to redirect");
      PB_TRY(redirect_dns(plan, journal, opt));
    } else {
      for (const auto& c : plan) {
        DnsRRsetState* r = nullptr;
        for (auto& p : planned)
          if (p.server == c.server && p.port == c.port && p.name == c.name && p.type == c.type) r = &p;
        if (!r) {
          planned.push_back(DnsRRsetState{});
          r = &planned.back();
          r->server = c.server;
          r->port = c.port;
          r->zone = c.zone;
          r->tsig_key = c.tsig_key;
          r->name = c.name;
          r->type = c.type;
          r->redirect_ttl = c.ttl;
          r->state = "planned";
        }
        r->redirect.push_back(c.rdata);
      }
    }
  }

  DnsJournal j;
  bool have_journal = path_exists(journal);
  if (have_journal) {
    PB_ASSIGN(j, read_dns_journal(journal));
  } else {
    j.state = "none";
    j.rrsets = planned;
  }
  if (o.json) {
    std::vector<std::string> items;
    for (const auto& r : j.rrsets) items.push_back(rrset_json(r));
    std::printf("%s\n", JsonObject()
                            .add("id", o.id)
                            .add("customer", inv.customer)
                            .add("action", action)
                            .add("journal", have_journal ? journal : "")
                            .add("state", j.state)
                            .add_raw("rrsets", json_array(items))
                            .str().c_str());
  } else if (o.show) {
    std::printf("invocation %s (customer %s): DNS %s%s\n", o.id.c_str(), inv.customer.c_str(),
                have_journal ? j.state.c_str() : "not redirected",
                have_journal ? (" (journal " + journal + ", updated " + j.updated + ")").c_str() : "");
    for (const auto& r : j.rrsets) std::printf("  %s\n", rrset_line(r).c_str());
    if (j.rrsets.empty()) std::printf("  no [[dns]] records\n");
  }
  return {};
}

}  // namespace planb
