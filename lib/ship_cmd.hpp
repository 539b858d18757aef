// The planb-ship command.
#pragma once
#include <string>

#include "ship.hpp"

namespace planb {

struct ShipCmdOptions {
  ShipOptions ship;
  std::string limit_rate;  // e.g. 500k, 10M
  bool json = false;
};

// Parses a byte rate: a number with an optional k/M/G suffix (powers of 1024), per second.
Result<uint64_t> parse_rate(const std::string& s);

Status ship_main(ShipCmdOptions& o);

}  // namespace planb
