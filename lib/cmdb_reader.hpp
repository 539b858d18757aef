// Internal to the CMDB parser (lib/cmdb*.cpp): typed TOML readers whose
// errors name the file and line, exit code 2.
#pragma once
#include <cctype>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "cmdb.hpp"
#include "result.hpp"

namespace planb::cmdb_detail {

inline std::string where_of(const std::string& file, const toml::source_region& r) {
  return r.begin.line ? file + ":" + std::to_string(r.begin.line) : file;
}

inline Error bad(const std::string& where, const std::string& msg) {
  return make_error(kExitUsage, "failed to read CMDB " + where + ": " + msg);
}

inline const char* type_word(toml::node_type t) {
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

inline bool valid_host_name(std::string_view s) {
  if (s.empty() || s.size() > 253 || s[0] == '.' || s[0] == '-') return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_')) return false;
  return true;
}


// Customer-level tables ([rescue], [authorisation], [[dns]], [vpn]), in
// lib/cmdb_customer.cpp. Returns false for a key it does not know.
Result<bool> parse_customer_key(const Reader& rd, const std::string& key, const toml::node& n, CmdbCustomer& c);
// After all of a customer's hosts are read: rescue addresses (given ones checked,
// missing ones assigned from .10 up), DNS records naming known hosts, quorum.
Status finish_customer(CmdbCustomer& c, const std::vector<CmdbHost*>& hosts);

}  // namespace planb::cmdb_detail
