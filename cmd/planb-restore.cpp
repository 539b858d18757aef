// planb-restore: browse snapshot history and restore files (the appliance's
// local file retrieval).
#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "cli_parse.hpp"
#include "restore_cmd.hpp"

int main(int argc, char** argv) {
  planb::RestoreCmdOptions o;
  CLI::App app{"planb-restore: browse snapshots and restore files with all their metadata"};
  app.set_version_flag("--version", PLANB_VERSION);
  app.require_subcommand(1);
  app.add_option("--store", o.store, "Store directory (default $PLANB_STORE or /var/lib/planb/store)");
  app.add_option("--host", o.host, "Protected server whose history to use (required)");
  app.add_flag("--json", o.json, "Machine-readable output on stdout");

  auto* list = app.add_subcommand("list", "List snapshots with their times and sizes");
  auto* ls = app.add_subcommand("ls", "List a directory (or a file) in a snapshot");
  auto* versions = app.add_subcommand("versions", "Each distinct version of PATH and the snapshots holding it");
  auto* get = app.add_subcommand("get", "Restore PATHs (files or whole trees) with all metadata");
  for (auto* s : {list, ls, versions, get}) {
    s->add_option("--store", o.store, "Store directory");
    s->add_option("--host", o.host, "Protected server");
    s->add_flag("--json", o.json, "Machine-readable output");
  }
  for (auto* s : {ls, get}) {
    s->add_option("--at", o.at, "Newest snapshot at or before WHEN: 'yesterday', '2 days ago', 'last monday 14:00', '2026-11-24 13:05'");
    s->add_option("--snapshot", o.snapshot, "Snapshot sequence number")->check(CLI::PositiveNumber);
  }
  ls->add_flag("-R,--recursive", o.recursive, "List the whole tree below PATH");
  ls->add_option("PATH", o.paths, "Path in the snapshot (default /)");
  versions->add_option("PATH", o.paths, "Path in the snapshot")->required()->expected(1);
  get->add_option("PATH", o.paths, "Paths to restore (/ for the whole snapshot)")->required();
  get->add_option("--to", o.to, "Directory the snapshot's root maps to (may be another server's tree)");
  get->add_flag("--in-place", o.in_place, "Restore onto the original SOURCE the snapshot was captured from");
  get->add_flag("--force", o.force, "Replace existing files");
  app.footer(planb::exit_codes_help());
  if (int rc = planb::parse_args(app, "planb-restore", argc, argv); rc >= 0) return rc;
  o.action = app.get_subcommands().front()->get_name();
  return planb::run_command("planb-restore", [&] { return planb::restore_main(o); });
}
