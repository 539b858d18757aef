// DNS and mail redirection by RFC 2136 dynamic updates (see dns_redirect.hpp).
#include "dns_redirect.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "fsutil.hpp"
#include "json.hpp"
#include "server_layout.hpp"

namespace planb {

using nlohmann::json;

namespace {

// ---------------------------------------------------------------- text helpers

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string upper(std::string s) {
  for (auto& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

// Absolute, lower-case domain name; "" if not a plausible name.
std::string abs_name(std::string n) {
  n = lower(trim(n));
  if (n.empty()) return "";
  if (n.back() != '.') n += '.';
  if (n == ".") return n;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' || c == '*')) return "";
  if (n.find("..") != std::string::npos || n[0] == '.') return "";
  return n;
}

bool in_zone(const std::string& name, const std::string& zone) {
  if (zone == ".") return true;
  return name == zone || (name.size() > zone.size() && name.compare(name.size() - zone.size(), zone.size(), zone) == 0 &&
                          name[name.size() - zone.size() - 1] == '.');
}

// TXT: a sequence of quoted strings, each re-emitted with single spaces between
// them; escapes (\" \\ \DDD) kept as written. Plain text is quoted (and split
// into strings of 255 bytes).
Result<std::string> canon_txt(const std::string& v) {
  std::string s = trim(v);
  for (unsigned char c : s)
    if (c < 0x20 || c > 0x7e) return fail("TXT data must be printable ASCII");
  std::vector<std::string> parts;
  if (s.empty() || s[0] != '"') {
    std::string esc;
    size_t n = 0;
    for (char c : s) {
      if (n == 255) {
        parts.push_back("\"" + esc + "\"");
        esc.clear();
        n = 0;
      }
      if (c == '"' || c == '\\') esc += '\\';
      esc += c;
      ++n;
    }
    parts.push_back("\"" + esc + "\"");
    return join(parts, " ");
  }
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    if (i >= s.size()) break;
    if (s[i] != '"') return fail("TXT data mixes quoted and unquoted text");
    size_t j = i + 1;
    std::string part = "\"";
    size_t len = 0;
    bool closed = false;
    while (j < s.size()) {
      if (s[j] == '\\' && j + 1 < s.size()) {
        if (std::isdigit(static_cast<unsigned char>(s[j + 1]))) {
          part += s.substr(j, 4);
          j += 4;
        } else {
          part += s.substr(j, 2);
          j += 2;
        }
        ++len;
        continue;
      }
      if (s[j] == '"') {
        closed = true;
        ++j;
        break;
      }
      part += s[j++];
      ++len;
    }
    if (!closed) return fail("TXT data has an unterminated quoted string");
    if (len > 255) return fail("a TXT string is longer than 255 bytes (split it into quoted strings)");
    parts.push_back(part + "\"");
    i = j;
  }
  if (parts.empty()) return fail("TXT data is empty");
  return join(parts, " ");
}

// Canonical presentation form of one record's data, for comparisons and updates.
Result<std::string> canon_rdata(const std::string& type, const std::string& value) {
  std::string v = trim(value);
  if (type == "A" || type == "AAAA") {
    int af = type == "A" ? AF_INET : AF_INET6;
    unsigned char buf[16];
    if (::inet_pton(af, v.c_str(), buf) != 1)
      return fail("'" + v + "' is not an IPv" + (type == "A" ? "4" : "6") + " address");
    char out[INET6_ADDRSTRLEN];
    ::inet_ntop(af, buf, out, sizeof out);
    return std::string(out);
  }
  if (type == "CNAME") {
    std::string n = abs_name(v);
    if (n.empty() || v.find(' ') != std::string::npos) return fail("'" + v + "' is not a domain name");
    return n;
  }
  if (type == "MX") {
    std::istringstream in(v);
    std::string pref, target, extra;
    in >> pref >> target >> extra;
    bool num = !pref.empty() && pref.size() <= 5 &&
               std::all_of(pref.begin(), pref.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    std::string n = abs_name(target);
    if (!num || std::stoul(pref) > 65535 || n.empty() || !extra.empty())
      return fail("'" + v + "' is not MX data (\"PREFERENCE HOST\", e.g. \"10 mail.acme.example.\")");
    return std::to_string(std::stoul(pref)) + " " + n;
  }
  if (type == "TXT") return canon_txt(v);
  return fail("type " + type + " is not supported (A, AAAA, CNAME, MX, TXT)");
}

std::string iso_now() {
  char buf[32];
  time_t t = ::time(nullptr);
  struct tm tm;
  ::gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// ---------------------------------------------------------------- processes

struct Proc {
  int status = -1;       // exit status; -1 = did not exit normally
  bool timed_out = false;
  bool not_found = false;  // the program could not be run
  std::string output;      // stdout and stderr, interleaved
};

// Runs argv with `input` on its standard input; kills it after timeout_s.
Proc run_proc(const std::vector<std::string>& argv, const std::string& input, int timeout_s) {
  Proc r;
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return r;
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    return r;
  }
  if (::pipe2(err, O_CLOEXEC) != 0) {
    for (int fd : {in[0], in[1], out[0], out[1]}) ::close(fd);
    return r;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    std::vector<char*> a;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    ::execvp(a[0], a.data());
    char e = 1;
    [[maybe_unused]] auto w = ::write(err[1], &e, 1);
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (pid < 0) {
    ::close(in[1]);
    ::close(out[0]);
    ::close(err[0]);
    return r;
  }
  // The scripts are small (well under a pipe buffer): write all, then close.
  // A child that exits without reading must not kill us with SIGPIPE.
  size_t off = 0;
  struct sigaction ign {}, old {};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ign, &old);
  while (off < input.size()) {
    ssize_t w = ::write(in[1], input.data() + off, input.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += size_t(w);
  }
  ::close(in[1]);
  ::sigaction(SIGPIPE, &old, nullptr);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    int n = ::poll(&p, 1, int(std::min<long long>(left, 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    ssize_t got = ::read(out[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    r.output.append(buf, size_t(got));
  }
  ::close(out[0]);
  char e;
  r.not_found = ::read(err[0], &e, 1) == 1;
  ::close(err[0]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!r.timed_out && WIFEXITED(st)) r.status = WEXITSTATUS(st);
  return r;
}

// The lines of a tool's output that explain a failure, on one line.
std::string reason_of(const std::string& output) {
  std::vector<std::string> keep;
  std::istringstream in(output);
  std::string line;
  while (std::getline(in, line)) {
    line = trim(line);
    while (!line.empty() && line[0] == ';') line = trim(line.substr(1));
    if (line.empty() || line.rfind("Outgoing update query", 0) == 0) continue;
    if (line.find("failed") != std::string::npos || line.find("error") != std::string::npos ||
        line.find("refused") != std::string::npos || line.find("timed out") != std::string::npos ||
        line.find("could not") != std::string::npos || line.find("reached") != std::string::npos ||
        line.find("not found") != std::string::npos || line.find("invalid") != std::string::npos ||
        line.find("couldn't") != std::string::npos)
      if (std::find(keep.begin(), keep.end(), line) == keep.end()) keep.push_back(line);
  }
  if (keep.empty()) {
    std::string t = trim(output);
    if (t.size() > 300) t = t.substr(0, 300) + "...";
    return t.empty() ? "no output" : t;
  }
  return join(keep, "; ");
}

// ---------------------------------------------------------------- RRsets

struct RRsetKey {
  std::string server;
  int port;
  std::string zone, name, type;
  bool operator<(const RRsetKey& o) const {
    return std::tie(server, port, zone, name, type) < std::tie(o.server, o.port, o.zone, o.name, o.type);
  }
};

std::string where_str(const std::string& server, int port) { return server + ":" + std::to_string(port); }

// Whether the server's RRset `a` is the expected one (absent when !exists).
bool same_rrset(const DnsRRset& a, bool exists, int ttl, const std::vector<std::string>& rdata) {
  if (!exists) return a.rdata.empty();
  if (a.rdata.empty()) return rdata.empty();
  std::vector<std::string> x = a.rdata, y = rdata;
  std::sort(x.begin(), x.end());
  std::sort(y.begin(), y.end());
  return x == y && a.ttl == ttl;
}

std::string show_set(const std::vector<std::string>& v) { return v.empty() ? "(none)" : join(v, ", "); }

// ---------------------------------------------------------------- journal

json rrset_json(const DnsRRsetState& r) {
  return json{{"server", r.server},
              {"port", r.port},
              {"zone", r.zone},
              {"tsig_key", r.tsig_key},
              {"name", r.name},
              {"type", r.type},
              {"original", {{"exists", r.original_exists}, {"ttl", r.original_ttl}, {"rdata", r.original}}},
              {"redirect", {{"ttl", r.redirect_ttl}, {"rdata", r.redirect}}},
              {"state", r.state}};
}

constexpr const char* kJournalFormat = "planb-dns-rollback 1";

Status write_journal(const std::string& path, DnsJournal& j) {
  j.updated = iso_now();
  json a = json::array();
  for (const auto& r : j.rrsets) a.push_back(rrset_json(r));
  json doc{{"format", kJournalFormat}, {"state", j.state}, {"created", j.created}, {"updated", j.updated}, {"rrsets", a}};
  std::string text = doc.dump(2) + "\n";
  Status s = write_file_atomic(path, text, 0644);
  if (!s.ok()) return make_error(s.error().code, "failed to write the DNS rollback journal: " + s.error().message);
  return {};
}

// ---------------------------------------------------------------- server I/O

Status check_key_file(const std::string& key) {
  if (key.empty()) return make_error(kExitUsage, "no tsig_key (updates are TSIG-signed)");
  if (::access(key.c_str(), R_OK) != 0)
    return make_error(kExitRedirectFailed, "failed to read TSIG key file " + key + ": " + errstr(errno));
  return {};
}

std::string update_script(const DnsRRsetState& r, const DnsRRset* prereq, bool to_original) {
  std::string s = "server " + r.server + " " + std::to_string(r.port) + "\nzone " + r.zone + "\nclass IN\n";
  if (prereq) {
    if (prereq->rdata.empty())
      s += "prereq nxrrset " + r.name + " " + r.type + "\n";
    else
      for (const auto& d : prereq->rdata) s += "prereq yxrrset " + r.name + " " + r.type + " " + d + "\n";
  }
  s += "update delete " + r.name + " " + r.type + "\n";
  if (to_original) {
    if (r.original_exists)
      for (const auto& d : r.original)
        s += "update add " + r.name + " " + std::to_string(r.original_ttl) + " " + r.type + " " + d + "\n";
  } else {
    for (const auto& d : r.redirect)
      s += "update add " + r.name + " " + std::to_string(r.redirect_ttl) + " " + r.type + " " + d + "\n";
  }
  return s + "send\n";
}

// Sends one update; the error carries the server's answer ("update failed: NOTAUTH(BADKEY)").
Status send_update(const DnsRRsetState& r, const std::string& script, int timeout_s) {
  PB_TRY(check_key_file(r.tsig_key));
  Proc p = run_proc({"nsupdate", "-v", "-t", std::to_string(timeout_s), "-k", r.tsig_key}, script, timeout_s + 5);
  if (p.not_found) return fail("nsupdate is not installed (Debian package bind9-dnsutils)");
  if (p.timed_out) return fail("no answer from " + where_str(r.server, r.port) + " within " + std::to_string(timeout_s) + " s");
  if (p.status != 0) return fail(reason_of(p.output));
  return {};
}

}  // namespace

Result<DnsRRset> query_dns(const std::string& server, int port, const std::string& name, const std::string& type,
                           int timeout_s) {
  const std::string what = "failed to query " + name + " " + type + " at " + where_str(server, port);
  Proc p = run_proc({"dig", "@" + server, "-p", std::to_string(port), "+tcp", "+norecurse", "+time=" + std::to_string(timeout_s),
                     "+tries=1", "+noall", "+comments", "+answer", name, type},
                    "", timeout_s + 5);
  if (p.not_found) return fail(what + ": dig is not installed (Debian package bind9-dnsutils)");
  if (p.timed_out) return make_error(kExitRedirectFailed, what + ": no answer within " + std::to_string(timeout_s) + " s");
  std::string status;
  bool aa = false;
  DnsRRset rr;
  std::vector<std::string> data;
  std::istringstream in(p.output);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(";; ->>HEADER<<-", 0) == 0) {
      auto k = line.find("status: ");
      if (k != std::string::npos) {
        status = line.substr(k + 8);
        status = status.substr(0, status.find(','));
      }
      continue;
    }
    if (line.rfind(";; flags:", 0) == 0) {
      std::string f = line.substr(9, line.find(';', 9) - 9);
      aa = (" " + f + " ").find(" aa ") != std::string::npos;
      continue;
    }
    if (line.empty() || line[0] == ';') continue;
    // owner TTL class type rdata: rdata is the rest of the line after the fourth field.
    size_t pos = 0;
    std::vector<std::string> f;
    for (int i = 0; i < 4; ++i) {
      while (pos < line.size() && std::isspace(static_cast<unsigned char>(line[pos]))) ++pos;
      size_t b = pos;
      while (pos < line.size() && !std::isspace(static_cast<unsigned char>(line[pos]))) ++pos;
      f.push_back(line.substr(b, pos - b));
    }
    if (lower(f[0]) != lower(name) || upper(f[3]) != type) continue;  // e.g. the target of a CNAME
    auto c = canon_rdata(type, line.substr(pos));
    if (!c.ok()) return fail(what + ": unreadable answer '" + trim(line) + "': " + c.error().message);
    rr.ttl = std::atoi(f[1].c_str());
    rr.rdata.push_back(*c);
  }
  if (status.empty())
    return make_error(kExitRedirectFailed, what + ": " + (p.status == 9 ? reason_of(p.output) : "no answer (" + reason_of(p.output) + ")"));
  if (status != "NOERROR" && status != "NXDOMAIN")
    return make_error(kExitRedirectFailed, what + ": the server answered " + status + " (is it the zone's primary?)");
  if (!aa)
    return make_error(kExitRedirectFailed, what + ": the answer is not authoritative (the server is not a primary of the zone)");
  std::sort(rr.rdata.begin(), rr.rdata.end());
  rr.rdata.erase(std::unique(rr.rdata.begin(), rr.rdata.end()), rr.rdata.end());
  return rr;
}

Result<std::vector<DnsChange>> plan_dns(const CmdbCustomer& customer, const std::map<std::string, std::string>& host_address) {
  std::vector<DnsChange> out;
  std::map<RRsetKey, size_t> first;  // RRset -> index of its first record
  std::map<std::pair<std::string, std::string>, std::string> types_at;  // (server zone, name) -> a type there
  for (const auto& d : customer.dns) {
    std::string label = d.name + " " + d.type;
    auto bad = [&](const std::string& msg) {
      return make_error(kExitUsage, "failed to plan DNS record " + (d.where.empty() ? label : d.where + " (" + label + ")") + ": " + msg);
    };
    DnsChange c;
    c.where = d.where;
    c.server = trim(d.server);
    c.port = d.port;
    c.tsig_key = d.tsig_key;
    c.ttl = d.ttl;
    c.type = upper(trim(d.type));
    if (c.server.empty()) return bad("no server");
    if (c.port < 1 || c.port > 65535) return bad("port " + std::to_string(c.port) + " is out of range");
    if (d.tsig_key.empty()) return bad("no tsig_key (updates are TSIG-signed)");
    if (d.ttl < 0) return bad("ttl must not be negative");
    c.zone = abs_name(d.zone);
    if (c.zone.empty()) return bad("zone '" + d.zone + "' is not a domain name");
    c.name = abs_name(d.name);
    if (c.name.empty()) return bad("name '" + d.name + "' is not a domain name");
    if (!in_zone(c.name, c.zone)) return bad("name " + c.name + " is not in zone " + c.zone);
    if (c.type != "A" && c.type != "AAAA" && c.type != "CNAME" && c.type != "MX" && c.type != "TXT")
      return bad("type '" + d.type + "' is not supported (A, AAAA, CNAME, MX, TXT)");
    if (!d.host.empty() && !d.value.empty()) return bad("give either 'host' or 'value', not both");
    std::string value = d.value;
    if (!d.host.empty()) {
      if (c.type != "A" && c.type != "AAAA")
        return bad("'host' gives an address, for A or AAAA records; a " + c.type + " record needs 'value'");
      auto it = host_address.find(d.host);
      if (it == host_address.end()) {
        std::vector<std::string> names;
        for (const auto& [h, a] : host_address) names.push_back(h);
        return bad("unknown host '" + d.host + "' (hosts of customer " + customer.name + ": " +
                   (names.empty() ? "none" : join(names, ", ")) + ")");
      }
      if (it->second.empty()) return bad("host " + d.host + " has no rescue address");
      value = it->second;
      c.host = d.host;
    } else if (trim(value).empty()) {
      return bad("no 'host' or 'value'");
    }
    auto r = canon_rdata(c.type, value);
    if (!r.ok()) return bad((c.host.empty() ? "" : "host " + c.host + ": ") + r.error().message);
    c.rdata = *r;
    // One RRset: same TTL, same key; a CNAME stands alone.
    RRsetKey k{c.server, c.port, c.zone, c.name, c.type};
    if (auto f = first.find(k); f != first.end()) {
      const DnsChange& p = out[f->second];
      if (c.type == "CNAME") return bad("a second CNAME for " + c.name + " (first at " + p.where + ")");
      if (p.ttl != c.ttl) return bad("ttl " + std::to_string(c.ttl) + " differs from " + std::to_string(p.ttl) + " of the same RRset at " + p.where);
      if (p.tsig_key != c.tsig_key) return bad("tsig_key differs from that of the same RRset at " + p.where);
      if (p.rdata == c.rdata) return bad("the same record is listed twice (first at " + p.where + ")");
    } else {
      first[k] = out.size();
    }
    auto at = std::make_pair(c.server + " " + std::to_string(c.port) + " " + c.zone, c.name);
    if (auto t = types_at.find(at); t != types_at.end() && t->second != c.type && (t->second == "CNAME" || c.type == "CNAME"))
      return bad("a CNAME cannot share its name with other records (" + c.name + " " + t->second + ")");
    types_at.emplace(at, c.type);
    out.push_back(std::move(c));
  }
  return out;
}

Result<DnsJournal> read_dns_journal(const std::string& path) {
  PB_ASSIGN(std::string text, read_file(path));
  auto bad = [&](const std::string& m) { return make_error(kExitCorrupt, "failed to read DNS rollback journal " + path + ": " + m); };
  DnsJournal j;
  try {
    json doc = json::parse(text);
    if (doc.value("format", "") != kJournalFormat) return bad("not a '" + std::string(kJournalFormat) + "' file");
    j.state = doc.value("state", "");
    j.created = doc.value("created", "");
    j.updated = doc.value("updated", "");
    for (const auto& e : doc.at("rrsets")) {
      DnsRRsetState r;
      r.server = e.at("server").get<std::string>();
      r.port = e.at("port").get<int>();
      r.zone = e.at("zone").get<std::string>();
      r.tsig_key = e.at("tsig_key").get<std::string>();
      r.name = e.at("name").get<std::string>();
      r.type = e.at("type").get<std::string>();
      r.original_exists = e.at("original").at("exists").get<bool>();
      r.original_ttl = e.at("original").at("ttl").get<int>();
      r.original = e.at("original").at("rdata").get<std::vector<std::string>>();
      r.redirect_ttl = e.at("redirect").at("ttl").get<int>();
      r.redirect = e.at("redirect").at("rdata").get<std::vector<std::string>>();
      r.state = e.at("state").get<std::string>();
      j.rrsets.push_back(std::move(r));
    }
  } catch (const std::exception& e) {
    return bad(e.what());
  }
  return j;
}

namespace {

std::string describe(const DnsRRsetState& r, bool back) {
  const auto& from = back ? r.redirect : r.original;
  const auto& to = back ? r.original : r.redirect;
  std::string to_s = back && !r.original_exists ? "(deleted)" : show_set(to);
  return r.name + " " + r.type + " " + (back || r.original_exists ? show_set(from) : "(none)") + " -> " + to_s +
         " (server " + where_str(r.server, r.port) + ")";
}

std::string audit_detail(const DnsRRsetState& r, bool back) {
  json from = back ? json(r.redirect) : (r.original_exists ? json(r.original) : json::array());
  json to = back ? (r.original_exists ? json(r.original) : json::array()) : json(r.redirect);
  return json{{"name", r.name}, {"type", r.type}, {"server", where_str(r.server, r.port)}, {"zone", r.zone},
              {"from", from}, {"to", to}, {"ttl", back ? r.original_ttl : r.redirect_ttl}}.dump();
}

// Restores every RRset of the journal not yet restored; the journal is rewritten
// after each. Errors are collected: one unreachable server does not stop the others.
Status rollback_journal(const std::string& path, DnsJournal& j, const DnsOptions& opt) {
  std::vector<std::string> errors;
  for (size_t i = j.rrsets.size(); i-- > 0;) {
    DnsRRsetState& r = j.rrsets[i];
    if (r.state == "restored") continue;
    auto cur = query_dns(r.server, r.port, r.name, r.type, opt.timeout_s);
    if (!cur.ok()) {
      errors.push_back(cur.error().message);
      continue;
    }
    if (!same_rrset(*cur, r.original_exists, r.original_ttl, r.original)) {
      Status s = send_update(r, update_script(r, nullptr, true), opt.timeout_s);
      if (!s.ok()) {
        errors.push_back("failed to restore " + r.name + " " + r.type + " at " + where_str(r.server, r.port) + ": " + s.error().message);
        continue;
      }
      auto after = query_dns(r.server, r.port, r.name, r.type, opt.timeout_s);
      if (!after.ok()) {
        errors.push_back(after.error().message);
        continue;
      }
      if (!same_rrset(*after, r.original_exists, r.original_ttl, r.original)) {
        errors.push_back("failed to restore " + r.name + " " + r.type + " at " + where_str(r.server, r.port) +
                         ": the server accepted the update but answers " + show_set(after->rdata));
        continue;
      }
      if (opt.audit) opt.audit("dns-rollback", audit_detail(r, true));
      if (opt.note) opt.note("restored " + describe(r, true));
    } else if (r.state != "pending" && opt.note) {
      opt.note("already original: " + r.name + " " + r.type);
    }
    r.state = "restored";
    PB_TRY(write_journal(path, j));
  }
  if (!errors.empty()) {
    j.state = "failed";
    PB_TRY(write_journal(path, j));
    return make_error(kExitRedirectFailed, join(errors, "; "));
  }
  j.state = "rolled-back";
  return write_journal(path, j);
}

Result<FileLock> lock_journal(const std::string& path) {
  PB_TRY(mkdir_p(dirname_of(path), 0755));
  return FileLock::acquire(path + ".lock", true, false, "DNS rollback journal " + path);
}

}  // namespace

Status redirect_dns(const std::vector<DnsChange>& changes, const std::string& path, const DnsOptions& opt) {
  if (changes.empty()) return {};
  PB_ASSIGN(FileLock lock, lock_journal(path));
  // Group into RRsets, in the order of their first record.
  std::vector<DnsRRsetState> sets;
  std::map<RRsetKey, size_t> index;
  for (const auto& c : changes) {
    RRsetKey k{c.server, c.port, c.zone, c.name, c.type};
    auto it = index.find(k);
    if (it == index.end()) {
      index[k] = sets.size();
      DnsRRsetState r;
      r.server = c.server;
      r.port = c.port;
      r.zone = c.zone;
      r.tsig_key = c.tsig_key;
      r.name = c.name;
      r.type = c.type;
      r.redirect_ttl = c.ttl;
      r.state = "pending";
      sets.push_back(std::move(r));
      it = index.find(k);
    }
    sets[it->second].redirect.push_back(c.rdata);
  }
  for (auto& r : sets) {
    std::sort(r.redirect.begin(), r.redirect.end());
    PB_TRY(check_key_file(r.tsig_key));
  }

  // Originals: from a journal still in force (a re-run after a crash), else from the server.
  DnsJournal j;
  j.created = iso_now();
  std::map<RRsetKey, DnsRRsetState> kept;
  if (path_exists(path)) {
    PB_ASSIGN(DnsJournal old, read_dns_journal(path));
    if (old.state != "rolled-back") {
      j.created = old.created;
      for (auto& r : old.rrsets) kept[RRsetKey{r.server, r.port, r.zone, r.name, r.type}] = r;
    }
  }
  std::map<size_t, DnsRRset> fresh;  // RRsets just read: no second query before their update
  for (size_t i = 0; i < sets.size(); ++i) {
    DnsRRsetState& r = sets[i];
    RRsetKey k{r.server, r.port, r.zone, r.name, r.type};
    if (auto it = kept.find(k); it != kept.end()) {
      r.original_exists = it->second.original_exists;
      r.original_ttl = it->second.original_ttl;
      r.original = it->second.original;
      kept.erase(it);
      continue;
    }
    auto cur = query_dns(r.server, r.port, r.name, r.type, opt.timeout_s);
    if (!cur.ok())
      return make_error(kExitRedirectFailed, cur.error().message + " (nothing was changed)");
    r.original_exists = !cur->rdata.empty();
    r.original_ttl = cur->ttl;
    r.original = cur->rdata;
    fresh[i] = *cur;
  }
  j.rrsets = sets;
  for (auto& [k, r] : kept) j.rrsets.push_back(r);  // redirected by an earlier run, no longer planned
  j.state = "applying";
  PB_TRY(write_journal(path, j));

  // One update per RRset, conditional on the RRset being what was just read.
  std::string failure;
  for (size_t i = 0; i < sets.size(); ++i) {
    DnsRRsetState& r = j.rrsets[i];
    std::string label = r.name + " " + r.type + " at " + where_str(r.server, r.port);
    Result<DnsRRset> cur = fresh.count(i) ? Result<DnsRRset>(fresh[i]) : query_dns(r.server, r.port, r.name, r.type, opt.timeout_s);
    if (!cur.ok()) {
      failure = cur.error().message;
      break;
    }
    if (!same_rrset(*cur, true, r.redirect_ttl, r.redirect)) {
      if (!same_rrset(*cur, r.original_exists, r.original_ttl, r.original)) {
        failure = "failed to redirect " + label + ": it changed on the server since it was read (now " +
                  show_set(cur->rdata) + ", journal " + show_set(r.original) + ")";
        break;
      }
      Status s = send_update(r, update_script(r, &*cur, false), opt.timeout_s);
      if (!s.ok()) {
        failure = "failed to redirect " + label + ": " + s.error().message;
        break;
      }
      auto after = query_dns(r.server, r.port, r.name, r.type, opt.timeout_s);
      if (!after.ok()) {
        failure = after.error().message;
        break;
      }
      if (!same_rrset(*after, true, r.redirect_ttl, r.redirect)) {
        failure = "failed to redirect " + label + ": the server accepted the update but answers " + show_set(after->rdata) +
                  " (wanted " + show_set(r.redirect) + (r.type != "CNAME" && after->rdata.empty()
                      ? "; is there a CNAME at that name? a server ignores other records beside one)" : ")");
        break;
      }
      if (opt.audit) opt.audit("dns-redirect", audit_detail(r, false));
      if (opt.note) opt.note("redirected " + describe(r, false));
    } else if (opt.note) {
      opt.note("already redirected: " + r.name + " " + r.type);
    }
    r.state = "applied";
    PB_TRY(write_journal(path, j));
  }
  if (failure.empty()) {
    j.state = "applied";
    return write_journal(path, j);
  }
  size_t changed = 0;
  for (const auto& r : j.rrsets)
    if (r.state == "applied") ++changed;
  Status rb = rollback_journal(path, j, opt);
  if (!rb.ok())
    return make_error(kExitRedirectFailed, failure + "; rolling back failed too: " + rb.error().message +
                                               " (the journal " + path + " keeps the originals: run the rollback again)");
  return make_error(kExitRedirectFailed, failure + "; " +
                                             (changed ? std::to_string(changed) + " RRset(s) already changed were rolled back"
                                                      : std::string("nothing was changed")));
}

Status rollback_dns(const std::string& path, const DnsOptions& opt) {
  if (!path_exists(path)) {
    if (opt.note) opt.note("no DNS rollback journal: nothing to roll back");
    return {};
  }
  PB_ASSIGN(FileLock lock, lock_journal(path));
  PB_ASSIGN(DnsJournal j, read_dns_journal(path));
  if (j.state == "rolled-back") {
    if (opt.note) opt.note("DNS already rolled back: nothing to do");
    return {};
  }
  Status s = rollback_journal(path, j, opt);
  if (!s.ok()) return make_error(kExitRedirectFailed, "failed to roll back DNS: " + s.error().message);
  return {};
}

}  // namespace planb
