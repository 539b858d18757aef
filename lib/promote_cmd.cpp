#include "promote_cmd.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "json.hpp"

namespace planb {

static std::string good_json(const std::optional<GoodRef>& g) {
  if (!g) return "null";
  return JsonObject()
      .add("sequence", g->sequence)
      .add("image", g->image)
      .add("hash", g->hash)
      .add("report", g->report)
      .add("promoted_at", g->promoted_at)
      .str();
}

static std::string str_array(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + json_escape(v[i]);
  return out + "]";
}

// "#id kind seq: summary", one line per ticket.
static std::vector<std::string> ticket_lines(const std::vector<TicketRow>& ts) {
  std::vector<std::string> out;
  for (const auto& t : ts)
    out.push_back("#" + std::to_string(t.id) + " " + t.kind + " " + std::to_string(t.sequence) + ": " + t.summary);
  return out;
}

static Status list_main(const ServerLayout& s, bool json) {
  PB_ASSIGN(auto hosts, list_hosts(s));
  if (json) {
    std::string items = "[";
    for (size_t i = 0; i < hosts.size(); ++i) {
      const auto& h = hosts[i];
      JsonObject j;
      j.add("host", h.host);
      if (h.latest) j.add("latest", *h.latest); else j.add_raw("latest", "null");
      if (h.candidate) j.add("candidate", *h.candidate); else j.add_raw("candidate", "null");
      j.add_raw("good", good_json(h.good));
      if (h.last_test_passed) j.add("candidate_test_passed", *h.last_test_passed);
      else j.add_raw("candidate_test_passed", "null");
      j.add_raw("open_tickets", str_array(ticket_lines(h.tickets)));
      items += (i ? "," : "") + j.str();
    }
    std::printf("%s]\n", items.c_str());
    return {};
  }
  if (hosts.empty()) {
    std::printf("no hosts on server %s\n", s.root.c_str());
    return {};
  }
  std::printf("%-16s %8s %10s %-28s %s\n", "HOST", "LATEST", "CANDIDATE", "GOOD (last known good image)", "TICKETS");
  for (const auto& h : hosts) {
    std::string cand = h.candidate ? std::to_string(*h.candidate) : "-";
    if (h.last_test_passed) cand += *h.last_test_passed ? " ok" : " FAIL";
    std::string good = "-";
    if (h.good) {
      char when[32];
      time_t t = time_t(h.good->promoted_at);
      std::strftime(when, sizeof when, "%Y-%m-%d %H:%M", std::gmtime(&t));
      good = std::to_string(h.good->sequence) + " (" + when + "Z)";
    }
    std::printf("%-16s %8s %10s %-28s %zu open\n", h.host.c_str(), h.latest ? std::to_string(*h.latest).c_str() : "-",
                cand.c_str(), good.c_str(), h.tickets.size());
    for (const auto& t : ticket_lines(h.tickets)) std::printf("    %s\n", t.c_str());
  }
  return {};
}

// Hosts whose candidate is undecided: not good yet, and no failed test of it on record.
static Status pending_main(const ServerLayout& s) {
  PB_ASSIGN(auto hosts, list_hosts(s));
  for (const auto& h : hosts) {
    if (!h.candidate) continue;
    if (h.good && h.good->sequence >= *h.candidate) continue;
    if (h.last_test_passed && !*h.last_test_passed) {
      bool ticketed = std::any_of(h.tickets.begin(), h.tickets.end(), [&](const TicketRow& t) {
        return t.kind == kTicketBootTestFailed && t.sequence == *h.candidate;
      });
      if (ticketed) continue;
    }
    std::printf("%s %llu\n", h.host.c_str(), static_cast<unsigned long long>(*h.candidate));
  }
  return {};
}

Status promote_main(PromoteCmdOptions& o) {
  ServerLayout s = ServerLayout::at(o.server);
  if (o.list) return list_main(s, o.json);
  if (o.pending) return pending_main(s);
  if (o.promote.host.empty()) return make_error(kExitUsage, "failed to parse options: --host is required (or --list)");
  o.promote.sequence = o.sequence;
  PB_ASSIGN(PromoteResult r, promote(s, o.promote));
  if (o.json) {
    JsonObject j;
    j.add("host", r.host).add("sequence", r.sequence).add("promoted", r.promoted).add("already_good", r.already);
    if (r.promoted) j.add("image", r.image);
    if (r.ticket) j.add("ticket", r.ticket);
    j.add_raw("failed_checks", str_array(r.failed_checks)).add_raw("retired", str_array(r.retired));
    if (!r.notify_error.empty()) j.add("notify_error", r.notify_error);
    j.add_raw("good", good_json(r.good));
    std::printf("%s\n", j.str().c_str());
  } else if (r.promoted) {
    std::printf("%s snapshot %llu %s: %s\n", r.host.c_str(), static_cast<unsigned long long>(r.sequence),
                r.already ? "was already the good image" : "promoted to good", r.image.c_str());
    for (const auto& p : r.retired) std::printf("retired %s\n", p.c_str());
  } else {
    std::printf("%s snapshot %llu NOT promoted: boot test failed; ticket #%lld opened; good stays at %s\n",
                r.host.c_str(), static_cast<unsigned long long>(r.sequence), static_cast<long long>(r.ticket),
                r.good ? std::to_string(r.good->sequence).c_str() : "(none yet)");
    for (const auto& c : r.failed_checks) std::printf("  failed: %s\n", c.c_str());
  }
  std::fflush(stdout);
  if (!r.notify_error.empty())
    std::fprintf(stderr, "planb-promote: warning: notify hook failed: %s\n", r.notify_error.c_str());
  if (!r.promoted)
    return make_error(kExitNotPromoted, "failed to promote " + r.host + " snapshot " + std::to_string(r.sequence) +
                                            ": its boot test failed (ticket #" + std::to_string(r.ticket) + ")");
  return {};
}

}  // namespace planb
