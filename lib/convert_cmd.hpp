// planb-convert: options -> convert_snapshot -> output (summary, --explain, --json).
#pragma once
#include <string>

#include "convert.hpp"

namespace planb {

struct ConvertCmdOptions {
  ConvertOptions convert;
  std::string overlays;  // built-in overlay directory override (--overlays)
  bool no_builtin = false;
  bool explain = false;
  bool json = false;
};

Status convert_main(ConvertCmdOptions& o);

}  // namespace planb
