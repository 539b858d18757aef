// planb-assemble: verify, open and apply the sealed bundles in the server's inbox.
#include <CLI/CLI.hpp>

#include "assemble_cmd.hpp"
#include "cli.hpp"
#include "cli_parse.hpp"

int main(int argc, char** argv) {
  planb::AssembleCmdOptions o;
  CLI::App app{"planb-assemble: verify, open and apply the sealed bundles in SERVER/inbox, in sequence order per host,\n"
               "into SERVER/store (moving each host's latest and candidate refs) and record them in SERVER/catalog.db"};
  app.set_version_flag("--version", PLANB_VERSION);
  app.add_option("--server", o.assemble.server, "Server directory (default $PLANB_SERVER or /var/lib/planb-server)");
  app.add_option("--host", o.assemble.host, "Only this host's bundles (default: every host in the inbox)");
  app.add_flag("--json", o.json, "Print a JSON summary (each bundle's state, kind, ticket) on stdout");
  app.footer(
      "Applied bundles move to SERVER/inbox/done/; refused ones to SERVER/inbox/refused/ with NAME.reason and a\n"
      "ticket in the catalog. A bundle whose parent is not the host's head (or that follows a gap) writes\n"
      "SERVER/requests/HOST.full-bundle-needed. Failures that are not the bundle's fault leave it in the inbox.\n\n" +
      planb::exit_codes_help(
          "For planb-assemble: 0 every bundle applied (or nothing to do); 3 some applied, some refused;\n"
          "8 every bundle refused (replay, gap, wrong parent, header mismatch, bad signature, corrupt);\n"
          "7 a host was skipped because another planb-assemble holds it; 1, 5 a failure that left the bundle in place.\n"));
  if (int rc = planb::parse_args(app, "planb-assemble", argc, argv); rc >= 0) return rc;
  return planb::run_command("planb-assemble", [&] { return planb::assemble_main(o); });
}
