#include "cmdb.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <map>
#include <set>

#include <toml++/toml.h>

#include "fsutil.hpp"

namespace planb {

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

namespace {

std::string where_of(const std::string& file, const toml::source_region& r) {
  return r.begin.line ? file + ":" + std::to_string(r.begin.line) : file;
}

Error bad(const std::string& where, const std::string& msg) {
  return make_error(kExitUsage, "failed to read CMDB " + where + ": " + msg);
}

const char* type_word(toml::node_type t) {
  switch (t) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date or time";
  }
}

// Typed readers: a wrong type is an error naming the key and its line.
struct Reader {
  const std::string& file;

  std::string at(const toml::node& n) const { return where_of(file, n.source()); }

  Result<std::string> str(const toml::node& n, std::string_view key) const {
    if (!n.is_string()) return bad(at(n), "'" + std::string(key) + "' must be a string, not " + type_word(n.type()));
    return std::string(n.as_string()->get());
  }
  Result<int64_t> integer(const toml::node& n, std::string_view key, int64_t lo, int64_t hi) const {
    if (!n.is_integer()) return bad(at(n), "'" + std::string(key) + "' must be an integer, not " + type_word(n.type()));
    int64_t v = n.as_integer()->get();
    if (v < lo || v > hi)
      return bad(at(n), "'" + std::string(key) + "' = " + std::to_string(v) + " is out of range (" + std::to_string(lo) +
                            ".." + std::to_string(hi) + ")");
    return v;
  }
  Result<std::vector<std::string>> strings(const toml::node& n, std::string_view key) const {
    if (!n.is_array()) return bad(at(n), "'" + std::string(key) + "' must be an array of strings, not " + type_word(n.type()));
    std::vector<std::string> out;
    for (const auto& e : *n.as_array()) {
      if (!e.is_string()) return bad(at(e), "'" + std::string(key) + "' must hold strings, not " + type_word(e.type()));
      out.emplace_back(e.as_string()->get());
    }
    return out;
  }
  Result<std::vector<int>> ports(const toml::node& n, std::string_view key) const {
    if (!n.is_array()) return bad(at(n), "'" + std::string(key) + "' must be an array of ports, not " + type_word(n.type()));
    std::vector<int> out;
    for (const auto& e : *n.as_array()) {
      PB_ASSIGN(int64_t p, integer(e, key, 1, 65535));
      out.push_back(int(p));
    }
    return out;
  }
};

bool valid_host_name(std::string_view s) {
  if (s.empty() || s.size() > 253 || s[0] == '.' || s[0] == '-') return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_')) return false;
  return true;
}

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
  for (const auto& [k, v] : root) {
    std::string key(k.str());
    const toml::node& n = v;
    if (key == "customer") continue;
    if (key == "host") {
      if (!n.is_array_of_tables()) return bad(rd.at(n), "'host' must be [[host]] tables");
      for (const auto& e : *n.as_array()) {
        PB_ASSIGN(CmdbHost h, parse_host(rd, *e.as_table(), customer));
        if (const CmdbHost* prev = db.find(h.name))
          return bad(h.where, "host " + h.name + " is defined twice (first at " + prev->where + ")");
        db.hosts.push_back(std::move(h));
      }
    } else {
      return bad(where_of(file, k.source()), "unknown key '" + key + "' (known: customer, host)");
    }
  }
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
    all.files.push_back(f);
  }
  PB_TRY(check_dependencies(all));
  return all;
}

}  // namespace planb
