// IPv4 addresses and networks as the CMDB and the rescue platform use them.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace planb {

struct Ipv4Net {
  uint32_t base = 0;  // network address (host bits zero)
  int prefix = 0;
  uint32_t mask() const { return prefix == 0 ? 0 : ~uint32_t(0) << (32 - prefix); }
  bool contains(uint32_t a) const { return (a & mask()) == base; }
  uint32_t broadcast() const { return base | ~mask(); }
  uint32_t gateway() const { return base + 1; }  // .1: the platform's own address
  std::string str() const;                         // "10.99.0.0/24"
};

// "10.99.0.11" -> host-order address; nullopt if not a dotted quad.
std::optional<uint32_t> parse_ipv4(std::string_view s);
std::string ipv4_str(uint32_t a);
// "10.99.0.0/24" (host bits must be zero; prefix 8..30); nullopt otherwise.
std::optional<Ipv4Net> parse_ipv4_net(std::string_view s);

}  // namespace planb
