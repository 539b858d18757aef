#include "cmdb.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <map>
#include <set>

#include <toml++/toml.h>

#include "cmdb_reader.hpp"
#include "fsutil.hpp"

namespace planb {

using namespace cmdb_detail;

std::string_view check_type_name(CheckType t) {
  switch (t) {
    case CheckType::Tcp: return "tcp";
    case CheckType::Http: return "http";
    case CheckType::Ssh: return "ssh";
    case CheckType::Systemd: return "systemd";
    case CheckType::Script: return "script";
  }
  return "?";
}

std::string CmdbCheck::target() const {
  switch (type) {
    case CheckType::Tcp: return "port " + std::to_string(port);
    case CheckType::Http: {
      std::string t = ":" + std::to_string(port) + path + " " + std::to_string(status);
      if (!body.empty()) t += " '" + body + "'";
      return t;
    }
    case CheckType::Ssh: return command;
    case CheckType::Systemd: return "is-system-running";
    case CheckType::Script: return run;
  }
  return "";
}

std::vector<int> CmdbHost::guest_ports() const {
  std::set<int> s;
  for (const auto& c : checks) {
    switch (c.type) {
      case CheckType::Tcp:
      case CheckType::Http: s.insert(c.port); break;
      case CheckType::Ssh:
      case CheckType::Systemd: s.insert(ssh_port); break;
      case CheckType::Script:
        s.insert(ssh_port);
        for (int p : c.ports) s.insert(p);
        break;
    }
  }
  return {s.begin(), s.end()};
}

const CmdbHost* Cmdb::find(std::string_view host) const {
  for (const auto& h : hosts)
    if (h.name == host) return &h;
  return nullptr;
}

const CmdbCustomer* Cmdb::customer(std::string_view name) const {
  for (const auto& c : customers)
    if (c.name == name) return &c;
  return nullptr;
}

std::vector<const CmdbHost*> Cmdb::hosts_of(std::string_view customer) const {
  std::vector<const CmdbHost*> out;
  for (const auto& h : hosts)
    if (h.customer == customer) out.push_back(&h);
  return out;
}

namespace {

Result<CmdbCheck> parse_check(const Reader& rd, const toml::table& t, const std::string& host) {
  CmdbCheck c;
  c.where = where_of(rd.file, t.source());
  const toml::node* type = t.get("type");
  if (!type) return bad(c.where, "check of host " + host + " has no 'type' (tcp, http, ssh, systemd or script)");
  PB_ASSIGN(std::string ty, rd.str(*type, "type"));
  static const std::map<std::string, CheckType> kTypes = {{"tcp", CheckType::Tcp},
                                                          {"http", CheckType::Http},
                                                          {"ssh", CheckType::Ssh},
                                                          {"systemd", CheckType::Systemd},
                                                          {"script", CheckType::Script}};
  auto it = kTypes.find(ty);
  if (it == kTypes.end())
    return bad(rd.at(*type), "unknown check type '" + ty + "' (tcp, http, ssh, systemd or script)");
  c.type = it->second;
  // The keys each type accepts (besides type, name, timeout).
  static const std::map<CheckType, std::set<std::string>> kKeys = {
      {CheckType::Tcp, {"port"}},
      {CheckType::Http, {"port", "path", "status", "body"}},
      {CheckType::Ssh, {"command", "output"}},
      {CheckType::Systemd, {}},
      {CheckType::Script, {"run", "ports"}}};
  for (const auto& [k, v] : t) {
    std::string key(k.str());
    const toml::node& n = v;
    if (key == "type") continue;
    if (key == "name") {
      PB_ASSIGN(c.name, rd.str(n, key));
    } else if (key == "timeout") {
      PB_ASSIGN(int64_t x, rd.integer(n, key, 1, 3600));
      c.timeout = int(x);
    } else if (!kKeys.at(c.type).count(key)) {
      return bad(where_of(rd.file, k.source()), "unknown key '" + key + "' in a " + ty + " check of host " + host);
    } else if (key == "port") {
      PB_ASSIGN(int64_t x, rd.integer(n, key, 1, 65535));
      c.port = int(x);
    } else if (key == "path") {
      PB_ASSIGN(c.path, rd.str(n, key));
      if (c.path.empty() || c.path[0] != '/') return bad(rd.at(n), "'path' must start with /");
      if (c.path.find_first_of(" \r\n") != std::string::npos) return bad(rd.at(n), "'path' must not contain spaces or newlines");
    } else if (key == "status") {
      PB_ASSIGN(int64_t x, rd.integer(n, key, 100, 599));
      c.status = int(x);
    } else if (key == "body") {
      PB_ASSIGN(c.body, rd.str(n, key));
    } else if (key == "command") {
      PB_ASSIGN(c.command, rd.str(n, key));
    } else if (key == "output") {
      PB_ASSIGN(c.output, rd.str(n, key));
    } else if (key == "run") {
      PB_ASSIGN(c.run, rd.str(n, key));
    } else if (key == "ports") {
      PB_ASSIGN(c.ports, rd.ports(n, key));
    }
  }
  switch (c.type) {
    case CheckType::Tcp:
      if (!c.port) return bad(c.where, "tcp check of host " + host + " needs 'port'");
      break;
    case CheckType::Http:
      if (!c.port) c.port = 80;
      break;
    case CheckType::Ssh:
      if (c.command.empty()) return bad(c.where, "ssh check of host " + host + " needs 'command'");
      break;
    case CheckType::Script:
      if (c.run.empty()) return bad(c.where, "script check of host " + host + " needs 'run'");
      break;
    case CheckType::Systemd: break;
  }
  return c;
}

Result<CmdbHost> parse_host(const Reader& rd, const toml::table& t, const std::string& customer) {
  CmdbHost h;
  h.customer = customer;
  h.where = where_of(rd.file, t.source());
  const toml::node* name = t.get("name");
  if (!name) return bad(h.where, "[[host]] has no 'name'");
  PB_ASSIGN(h.name, rd.str(*name, "name"));
  if (!valid_host_name(h.name))
    return bad(rd.at(*name), "host name '" + h.name + "' is not valid (letters, digits, '.', '-', '_')");
  for (const auto& [k, v] : t) {
    std::string key(k.str());
    const toml::node& n = v;
    if (key == "name") continue;
    if (key == "description") {
      PB_ASSIGN(h.description, rd.str(n, key));
    } else if (key == "cpus") {
      PB_ASSIGN(int64_t x, rd.integer(n, key, 1, 64));
      h.cpus = int(x);
    } else if (key == "memory_mb") {
      PB_ASSIGN(int64_t x, rd.integer(n, key, 64, 1 << 20));
      h.memory_mb = uint64_t(x);
    } else if (key == "ssh_port") {
      PB_ASSIGN(int64_t x, rd.integer(n, key, 1, 65535));
      h.ssh_port = int(x);
    } else if (key == "address") {
      PB_ASSIGN(h.address, rd.str(n, key));
    } else if (key == "depends_on") {
      PB_ASSIGN(h.depends_on, rd.strings(n, key));
    } else if (key == "check") {
      if (!n.is_array_of_tables())
        return bad(rd.at(n), "'check' of host " + h.name + " must be [[host.check]] tables");
      for (const auto& e : *n.as_array()) {
        PB_ASSIGN(CmdbCheck c, parse_check(rd, *e.as_table(), h.name));
        h.checks.push_back(std::move(c));
      }
    } else {
      return bad(where_of(rd.file, k.source()), "unknown key '" + key + "' in host " + h.name);
    }
  }
  return h;
}

}  // namespace

Result<Cmdb> parse_cmdb(std::string_view text, const std::string& file) {
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    return bad(where_of(file, e.source()), std::string(e.description()));
  }
  Reader rd{file};
  Cmdb db;
  db.files.push_back(file);
  std::string customer;
  if (const toml::node* c = root.get("customer")) {
    PB_ASSIGN(customer, rd.str(*c, "customer"));
  } else {
    return bad(file, "no 'customer' (the first line should be: customer = \"NAME\")");
  }
  CmdbCustomer cust;
  cust.name = customer;
  cust.file = file;
  for (const auto& [k, v] : root) {
    std::string key(k.str());
    const toml::node& n = v;
    if (key == "customer") continue;
    PB_ASSIGN(bool handled, parse_customer_key(rd, key, n, cust));
    if (handled) continue;
    if (key == "host") {
      if (!n.is_array_of_tables()) return bad(rd.at(n), "'host' must be [[host]] tables");
      for (const auto& e : *n.as_array()) {
        PB_ASSIGN(CmdbHost h, parse_host(rd, *e.as_table(), customer));
        if (const CmdbHost* prev = db.find(h.name))
          return bad(h.where, "host " + h.name + " is defined twice (first at " + prev->where + ")");
        db.hosts.push_back(std::move(h));
      }
    } else {
      return bad(where_of(file, k.source()), "unknown key '" + key + "' (known: customer, rescue, authorisation, dns, vpn, host)");
    }
  }
  std::vector<CmdbHost*> hosts;
  for (auto& h : db.hosts) hosts.push_back(&h);
  PB_TRY(finish_customer(cust, hosts));
  db.customers.push_back(std::move(cust));
  return db;
}

