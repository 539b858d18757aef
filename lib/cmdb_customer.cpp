// The CMDB's per-customer tables used by planb-invoke: [rescue],
// [authorisation] + [[authorisation.executive]], [[dns]], [vpn] + [[vpn.peer]].
#include <map>
#include <set>

#include "cmdb_reader.hpp"
#include "fsutil.hpp"
#include "ipv4.hpp"

namespace planb::cmdb_detail {

namespace {

using Handler = std::function<Status(const std::string& key, const toml::node& n)>;

// Walks a table's keys: each must be handled, else "unknown key" naming `what`.
Status each_key(const Reader& rd, const toml::table& t, const std::string& what, const Handler& h,
                const std::set<std::string>& known) {
  for (const auto& [k, v] : t) {
    std::string key(k.str());
    if (!known.count(key)) {
      std::string list;
      for (const auto& x : known) list += (list.empty() ? "" : ", ") + x;
      return bad(where_of(rd.file, k.source()), "unknown key '" + key + "' in " + what + " (known: " + list + ")");
    }
    PB_TRY(h(key, v));
  }
  return {};
}

const toml::table* as_table(const Reader& rd, const toml::node& n, const std::string& what, Status& err) {
  if (!n.is_table()) {
    err = bad(rd.at(n), "'" + what + "' must be a table ([" + what + "])");
    return nullptr;
  }
  return n.as_table();
}

Result<std::vector<const toml::table*>> tables(const Reader& rd, const toml::node& n, const std::string& what) {
  if (!n.is_array_of_tables()) return bad(rd.at(n), "'" + what + "' must be [[" + what + "]] tables");
  std::vector<const toml::table*> out;
  for (const auto& e : *n.as_array()) out.push_back(e.as_table());
  return out;
}

std::string dir_of(const std::string& file) {
  size_t s = file.rfind('/');
  return s == std::string::npos ? "." : file.substr(0, s);
}

Status parse_rescue(const Reader& rd, const toml::node& n, CmdbCustomer& c) {
  Status err;
  const toml::table* t = as_table(rd, n, "rescue", err);
  if (!t) return err;
  c.rescue.where = rd.at(n);
  return each_key(rd, *t, "[rescue]", [&](const std::string& key, const toml::node& v) -> Status {
    if (key == "network") {
      PB_ASSIGN(c.rescue.network, rd.str(v, key));
      if (!parse_ipv4_net(c.rescue.network))
        return bad(rd.at(v), "'network' = \"" + c.rescue.network + "\" is not an IPv4 network like 10.99.0.0/24 (prefix 8..30, host bits zero)");
    } else {
      PB_ASSIGN(c.rescue.domain, rd.str(v, key));
    }
    return {};
  }, {"network", "domain"});
}

Status parse_authorisation(const Reader& rd, const toml::node& n, CmdbCustomer& c) {
  Status err;
  const toml::table* t = as_table(rd, n, "authorisation", err);
  if (!t) return err;
  c.authorisation.where = rd.at(n);
  return each_key(rd, *t, "[authorisation]", [&](const std::string& key, const toml::node& v) -> Status {
    if (key == "quorum") {
      PB_ASSIGN(int64_t q, rd.integer(v, key, 1, 100));
      c.authorisation.quorum = int(q);
      return {};
    }
    PB_ASSIGN(auto list, tables(rd, v, "authorisation.executive"));
    for (const toml::table* e : list) {
      CmdbExecutive x;
      x.where = where_of(rd.file, e->source());
      PB_TRY(each_key(rd, *e, "[[authorisation.executive]]", [&](const std::string& k2, const toml::node& v2) -> Status {
        std::string s;
        PB_ASSIGN(s, rd.str(v2, k2));
        (k2 == "name" ? x.name : k2 == "email" ? x.email : x.key) = s;
        return {};
      }, {"name", "email", "key"}));
      if (x.name.empty()) return bad(x.where, "an executive needs a 'name'");
      if (x.key.empty()) return bad(x.where, "executive " + x.name + " needs a 'key' (Ed25519 public key)");
      c.authorisation.executives.push_back(std::move(x));
    }
    return {};
  }, {"quorum", "executive"});
}

Status parse_dns(const Reader& rd, const toml::node& n, CmdbCustomer& c) {
  PB_ASSIGN(auto list, tables(rd, n, "dns"));
  static const std::set<std::string> kTypes = {"A", "AAAA", "CNAME", "MX", "TXT"};
  for (const toml::table* t : list) {
    CmdbDnsRecord r;
    r.where = where_of(rd.file, t->source());
    PB_TRY(each_key(rd, *t, "[[dns]]", [&](const std::string& key, const toml::node& v) -> Status {
      if (key == "port") {
        PB_ASSIGN(int64_t p, rd.integer(v, key, 1, 65535));
        r.port = int(p);
      } else if (key == "ttl") {
        PB_ASSIGN(int64_t x, rd.integer(v, key, 0, 604800));
        r.ttl = int(x);
      } else {
        PB_ASSIGN(std::string s, rd.str(v, key));
        if (key == "server") r.server = s;
        else if (key == "zone") r.zone = s;
        else if (key == "tsig_key") r.tsig_key = s;
        else if (key == "name") r.name = s;
        else if (key == "type") r.type = s;
        else if (key == "host") r.host = s;
        else r.value = s;
      }
      return {};
    }, {"server", "port", "zone", "tsig_key", "name", "type", "host", "value", "ttl"}));
    if (r.zone.empty()) return bad(r.where, "a [[dns]] record needs 'zone'");
    if (r.name.empty()) return bad(r.where, "a [[dns]] record needs 'name'");
    if (r.tsig_key.empty()) return bad(r.where, "[[dns]] " + r.name + " needs 'tsig_key' (a BIND key file): updates are always signed");
    if (r.zone.back() != '.') r.zone += '.';
    if (r.name.back() != '.') r.name += '.';
    if (!kTypes.count(r.type)) return bad(r.where, "[[dns]] " + r.name + ": type '" + r.type + "' is not one of A, AAAA, CNAME, MX, TXT");
    if (r.host.empty() == r.value.empty())
      return bad(r.where, "[[dns]] " + r.name + " needs exactly one of 'host' (a rescue address) or 'value'");
    if (!r.host.empty() && r.type != "A")
      return bad(r.where, "[[dns]] " + r.name + ": 'host' gives an IPv4 address, so type must be A");
    if (r.name.size() < r.zone.size() ||
        r.name.compare(r.name.size() - r.zone.size(), r.zone.size(), r.zone) != 0 ||
        (r.name.size() > r.zone.size() && r.name[r.name.size() - r.zone.size() - 1] != '.'))
      return bad(r.where, "[[dns]] name " + r.name + " is not in zone " + r.zone);
    if (r.tsig_key[0] != '/') r.tsig_key = dir_of(rd.file) + "/" + r.tsig_key;
    c.dns.push_back(std::move(r));
  }
  return {};
}

Status parse_vpn(const Reader& rd, const toml::node& n, CmdbCustomer& c) {
  Status err;
  const toml::table* t = as_table(rd, n, "vpn", err);
  if (!t) return err;
  c.vpn.enabled = true;
  c.vpn.where = rd.at(n);
  return each_key(rd, *t, "[vpn]", [&](const std::string& key, const toml::node& v) -> Status {
    if (key == "listen_port") {
      PB_ASSIGN(int64_t p, rd.integer(v, key, 1, 65535));
      c.vpn.listen_port = int(p);
    } else if (key == "endpoint") {
      PB_ASSIGN(c.vpn.endpoint, rd.str(v, key));
    } else if (key == "network") {
      PB_ASSIGN(c.vpn.network, rd.str(v, key));
      if (!parse_ipv4_net(c.vpn.network)) return bad(rd.at(v), "'network' = \"" + c.vpn.network + "\" is not an IPv4 network like 10.98.0.0/24");
    } else {
      PB_ASSIGN(auto list, tables(rd, v, "vpn.peer"));
      for (const toml::table* p : list) {
        CmdbVpnPeer peer;
        peer.where = where_of(rd.file, p->source());
        PB_TRY(each_key(rd, *p, "[[vpn.peer]]", [&](const std::string& k2, const toml::node& v2) -> Status {
          if (k2 == "name") {
            PB_ASSIGN(peer.name, rd.str(v2, k2));
            return {};
          }
          PB_ASSIGN(peer.allowed_ips, rd.strings(v2, k2));
          for (const auto& a : peer.allowed_ips)
            if (!parse_ipv4_net(a)) return bad(rd.at(v2), "'allowed_ips' entry \"" + a + "\" is not an IPv4 network");
          return {};
        }, {"name", "allowed_ips"}));
        if (!valid_host_name(peer.name)) return bad(peer.where, "a [[vpn.peer]] needs a 'name' (letters, digits, '.', '-', '_')");
        for (const auto& q : c.vpn.peers)
          if (q.name == peer.name) return bad(peer.where, "VPN peer " + peer.name + " is listed twice");
        c.vpn.peers.push_back(std::move(peer));
      }
    }
    return {};
  }, {"listen_port", "endpoint", "network", "peer"});
}

}  // namespace

Result<bool> parse_customer_key(const Reader& rd, const std::string& key, const toml::node& n, CmdbCustomer& c) {
  if (key == "rescue") PB_TRY(parse_rescue(rd, n, c));
  else if (key == "authorisation") PB_TRY(parse_authorisation(rd, n, c));
  else if (key == "dns") PB_TRY(parse_dns(rd, n, c));
  else if (key == "vpn") PB_TRY(parse_vpn(rd, n, c));
  else return false;
  return true;
}

Status finish_customer(CmdbCustomer& c, const std::vector<CmdbHost*>& hosts) {
  auto net = parse_ipv4_net(c.rescue.network);
  if (!net) return bad(c.file, "[rescue] network \"" + c.rescue.network + "\" is not valid");
  if (c.rescue.domain.empty()) c.rescue.domain = c.name + ".rescue";
  std::map<uint32_t, std::string> taken;
  for (CmdbHost* h : hosts) {
    if (h->address.empty()) continue;
    auto a = parse_ipv4(h->address);
    if (!a) return bad(h->where, "host " + h->name + ": address \"" + h->address + "\" is not an IPv4 address");
    if (!net->contains(*a) || *a == net->base || *a == net->broadcast() || *a == net->gateway())
      return bad(h->where, "host " + h->name + ": address " + h->address + " is not a usable host address of the rescue network " +
                               net->str() + " (.1 is the platform's)");
    if (taken.count(*a)) return bad(h->where, "host " + h->name + ": address " + h->address + " is also " + taken[*a] + "'s");
    taken[*a] = h->name;
  }
  uint32_t next = net->base + 10;
  for (CmdbHost* h : hosts) {
    if (!h->address.empty()) continue;
    while (taken.count(next)) next++;
    if (next >= net->broadcast()) return bad(h->where, "the rescue network " + net->str() + " has no address left for host " + h->name);
    h->address = ipv4_str(next);
    taken[next] = h->name;
  }
  for (const auto& r : c.dns) {
    if (r.host.empty()) continue;
    bool found = false;
    for (const CmdbHost* h : hosts) found = found || h->name == r.host;
    if (!found) return bad(r.where, "[[dns]] " + r.name + " names host '" + r.host + "', which is not a host of customer " + c.name);
  }
  const auto& a = c.authorisation;
  if (!a.executives.empty() && a.quorum == 0) return bad(a.where, "[authorisation] needs 'quorum' (M of the executives listed)");
  if (a.quorum > int(a.executives.size()))
    return bad(a.where, "[authorisation] quorum = " + std::to_string(a.quorum) + " but only " +
                            std::to_string(a.executives.size()) + " executives are listed");
  return {};
}

}  // namespace planb::cmdb_detail
