// planb-invoke: authorised recovery on the rescue platform, BCP drills, failback.
// Thin main: one CLI11 subcommand per verb; each calls one lib function.
#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "cli_parse.hpp"

// ---- includes: auth (request, approve, keygen, executives, audit)
// ---- includes: dns
// ---- includes: vpn
// ---- includes: failback
// ---- includes: orchestrator (plan, start, status, stop, drill, report)

int main(int argc, char** argv) {
  CLI::App app{"planb-invoke: authorised recovery of a customer's servers on the rescue platform, drills and failback"};
  app.set_version_flag("--version", PLANB_VERSION);
  app.require_subcommand(1);
  std::function<planb::Status()> run;

  // ---- auth (request, approve, keygen, executives, audit)
  // ---- dns
  // ---- vpn
  // ---- failback
  // ---- orchestrator (plan, start, status, stop, drill, report)

  app.footer(planb::exit_codes_help(
      "  10 not authorised: no quorum of valid approvals for this request (nothing started)\n"
      "  11 not verified: a host failed its checks (the others keep running; see status)\n"
      "  12 redirection failed: a DNS update was refused (changes rolled back)\n"));
  if (int rc = planb::parse_args(app, "planb-invoke", argc, argv); rc >= 0) return rc;
  if (!run) return 2;
  return planb::run_command("planb-invoke", run);
}
