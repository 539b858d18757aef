// planb-invoke plan: the good image of each host and the order they start in.
#include <sys/stat.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "fsutil.hpp"
#include "invocation.hpp"
#include "json.hpp"
#include "promote.hpp"

namespace planb {

Result<InvocationPlan> plan_invocation(const ServerLayout& s, const Cmdb& cmdb, const std::string& customer,
                                       const std::vector<std::string>& hosts) {
  const CmdbCustomer* cust = cmdb.customer(customer);
  if (!cust) {
    std::string known;
    for (const auto& c : cmdb.customers) known += (known.empty() ? "" : ", ") + c.name;
    return make_error(kExitNotFound, "failed to plan the invocation: no customer '" + customer + "' in the CMDB (known: " +
                                         (known.empty() ? "none" : known) + ")");
  }
  std::vector<const CmdbHost*> chosen;
  if (hosts.empty()) {
    chosen = cmdb.hosts_of(customer);
  } else {
    for (const auto& name : hosts) {
      const CmdbHost* h = cmdb.find(name);
      if (!h) return make_error(kExitNotFound, "failed to plan the invocation: no host '" + name + "' in the CMDB");
      if (h->customer != customer)
        return make_error(kExitUsage, "failed to plan the invocation: host " + name + " belongs to customer " + h->customer +
                                          ", not " + customer);
      if (std::find(chosen.begin(), chosen.end(), h) == chosen.end()) chosen.push_back(h);
    }
  }
  if (chosen.empty()) return make_error(kExitNotFound, "failed to plan the invocation: customer " + customer + " has no hosts");
  std::map<std::string, const CmdbHost*> by_name;
  for (const CmdbHost* h : chosen) by_name[h->name] = h;
  for (const CmdbHost* h : chosen)
    for (const auto& d : h->depends_on)
      if (!by_name.count(d))
        return make_error(kExitUsage, "failed to plan the invocation: " + h->name + " depends on " + d +
                                          ", which is not part of this invocation (add it, or invoke all hosts)");
  // Waves by depth; a cycle (the CMDB loader refuses them too) is an error here as well.
  std::map<std::string, int> wave;
  std::function<Result<int>(const CmdbHost*, std::vector<std::string>&)> depth =
      [&](const CmdbHost* h, std::vector<std::string>& path) -> Result<int> {
    if (auto it = wave.find(h->name); it != wave.end()) {
      if (it->second == 0) {
        std::string cyc;
        auto at = std::find(path.begin(), path.end(), h->name);
        for (; at != path.end(); ++at) cyc += *at + " -> ";
        return make_error(kExitUsage, "failed to plan the invocation: dependency cycle: " + cyc + h->name);
      }
      return it->second;
    }
    wave[h->name] = 0;  // on the path
    path.push_back(h->name);
    int w = 1;
    for (const auto& d : h->depends_on) {
      PB_ASSIGN(int dw, depth(by_name.at(d), path));
      w = std::max(w, dw + 1);
    }
    path.pop_back();
    wave[h->name] = w;
    return w;
  };
  InvocationPlan p;
  p.customer = customer;
  for (const CmdbHost* h : chosen) {
    std::vector<std::string> path;
    PB_ASSIGN(int w, depth(h, path));
    PlannedHost ph;
    ph.host = h;
    ph.wave = w;
    p.waves = std::max(p.waves, w);
    PB_ASSIGN(auto good, read_good_ref(s, h->name));
    if (!good)
      return make_error(kExitNotFound, "failed to plan the invocation: host " + h->name +
                                           " has no good image (no image of it has passed a boot test; see planb-promote --list)");
    ph.sequence = good->sequence;
    ph.image = s.repository(h->name) + "/" + good->image;
    struct stat st;
    if (::stat(ph.image.c_str(), &st) != 0)
      return make_error(kExitNotFound, "failed to plan the invocation: host " + h->name + "'s good image " + ph.image +
                                           " is missing: " + errstr(errno));
    p.hosts.push_back(ph);
  }
  std::stable_sort(p.hosts.begin(), p.hosts.end(), [](const PlannedHost& a, const PlannedHost& b) { return a.wave < b.wave; });
  return p;
}

std::string plan_text(const InvocationPlan& p) {
  std::string out = "Invocation plan for " + p.customer + ": " + std::to_string(p.hosts.size()) + " host" +
                    (p.hosts.size() == 1 ? "" : "s") + " in " + std::to_string(p.waves) + " wave" + (p.waves == 1 ? "" : "s") +
                    "\n";
  for (int w = 1; w <= p.waves; w++) {
    out += "wave " + std::to_string(w) + ":\n";
    for (const auto& h : p.hosts) {
      if (h.wave != w) continue;
      std::string deps;
      for (const auto& d : h.host->depends_on) deps += (deps.empty() ? "" : ", ") + d;
      out += "  " + h.host->name + "  " + h.host->address + "  snapshot " + std::to_string(h.sequence) + "  " +
             std::to_string(h.host->cpus) + " cpu, " + std::to_string(h.host->memory_mb) + " MiB  " +
             std::to_string(h.host->checks.size()) + " check" + (h.host->checks.size() == 1 ? "" : "s") +
             (deps.empty() ? "" : "  after " + deps) + "\n";
    }
  }
  return out;
}

std::string plan_json(const InvocationPlan& p) {
  std::vector<std::string> hosts;
  for (const auto& h : p.hosts) {
    std::vector<std::string> deps;
    for (const auto& d : h.host->depends_on) deps.push_back(json_escape(d));
    hosts.push_back(JsonObject()
                        .add("name", h.host->name)
                        .add("wave", h.wave)
                        .add("address", h.host->address)
                        .add("sequence", h.sequence)
                        .add("image", h.image)
                        .add("cpus", h.host->cpus)
                        .add("memory_mb", h.host->memory_mb)
                        .add_raw("depends_on", json_array(deps))
                        .add("checks", uint64_t(h.host->checks.size()))
                        .str());
  }
  return JsonObject().add("customer", p.customer).add("waves", p.waves).add_raw("hosts", json_array(hosts)).str();
}

}  // namespace planb
