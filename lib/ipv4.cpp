#include "ipv4.hpp"

#include <charconv>

namespace planb {

std::optional<uint32_t> parse_ipv4(std::string_view s) {
  uint32_t a = 0;
  const char* p = s.data();
  const char* e = s.data() + s.size();
  for (int i = 0; i < 4; i++) {
    if (i && (p == e || *p++ != '.')) return std::nullopt;
    if (p == e || *p < '0' || *p > '9') return std::nullopt;
    if (*p == '0' && p + 1 != e && p[1] >= '0' && p[1] <= '9') return std::nullopt;  // no leading zeros
    unsigned v = 0;
    auto r = std::from_chars(p, e, v);
    if (r.ec != std::errc() || v > 255) return std::nullopt;
    p = r.ptr;
    a = a << 8 | v;
  }
  if (p != e) return std::nullopt;
  return a;
}

std::string ipv4_str(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string(a >> 16 & 255) + "." + std::to_string(a >> 8 & 255) + "." +
         std::to_string(a & 255);
}

std::string Ipv4Net::str() const { return ipv4_str(base) + "/" + std::to_string(prefix); }

std::optional<Ipv4Net> parse_ipv4_net(std::string_view s) {
  size_t slash = s.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto a = parse_ipv4(s.substr(0, slash));
  if (!a) return std::nullopt;
  std::string_view ps = s.substr(slash + 1);
  int prefix = 0;
  auto r = std::from_chars(ps.data(), ps.data() + ps.size(), prefix);
  if (r.ec != std::errc() || r.ptr != ps.data() + ps.size() || prefix < 8 || prefix > 30) return std::nullopt;
  Ipv4Net n{*a, prefix};
  if ((*a & ~n.mask()) != 0) return std::nullopt;
  return n;
}

}  // namespace planb
