// The handover report of an invocation or drill: what runs where, when each
// host was verified, how to connect, and the time from start to all verified.
// report.md (people, mail), report.html (the same, for a browser), report.json.
#include <ctime>

#include "fsutil.hpp"
#include "invocation.hpp"
#include "invoke_auth.hpp"

namespace planb {

namespace {

std::string fmt1(double s) {
  if (s < 0) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.1f s", s);
  return b;
}

std::string when(int64_t t) { return t ? utc_time(t) : "-"; }

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string md_cell(std::string s) {
  std::string o;
  for (char c : s) {
    if (c == '|') o += "\\|";
    else if (c == '\n') o += ' ';
    else o += c;
  }
  return o;
}

// A table both renderers share.
struct Table {
  std::vector<std::string> head;
  std::vector<std::vector<std::string>> rows;
};

struct Section {
  std::string title;
  std::vector<std::string> lines;  // paragraphs / bullet items (plain text)
  bool bullets = true;
  Table table;
};

struct Doc {
  std::string title;
  std::vector<std::pair<std::string, std::string>> facts;
  std::vector<Section> sections;
};

Doc build(const ServerLayout& s, const InvocationState& st) {
  Doc d;
  bool drill = st.mode == "drill";
  d.title = std::string(drill ? "Plan B drill report" : "Plan B handover report") + ": " + st.customer;
  int verified = 0;
  for (const auto& h : st.hosts) verified += h.state == "verified" || (h.state == "stopped" && h.verified_s >= 0);
  d.facts = {{"Invocation", st.id},
             {"Mode", drill ? "drill (isolated rescue network, no DNS changes)" : "real"},
             {"Reason", st.reason.empty() ? "-" : st.reason},
             {"Approved by", [&] {
                std::string a;
                for (const auto& x : st.approvers) a += (a.empty() ? "" : ", ") + x;
                return a.empty() ? std::string("-") : a;
              }()},
             {"Status", st.status},
             {"Started", when(st.started_at)},
             {"All verified", when(st.verified_at)},
             {"Time from start to all verified", st.seconds_to_verified >= 0 ? fmt1(st.seconds_to_verified)
                                                                               : "not reached (" + std::to_string(verified) + " of " +
                                                                                     std::to_string(st.hosts.size()) + " verified)"},
             {"Stopped", when(st.stopped_at)},
             {"Rescue platform", st.backend + ", network " + st.net.cidr + " (gateway " + st.net.gateway + ", domain " +
                                     st.net.domain + ")"}};
  Section hosts;
  hosts.title = "Hosts";
  hosts.table.head = {"host", "address", "snapshot", "cpus / memory", "wave", "state", "booted", "verified", "checks"};
  for (const auto& h : st.hosts) {
    int ok = 0;
    for (const auto& c : h.checks) ok += c.passed;
    hosts.table.rows.push_back({h.name, h.address, std::to_string(h.sequence),
                                std::to_string(h.cpus) + " / " + std::to_string(h.memory_mb) + " MiB", std::to_string(h.wave),
                                h.state, fmt1(h.booted_s), h.verified_at ? fmt1(h.verified_s) + " (" + utc_time(h.verified_at) + ")" : "-",
                                std::to_string(ok) + "/" + std::to_string(h.checks.size())});
  }
  d.sections.push_back(hosts);

  Section checks;
  checks.title = "Checks";
  checks.table.head = {"host", "check", "result", "passed after", "attempts", "detail"};
  for (const auto& h : st.hosts)
    for (const auto& c : h.checks)
      checks.table.rows.push_back({h.name, c.label, c.passed ? "PASS" : "FAIL", fmt1(c.seconds), std::to_string(c.attempts), c.detail});
  d.sections.push_back(checks);

  Section conn;
  conn.title = "How to connect";
  if (drill) {
    conn.lines.push_back("This was a drill on an isolated network: nothing was reachable from outside and no DNS record changed.");
  } else if (st.vpn_peers.empty()) {
    conn.lines.push_back("No VPN peers are configured in the CMDB ([vpn]); reach the rescue network " + st.net.cidr +
                         " from the Plan B server.");
  } else {
    conn.lines.push_back("WireGuard: give each peer its configuration file (keys inside; send it privately) or QR code:");
    for (const auto& p : st.vpn_peers) conn.lines.push_back(p);
    conn.lines.push_back("Show one with: planb-invoke vpn " + st.id + " --peer NAME [--qr]");
  }
  for (const auto& h : st.hosts) {
    std::string l = h.name + " (" + h.name + "." + st.net.domain + "): ssh root@" + h.address;
    for (const auto& c : h.checks)
      if (c.label.rfind("http ", 0) == 0) {
        // "http :8080/ 200 'x'" -> http://addr:8080/
        size_t colon = c.label.find(':');
        size_t sp = c.label.find(' ', colon == std::string::npos ? 0 : colon);
        if (colon != std::string::npos) l += ", http://" + h.address + c.label.substr(colon, sp - colon);
      }
    conn.lines.push_back(l);
  }
  d.sections.push_back(conn);

  Section dns;
  dns.title = "DNS and mail";
  if (drill) dns.lines.push_back("No changes (drill).");
  else if (st.dns_redirected) dns.lines.push_back("Redirected to the rescue addresses; the originals are in " + invocation_dir(s, st.id) +
                                                  "/dns/rollback.json and come back on planb-invoke stop.");
  else if (st.status == "stopped") dns.lines.push_back("Original records restored.");
  else dns.lines.push_back("Not redirected (no [[dns]] records in the CMDB, or none whose host verified).");
  d.sections.push_back(dns);

  Section next;
  next.title = "Next steps";
  if (st.status == "stopped") {
    next.lines.push_back("Everything was shut down" + std::string(drill ? " and the drill's disks discarded." : "."));
  } else {
    next.lines.push_back("Status: planb-invoke status " + st.id + " [--live]");
    next.lines.push_back("Back to new hardware: planb-invoke failback HOST --invocation " + st.id + " --to TARGET");
    next.lines.push_back("Shut down and restore DNS: planb-invoke stop " + st.id);
  }
  d.sections.push_back(next);
  return d;
}

std::string markdown(const Doc& d) {
  std::string o = "# " + d.title + "\n\n";
  for (const auto& [k, v] : d.facts) o += "- **" + k + ":** " + v + "\n";
  for (const auto& s : d.sections) {
    o += "\n## " + s.title + "\n\n";
    if (!s.table.head.empty()) {
      o += "|";
      for (const auto& h : s.table.head) o += " " + h + " |";
      o += "\n|";
      for (size_t i = 0; i < s.table.head.size(); i++) o += "---|";
      o += "\n";
      for (const auto& r : s.table.rows) {
        o += "|";
        for (const auto& c : r) o += " " + md_cell(c) + " |";
        o += "\n";
      }
    }
    for (const auto& l : s.lines) o += (s.bullets ? "- " : "") + l + "\n";
  }
  return o;
}

std::string html(const Doc& d) {
  std::string o =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html_escape(d.title) +
      "</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
      "td,th{border:1px solid #999;padding:.2em .5em;text-align:left}.PASS{color:#060}.FAIL{color:#a00}</style>"
      "</head><body>\n<h1>" +
      html_escape(d.title) + "</h1>\n<dl>\n";
  for (const auto& [k, v] : d.facts) o += "<dt>" + html_escape(k) + "</dt><dd>" + html_escape(v) + "</dd>\n";
  o += "</dl>\n";
  for (const auto& s : d.sections) {
    o += "<h2>" + html_escape(s.title) + "</h2>\n";
    if (!s.table.head.empty()) {
      o += "<table><tr>";
      for (const auto& h : s.table.head) o += "<th>" + html_escape(h) + "</th>";
      o += "</tr>\n";
      for (const auto& r : s.table.rows) {
        o += "<tr>";
        for (const auto& c : r) o += "<td" + std::string(c == "PASS" || c == "FAIL" ? " class=\"" + c + "\"" : "") + ">" + html_escape(c) + "</td>";
        o += "</tr>\n";
      }
      o += "</table>\n";
    }
    if (!s.lines.empty()) {
      o += "<ul>\n";
      for (const auto& l : s.lines) o += "<li>" + html_escape(l) + "</li>\n";
      o += "</ul>\n";
    }
  }
  return o + "</body></html>\n";
}

}  // namespace

std::string handover_markdown(const ServerLayout& s, const InvocationState& st) { return markdown(build(s, st)); }

Status write_handover_report(const ServerLayout& s, const InvocationState& st) {
  std::string dir = invocation_dir(s, st.id);
  Doc d = build(s, st);
  PB_TRY(write_file_atomic(dir + "/report.json", invocation_state_json(st), 0644));
  PB_TRY(write_file_atomic(dir + "/report.html", html(d), 0644));
  return write_file_atomic(dir + "/report.md", markdown(d), 0644);
}

}  // namespace planb
