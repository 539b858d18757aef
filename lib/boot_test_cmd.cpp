#include "boot_test_cmd.hpp"

#include <cstdio>

#include "json.hpp"

namespace planb {

Status boot_test_main(const BootTestCmdOptions& o) {
  PB_ASSIGN(BootTestResult r, boot_test(o.bt));
  if (o.bt.dry_run) {
    if (o.json) {
      std::vector<std::string> a;
      for (const auto& x : r.qemu_argv) a.push_back(json_escape(x));
      std::printf("%s\n", JsonObject().add_raw("qemu_command", json_array(a)).add("report_dir", r.report_dir).str().c_str());
    } else {
      std::string line;
      for (const auto& x : r.qemu_argv) line += (line.empty() ? "" : " ") + x;
      std::printf("%s\n", line.c_str());
    }
    return {};
  }
  if (o.json) std::printf("%s\n", r.report_json.c_str());
  else std::printf("%s", r.summary.c_str());
  std::fflush(stdout);
  if (r.passed) return {};
  return make_error(r.exit_code, "failed to boot-test " + o.bt.host + ": " + r.verdict + " (report: " + r.report_dir + ")");
}

}  // namespace planb
