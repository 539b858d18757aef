// planb-boot-test: boot an image in qemu on a copy-on-write overlay, with no
// route out, run the host's CMDB checks against it until they pass or the
// time limit, and write the report (doc/formats.md, "Boot-test report v1").
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cmdb.hpp"
#include "result.hpp"

namespace planb {

// Exit codes of planb-boot-test beyond the shared ones.
inline constexpr int kExitChecksFailed = 11;  // booted (some check passed), others still failing
inline constexpr int kExitTimeLimit = 12;     // time limit: no check ever passed
inline constexpr int kExitBootFailed = 13;    // the serial console shows a dead boot (emergency shell, panic)

struct BootTestOptions {
  std::string server;      // "" = $PLANB_SERVER or the default
  std::string host;
  std::string image;       // "" = SERVER/images/HOST/<candidate>/disk.qcow2
  std::optional<uint64_t> sequence;
  std::string cmdb;        // "" = SERVER/cmdb
  std::string report_dir;  // "" = SERVER/reports/HOST/SEQ
  int timeout = 300;       // seconds, whole run
  int grace = 120;         // seconds checks may keep failing once one has passed
  std::string accel = "auto";  // auto | kvm | tcg
  bool dry_run = false;    // print the qemu command, boot nothing
  bool progress = true;
};

struct CheckResult {
  CmdbCheck check;
  bool passed = false;
  double seconds = -1;     // time to pass since qemu started; -1 = never
  int attempts = 0;
  std::string detail;      // last error, or what passed
};

struct BootTestResult {
  std::string report_json;  // the report (also in report_dir/report.json unless a dry run)
  std::string summary;      // summary.txt
  std::string report_dir;
  std::vector<std::string> qemu_argv;
  bool passed = false;
  int exit_code = 0;        // 0, kExitChecksFailed or kExitTimeLimit (or 1: qemu exited)
  std::string verdict;      // one line for stderr when not passed
};

Result<BootTestResult> boot_test(const BootTestOptions& o);

}  // namespace planb
