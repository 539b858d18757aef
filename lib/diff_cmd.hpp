// The planb-diff command.
#pragma once
#include <string>

#include "bundle.hpp"

namespace planb {

struct DiffCmdOptions {
  std::string store;
  DiffOptions diff;
  std::string apply;
  bool json = false;
};

Status diff_main(DiffCmdOptions& o);

}  // namespace planb
