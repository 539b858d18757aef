// planb-capture: take a snapshot of a server's tree into the store;
// --verify re-hashes the store; --prune applies retention.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "capture_cmd.hpp"
#include "cli.hpp"
#include "cli_parse.hpp"

int main(int argc, char** argv) {
  planb::CaptureCmdOptions o;
  CLI::App app{"planb-capture: take an incremental snapshot of a server's file tree"};
  app.set_version_flag("--version", PLANB_VERSION);
  app.add_option("--store", o.store, "Store directory (default $PLANB_STORE or /var/lib/planb/store)");
  app.add_option("--host", o.cap.host, "Name of the protected server (required to capture)");
  app.add_option("--exclude", o.cap.excludes,
                 "Skip paths matching PATTERN (glob; with a '/' anchored at SOURCE, else the name); repeatable")
      ->allow_extra_args(false);
  app.add_flag("--no-default-excludes", o.no_default_excludes,
               "Also capture the contents of /proc /sys /dev /run /tmp");
  app.add_flag("--cross-file-systems", o.cross_fs, "Descend into other mounted file systems");
  app.add_flag("--json", o.json, "Print a JSON summary on stdout");
  app.add_flag("--verify", o.verify, "Re-hash every object and check every manifest; report damage");
  app.add_flag("--prune", o.prune, "Apply retention only (no capture)");
  app.add_flag("--no-prune", o.no_prune, "Do not apply retention after the capture");
  app.add_option("--keep-last", o.keep_last, "Retention: keep at most N snapshots per host");
  app.add_option("--keep-within", o.keep_within, "Retention: drop snapshots older than DURATION (e.g. 90d)");
  app.add_option("--max-size", o.max_size, "Retention: keep the store's objects under SIZE (e.g. 200G)");
  app.add_flag("--dry-run", o.dry_run, "With --prune: show what would be removed");
  app.add_option("SOURCE", o.cap.source, "Root of the server's tree: a local path (a mounted server, or /)");
  app.footer(
      "Prints the snapshot id (sequence number) as the last line of stdout.\n"
      "Retention settings default to STORE/config (keep-last, keep-within, max-size);\n"
      "the newest snapshot of a host is never pruned.\n\n" +
      planb::exit_codes_help());
  if (int rc = planb::parse_args(app, "planb-capture", argc, argv); rc >= 0) return rc;
  return planb::run_command("planb-capture", [&] { return planb::capture_main(o); });
}
