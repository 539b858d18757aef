// planb-boot-test: boot an image in qemu and run the host's CMDB checks.
#include <CLI/CLI.hpp>

#include "boot_test_cmd.hpp"
#include "cli.hpp"
#include "cli_parse.hpp"

int main(int argc, char** argv) {
  planb::BootTestCmdOptions o;
  CLI::App app{"planb-boot-test: boot an image in qemu (copy-on-write, no route out) and run the host's CMDB checks"};
  app.set_version_flag("--version", PLANB_VERSION);
  app.add_option("--server", o.bt.server, "Server directory (default $PLANB_SERVER or /var/lib/planb-server)");
  app.add_option("--host", o.bt.host, "Protected server, as named in the CMDB")->required();
  app.add_option("--image", o.bt.image, "Image to boot (default SERVER/images/HOST/<candidate>/disk.qcow2); never changed");
  app.add_option("--sequence", o.bt.sequence, "Snapshot the image was built from (default: the candidate, or from the image path)");
  app.add_option("--cmdb", o.bt.cmdb, "CMDB file or directory of *.toml (default SERVER/cmdb)");
  app.add_option("--timeout", o.bt.timeout, "Time limit in seconds for the whole run; the VM is killed then (default 300)");
  app.add_option("--grace", o.bt.grace,
                 "Once a check has passed, seconds the others may keep failing before the run stops (default 120)");
  app.add_option("--report-dir", o.bt.report_dir, "Where the report goes (default SERVER/reports/HOST/SEQ)");
  app.add_option("--accel", o.bt.accel, "auto (KVM if /dev/kvm is usable, else TCG), kvm or tcg (default auto)");
  app.add_flag("--dry-run,--print-command", o.bt.dry_run, "Print the qemu command line and exit; boots nothing");
  app.add_flag("--json", o.json, "Print the report (report.json) instead of the summary");
  app.footer(
      "Boots on a qcow2 overlay in the report directory (deleted after), user-mode networking with\n"
      "restrict=on and one 127.0.0.1 forward per guest port the checks need, nothing else. Checks are\n"
      "retried until they pass, the time limit, or --grace after the first one passed. Writes\n"
      "report.json, summary.txt, serial.log and screen.png to the report directory, and records the\n"
      "result in SERVER/catalog.db when it exists.\n\n" +
      planb::exit_codes_help("  11 checks failed: the image booted (a check passed) but others failed\n"
                             "  12 time limit: no check passed before --timeout (the image did not come up)\n"
                             "  13 boot failed: the serial console shows an emergency shell, initramfs shell or kernel panic\n"
                             "  An invalid CMDB is exit 2; an unknown host, image or missing key exit 4.\n"));
  if (int rc = planb::parse_args(app, "planb-boot-test", argc, argv); rc >= 0) return rc;
  return planb::run_command("planb-boot-test", [&] { return planb::boot_test_main(o); });
}
