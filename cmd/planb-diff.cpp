// planb-diff: write the change bundle of snapshot N against N-1.
#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "cli_parse.hpp"
#include "diff_cmd.hpp"

int main(int argc, char** argv) {
  planb::DiffCmdOptions o;
  CLI::App app{"planb-diff: write the change bundle (pax, librsync deltas) of a snapshot against its parent"};
  app.set_version_flag("--version", PLANB_VERSION);
  app.add_option("--store", o.store, "Store directory (default $PLANB_STORE or /var/lib/planb/store)");
  app.add_option("--host", o.diff.host, "Protected server (required)");
  app.add_option("--from", o.diff.from, "Base snapshot (default: the one before --to)");
  app.add_option("--to", o.diff.to, "Snapshot to send (default: the latest)");
  app.add_flag("--full", o.diff.full, "Carry every content (no base); the first bundle always is");
  app.add_option("-o,--output", o.diff.out, "Bundle file, or - for stdout (default -)");
  app.add_flag("--json", o.json, "Print a JSON summary (on stderr when the bundle goes to stdout)");
  app.add_option("--apply", o.apply, "Receiving side: verify and apply BUNDLE into --store (test and recovery aid)");
  app.footer("The bundle is written under a temporary name and renamed when complete.\n\n" +
             planb::exit_codes_help());
  if (int rc = planb::parse_args(app, "planb-diff", argc, argv); rc >= 0) return rc;
  return planb::run_command("planb-diff", [&] { return planb::diff_main(o); });
}
