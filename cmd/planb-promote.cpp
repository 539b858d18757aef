// planb-promote: a boot-tested image becomes the host's good one, or a ticket.
#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "cli_parse.hpp"
#include "promote_cmd.hpp"

int main(int argc, char** argv) {
  planb::PromoteCmdOptions o;
  CLI::App app{"planb-promote: move a host's `good` ref to an image that passed its boot test, or open a ticket"};
  app.set_version_flag("--version", PLANB_VERSION);
  app.add_option("--server", o.server, "Server directory (default $PLANB_SERVER or /var/lib/planb-server)");
  app.add_option("--host", o.promote.host, "Protected server");
  app.add_option("--snapshot", o.sequence, "Snapshot whose image to promote (default: the host's candidate)");
  app.add_option("--report", o.promote.report_dir, "Boot-test report directory (default SERVER/reports/HOST/SEQ)");
  app.add_option("--keep", o.promote.keep_images, "Promoted images kept per host (default: keep_images in SERVER/config, or 3)")
      ->check(CLI::Range(1, 10000));
  app.add_flag("--list", o.list, "Show each host's latest snapshot, candidate, good image and open tickets");
  app.add_flag("--pending", o.pending,
               "Print 'HOST SEQ' for each host whose candidate is undecided (not good, no failed test on record)");
  app.add_flag("--json", o.json, "Print a JSON result on stdout");
  app.footer(
      "A failed boot test opens a ticket in the catalog and runs the notify hook (notify = COMMAND in\n"
      "SERVER/config; /bin/sh -c, the summary on stdin, PLANB_HOST, PLANB_SEQUENCE, PLANB_TICKET,\n"
      "PLANB_REPORT_DIR, PLANB_SERIAL_LOG, PLANB_SCREENSHOT, PLANB_SUMMARY in the environment).\n\n" +
      planb::exit_codes_help(
          "  11 not promoted: the boot test failed; a ticket is open and `good` did not move\n"));
  if (int rc = planb::parse_args(app, "planb-promote", argc, argv); rc >= 0) return rc;
  return planb::run_command("planb-promote", [&] { return planb::promote_main(o); });
}
