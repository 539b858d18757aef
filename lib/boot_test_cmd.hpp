// planb-boot-test's command body: run the boot test, print the report.
#pragma once
#include "boot_test.hpp"

namespace planb {

struct BootTestCmdOptions {
  BootTestOptions bt;
  bool json = false;
};

Status boot_test_main(const BootTestCmdOptions& o);

}  // namespace planb
