// planb-invoke: authorised recovery on the rescue platform, BCP drills, failback.
// Thin main: one CLI11 subcommand per verb; each calls one lib function.
#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "cli_parse.hpp"

// ---- includes: auth (request, approve, keygen, executives, audit)
// ---- includes: dns
#include "dns_redirect.hpp"
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
  planb::InvokeDnsOptions dns_o;
  {
    auto* c = app.add_subcommand("dns", "DNS and mail redirection of an invocation by RFC 2136 updates (TSIG, nsupdate): show, apply, roll back");
    c->add_option("id", dns_o.id, "Invocation id")->required();
    c->add_option("--server", dns_o.server, "Server directory (default $PLANB_SERVER or /var/lib/planb-server)");
    auto* a = c->add_flag("--apply", dns_o.apply, "Switch the CMDB's [[dns]] records to the rescue addresses (journal of the originals first)");
    auto* r = c->add_flag("--rollback", dns_o.rollback, "Restore the original records from the journal (idempotent)");
    auto* s = c->add_flag("--show", dns_o.show, "Show the plan and the journal (the default)");
    a->excludes(r)->excludes(s);
    r->excludes(s);
    c->add_option("--timeout", dns_o.timeout_s, "Seconds per DNS query or update (default 10)")->check(CLI::Range(1, 300));
    c->add_flag("--json", dns_o.json, "Print the RRsets and their state as JSON");
    c->callback([&] { run = [&] { return planb::invoke_dns_main(dns_o); }; });
  }
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
