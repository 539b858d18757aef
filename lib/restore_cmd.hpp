// The planb-restore command: list, ls, versions, get.
#pragma once
#include <string>
#include <vector>

#include "result.hpp"

namespace planb {

struct RestoreCmdOptions {
  std::string store, host;
  std::string action;  // list | ls | versions | get
  std::string at;
  long long snapshot = 0;
  std::vector<std::string> paths;
  std::string to;
  bool in_place = false, force = false, json = false, recursive = false;
};

Status restore_main(const RestoreCmdOptions& o);
}  // namespace planb