namespace {

Status check_dependencies(const Cmdb& db) {
  for (const auto& h : db.hosts)
    for (const auto& d : h.depends_on)
      if (!db.find(d)) return bad(h.where, "host " + h.name + " depends on unknown host '" + d + "'");
  // Cycles: depth-first search with colours.
  std::map<std::string, int> colour;  // 0 new, 1 on stack, 2 done
  std::function<Status(const CmdbHost&, std::string)> visit = [&](const CmdbHost& h, std::string path) -> Status {
    colour[h.name] = 1;
    path += (path.empty() ? "" : " -> ") + h.name;
    for (const auto& d : h.depends_on) {
      if (colour[d] == 1) return bad(h.where, "dependency cycle: " + path + " -> " + d);
      if (colour[d] == 0) PB_TRY(visit(*db.find(d), path));
    }
    colour[h.name] = 2;
    return {};
  };
  for (const auto& h : db.hosts)
    if (colour[h.name] == 0) PB_TRY(visit(h, ""));
  return {};
}

}  // namespace

Result<Cmdb> load_cmdb(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return make_error(errno == ENOENT ? kExitNotFound : kExitFailure, "failed to read CMDB " + path + ": " + errstr(errno));
  std::vector<std::string> files;
  if (S_ISDIR(st.st_mode)) {
    DIR* d = ::opendir(path.c_str());
    if (!d) return fail("failed to read CMDB " + path + ": " + errstr(errno));
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 5 && n[0] != '.' && n.compare(n.size() - 5, 5, ".toml") == 0) {
        std::string p = join_path(path, n);
        struct stat fst;
        if (::stat(p.c_str(), &fst) == 0 && S_ISREG(fst.st_mode)) files.push_back(p);
      }
    }
    ::closedir(d);
    std::sort(files.begin(), files.end());
    if (files.empty()) return make_error(kExitNotFound, "failed to read CMDB " + path + ": no *.toml files in it");
  } else {
    files.push_back(path);
  }
  Cmdb all;
  for (const auto& f : files) {
    PB_ASSIGN(std::string text, read_file(f));
    PB_ASSIGN(Cmdb one, parse_cmdb(text, f));
    for (auto& h : one.hosts) {
      if (const CmdbHost* prev = all.find(h.name))
        return bad(h.where, "host " + h.name + " is defined twice (first at " + prev->where + ")");
      all.hosts.push_back(std::move(h));
    }
    for (auto& c : one.customers) {
      if (const CmdbCustomer* prev = all.customer(c.name))
        return bad(f, "customer " + c.name + " is also defined in " + prev->file + " (one file per customer)");
      all.customers.push_back(std::move(c));
    }
    all.files.push_back(f);
  }
  PB_TRY(check_dependencies(all));
  return all;
}

}  // namespace planb
