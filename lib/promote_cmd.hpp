// The planb-promote command.
#pragma once
#include <optional>
#include <string>

#include "promote.hpp"

namespace planb {

struct PromoteCmdOptions {
  std::string server;
  PromoteOptions promote;
  std::optional<uint64_t> sequence;
  bool list = false;
  bool pending = false;
  bool json = false;
};

Status promote_main(PromoteCmdOptions& o);

}  // namespace planb
