// planb-invoke: authorised recovery on the rescue platform, BCP drills, failback.
// Thin main: one CLI11 subcommand per verb; each calls one lib function.
#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "cli_parse.hpp"

// ---- includes: auth (request, approve, keygen, executives, audit)
// ---- includes: dns
#include "dns_redirect.hpp"
// ---- includes: vpn
#include "vpn_cmd.hpp"
// ---- includes: failback
#include "failback.hpp"
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
  planb::VpnCmdOptions vpn_o;
  {
    auto* c = app.add_subcommand("vpn", "WireGuard access to the rescue network: list the peers' configuration files, print one (or its QR code); --configure, --up, --down");
    c->add_option("id", vpn_o.id, "Invocation id")->required();
    c->add_option("--server", vpn_o.server, "Server directory (default $PLANB_SERVER or /var/lib/planb-server)");
    c->add_option("--peer", vpn_o.peer, "Print this peer's configuration (wg-quick format; it holds the peer's private key)");
    c->add_flag("--qr", vpn_o.qr, "With --peer: print its QR code as text (qrencode -t ansiutf8) for a phone's WireGuard app");
    c->add_flag("--json", vpn_o.json, "Print the VPN setup (or the peer) as JSON");
    c->add_flag("--configure", vpn_o.configure, "(Re)write keys and files from the CMDB first (existing keys are kept)");
    c->add_option("--cmdb", vpn_o.cmdb, "With --configure: CMDB file or directory (default SERVER/cmdb)");
    c->add_option("--customer", vpn_o.customer, "With --configure: customer (default: the invocation's, or the CMDB's only one)");
    c->add_option("--rescue-network", vpn_o.rescue, "With --configure: rescue network CIDR (default: the invocation's, or the CMDB's)");
    c->add_flag("--up", vpn_o.up, "Start the platform end (wireguard-go) in the rescue namespace (re-applies the configuration if running)");
    c->add_flag("--down", vpn_o.down, "Stop the platform end (no error if it is not running)");
    c->add_option("--netns", vpn_o.netns, "With --up: rescue network namespace (default: the invocation's, or planb-<first 8 of id>)");
    c->callback([&] { run = [&] { return planb::vpn_main(vpn_o); }; });
  }
  // ---- failback
  planb::FailbackCmdOptions fb_o;
  {
    auto* c = app.add_subcommand("failback", "Bring the data changed on a rescue VM back to the new hardware: a bulk pass while it runs, then a short final pass (--final, or both with --cutover)");
    c->add_option("host", fb_o.fb.host, "CMDB host name of the rescue VM")->required();
    c->add_option("--to", fb_o.fb.to, "Target: DIR (the new hardware's root, mounted here) or ssh://user@host[:port]/path (planb-invoke failback-receive runs there)")->required();
    c->add_option("--invocation", fb_o.fb.invocation, "Invocation id (default: the newest one that has HOST)");
    c->add_option("--server", fb_o.fb.server, "Server directory (default $PLANB_SERVER or /var/lib/planb-server)");
    auto* f = c->add_flag("--final", fb_o.fb.final_pass, "Final pass: stop the VM (ACPI power-off, then QMP quit) and send what changed since the last pass");
    auto* cu = c->add_flag("--cutover", fb_o.fb.cutover, "A bulk pass while the VM runs, then the final pass");
    f->excludes(cu);
    c->add_flag("--force", fb_o.fb.force, "Replace paths whose content on the target differs from the image the VM started from");
    c->add_option("--exclude", fb_o.fb.excludes, "Pattern never failed back (capture syntax; repeatable), on top of the runtime noise list");
    c->add_flag("!--no-default-excludes", fb_o.fb.default_excludes, "Fail back the runtime noise too (/var/log/journal, /var/cache, ...)");
    c->add_option("--grace", fb_o.fb.grace_s, "Final pass: seconds to wait for the ACPI power-off before QMP quit (default 120)")->check(CLI::Range(0, 3600));
    c->add_option("--identity", fb_o.fb.identity, "ssh target: private key file (ssh -i)");
    c->add_option("--known-hosts", fb_o.fb.known_hosts, "ssh target: known_hosts file (host keys are always checked)");
    c->add_option("--remote-command", fb_o.fb.remote_command, "ssh target: the target's planb-invoke (default planb-invoke)");
    c->add_flag("--json", fb_o.json, "Print each pass (files, bytes, seconds, downtime) as JSON");
    // TODO(lead): audit events: fb_o.fb.audit = [](inv, event, detail) { return planb::audit_append(
    //   planb::ServerLayout::at(fb_o.fb.server), inv, event, planb::audit_actor(), detail); } once
    //   lib/invoke_auth's audit_append is implemented (events: failback.stop-vm, failback.pass).
    c->callback([&] { run = [&] { return planb::failback_main(fb_o); }; });
  }
  planb::FailbackReceiveCmdOptions fbr_o;
  {
    auto* c = app.add_subcommand("failback-receive", "Target side of failback (run by failback over ssh): read a failback stream on stdin, check or apply it to DIR");
    c->add_option("dir", fbr_o.dir, "The target's root directory")->required();
    c->add_option("--work", fbr_o.work, "Work directory (default /var/tmp/planb-failback-receive-PID; removed at the end)");
    c->add_flag("--force", fbr_o.force, "Replace paths whose content differs from the base");
    c->add_flag("--json", fbr_o.json, "Print the result as JSON");
    c->callback([&] { run = [&] { return planb::failback_receive_main(fbr_o); }; });
  }
  // ---- orchestrator (plan, start, status, stop, drill, report)

  app.footer(planb::exit_codes_help(
      "  10 not authorised: no quorum of valid approvals for this request (nothing started)\n"
      "  11 not verified: a host failed its checks (the others keep running; see status)\n"
      "  12 redirection failed: a DNS update was refused (changes rolled back)\n"));
  if (int rc = planb::parse_args(app, "planb-invoke", argc, argv); rc >= 0) return rc;
  if (!run) return 2;
  return planb::run_command("planb-invoke", run);
}
