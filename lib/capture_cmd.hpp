// The planb-capture command: options to actions and output.
#pragma once
#include <string>

#include "capture.hpp"

namespace planb {

struct CaptureCmdOptions {
  std::string store;
  CaptureOptions cap;
  bool no_default_excludes = false, cross_fs = false, json = false;
  bool verify = false, prune = false, no_prune = false, dry_run = false;
  std::string keep_last, keep_within, max_size;
};

Status capture_main(CaptureCmdOptions& o);

}  // namespace planb
