// planb-invoke: authorised recovery on the rescue platform, BCP drills, failback.
// Thin main: one CLI11 subcommand per verb; each calls one lib function.
#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "cli_parse.hpp"

// ---- includes: auth (request, approve, keygen, executives, audit)
#include "invoke_auth_cmd.hpp"
// ---- includes: dns
#include "dns_redirect.hpp"
// ---- includes: vpn
#include "vpn_cmd.hpp"
// ---- includes: failback
#include "failback.hpp"
#include "invoke_auth.hpp"
#include "server_layout.hpp"
// ---- includes: orchestrator (plan, start, status, stop, drill, report)
#include "invoke_cmd.hpp"

int main(int argc, char** argv) {
  CLI::App app{"planb-invoke: authorised recovery of a customer's servers on the rescue platform, drills and failback"};
  app.set_version_flag("--version", PLANB_VERSION);
  app.require_subcommand(1);
  std::function<planb::Status()> run;

  // ---- auth (request, approve, keygen, executives, audit)
  const std::string server_help = "Server directory (default $PLANB_SERVER or /var/lib/planb-server)";
  const std::string cmdb_help = "CMDB file or directory (default SERVER/cmdb)";
  const std::string auth_footer = planb::exit_codes_help(
      "  10 not authorised: the reason is named (quorum, window, mode, used id, executives changed, altered text)\n");
  planb::InvokeKeygenOptions keygen_o;
  {
    auto* c = app.add_subcommand("keygen", "Make an executive's Ed25519 key pair: FILE (secret, 0600) and FILE.pub; prints the public key line for the CMDB");
    c->add_option("--out", keygen_o.out, "Secret key file to write (FILE.pub gets the public key)")->required();
    c->add_flag("--force", keygen_o.force, "Replace existing files");
    c->add_flag("--json", keygen_o.json, "Print the result as JSON");
    c->footer(auth_footer);
    c->callback([&] { run = [&] { return planb::invoke_keygen_main(keygen_o); }; });
  }
  planb::InvokeRequestOptions request_o;
  {
    auto* c = app.add_subcommand("request", "Write an invocation request (or, with --executives, a change of the executive set) for the executives to approve");
    c->add_option("--customer", request_o.customer, "Customer (CMDB)")->required();
    auto* h = c->add_option("--host", request_o.hosts, "Host to recover (repeatable)");
    auto* a = c->add_flag("--all", request_o.all, "Every host of the customer (as the CMDB lists them at start)");
    h->excludes(a);
    c->add_option("--mode", request_o.mode, "real (recovery, DNS switched) or drill (isolated rehearsal)")->check(CLI::IsMember({"real", "drill"}));
    c->add_flag("--executives", request_o.executives, "Request the change of the executives and quorum to the CMDB's (approved by the enrolled quorum)");
    c->add_option("--reason", request_o.reason, "Why (one line; the executives see it)")->required();
    c->add_option("--valid-for", request_o.valid_for, "Validity from --not-before (default now): 30m, 4h, 2d (default 24h)");
    c->add_option("--not-before", request_o.not_before, "Start of the window (a time: '2026-11-25 14:00', @UNIX)");
    c->add_option("--not-after", request_o.not_after, "End of the window (a time)");
    c->add_option("--server", request_o.server, server_help);
    c->add_option("--cmdb", request_o.cmdb, cmdb_help);
    c->add_option("-o,--output", request_o.out, "Also write the request to FILE (default: print it on stdout, for mailing)");
    c->add_flag("--json", request_o.json, "Print the result as JSON");
    c->footer(auth_footer);
    c->callback([&] { run = [&] { return planb::invoke_request_main(request_o); }; });
  }
  planb::InvokeApproveOptions approve_o;
  {
    auto* c = app.add_subcommand("approve", "On an executive's machine: show a request and sign it (writes an approval file; needs no server)");
    c->add_option("request", approve_o.request, "Request file ('-' = stdin)")->required();
    c->add_option("--key", approve_o.key, "Executive secret key file (planb-invoke keygen, or an unencrypted OpenSSH ed25519 private key); never the key itself")->required();
    c->add_option("-o,--output", approve_o.out, "Approval file (default ID.KEYID.approval here; '-' = stdout)");
    c->add_option("--signed-at", approve_o.signed_at, "Signing time recorded (default now); it must lie in the request's window");
    c->add_flag("-y,--yes", approve_o.yes, "Do not ask for confirmation on a terminal");
    c->add_flag("--json", approve_o.json, "Print the result as JSON");
    c->footer(auth_footer);
    c->callback([&] { run = [&] { return planb::invoke_approve_main(approve_o); }; });
  }
  planb::InvokeSubmitOptions submit_o;
  {
    auto* c = app.add_subcommand("submit", "On the server: check approvals and store them with their request (SERVER/invocations/ID/approvals/)");
    c->add_option("approval", submit_o.approvals, "Approval files")->required();
    c->add_option("--server", submit_o.server, server_help);
    c->add_flag("--json", submit_o.json, "Print the result as JSON");
    c->footer(auth_footer);
    c->callback([&] { run = [&] { return planb::invoke_submit_main(submit_o); }; });
  }
  planb::InvokeExecutivesOptions exec_o;
  {
    auto* c = app.add_subcommand("executives", "Show a customer's enrolled executives vs the CMDB's; --enrol the first set (trust on first use); --apply an approved change");
    c->add_option("--customer", exec_o.customer, "Customer (CMDB)")->required();
    auto* e = c->add_flag("--enrol", exec_o.enrol, "Enrol the CMDB's executives and quorum (only when none are enrolled)");
    auto* a = c->add_option("--apply", exec_o.apply, "Enrol the set of an executives change request (id or file) approved by the enrolled quorum");
    e->excludes(a);
    c->add_option("--server", exec_o.server, server_help);
    c->add_option("--cmdb", exec_o.cmdb, cmdb_help);
    c->add_flag("--json", exec_o.json, "Print the result as JSON");
    c->footer(auth_footer);
    c->callback([&] { run = [&] { return planb::invoke_executives_main(exec_o); }; });
  }
  planb::InvokeAuthoriseOptions auth_o;
  {
    auto* c = app.add_subcommand("authorise", "Check a request as start/drill do (quorum, window, mode, enrolment, unused) and mark it used; --dry-run only checks");
    c->add_option("request", auth_o.request, "Request id or file")->required();
    c->add_option("--mode", auth_o.mode, "real or drill: what is to be started")->required()->check(CLI::IsMember({"real", "drill"}));
    c->add_flag("--dry-run", auth_o.dry_run, "Check only: do not mark the request used, write no audit row");
    c->add_option("--server", auth_o.server, server_help);
    c->add_option("--cmdb", auth_o.cmdb, cmdb_help);
    c->add_flag("--json", auth_o.json, "Print the result as JSON");
    c->footer(auth_footer);
    c->callback([&] { run = [&] { return planb::invoke_authorise_main(auth_o); }; });
  }
  planb::InvokeAuditOptions audit_o;
  {
    auto* c = app.add_subcommand("audit", "List the audit log and verify its hash chain (exit 5 names the first bad row)");
    c->add_option("--invocation", audit_o.invocation, "Only this invocation's rows (the whole chain is still verified)");
    c->add_option("--server", audit_o.server, server_help);
    c->add_flag("--json", audit_o.json, "Print the rows and the verdict as JSON");
    c->footer(auth_footer);
    c->callback([&] { run = [&] { return planb::invoke_audit_main(audit_o); }; });
  }
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
    c->add_flag("--copy", fb_o.fb.copy, "Read the rescue disk through a raw copy (qemu-img convert; /dev/shm when it fits) instead of the FUSE export: faster when most of it is read");
    c->add_option("--identity", fb_o.fb.identity, "ssh target: private key file (ssh -i)");
    c->add_option("--known-hosts", fb_o.fb.known_hosts, "ssh target: known_hosts file (host keys are always checked)");
    c->add_option("--remote-command", fb_o.fb.remote_command, "ssh target: the target's planb-invoke (default planb-invoke)");
    c->add_flag("--json", fb_o.json, "Print each pass (files, bytes, seconds, downtime) as JSON");
    // Audit events failback.stop-vm, failback.pass in the invocation's hash-chained log.
    fb_o.fb.audit = [&](const std::string& inv, const std::string& event, const std::string& detail) {
      return planb::audit_append(planb::ServerLayout::at(fb_o.fb.server), inv, event, planb::audit_actor(), detail);
    };
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
  planb::InvokePlanOptions plan_o;
  {
    auto* c = app.add_subcommand("plan", "Print the waves a request (or a customer's hosts) would start in, and each host's good image; boots nothing");
    c->add_option("request", plan_o.request, "Request id or file (its customer and hosts)");
    c->add_option("--customer", plan_o.customer, "Customer (instead of a request; default: the CMDB's only one)");
    c->add_option("--host", plan_o.hosts, "Host (repeatable; default: all of the customer's)");
    c->add_option("--server", plan_o.server, "Server directory (default $PLANB_SERVER or /var/lib/planb-server)");
    c->add_option("--cmdb", plan_o.cmdb, "CMDB file or directory (default SERVER/cmdb)");
    c->add_flag("--json", plan_o.json, "Print the plan as JSON");
    c->callback([&] { run = [&] { return planb::invoke_plan_main(plan_o); }; });
  }
  planb::InvokeStartOptions start_o;
  auto add_start = [&](const std::string& name, const std::string& help, bool drill) {
    auto* c = app.add_subcommand(name, help);
    c->add_option("request", start_o.request, "Approved request: its id or file")->required();
    c->add_option("--server", start_o.server, "Server directory (default $PLANB_SERVER or /var/lib/planb-server)");
    c->add_option("--cmdb", start_o.cmdb, "CMDB file or directory (default SERVER/cmdb)");
    c->add_option("--backend", start_o.run.backend, "Rescue platform: qemu (default) or libvirt")->check(CLI::IsMember({"qemu", "libvirt"}));
    c->add_option("--accel", start_o.run.accel, "qemu accelerator: auto (KVM when /dev/kvm works, else TCG), kvm or tcg")
        ->check(CLI::IsMember({"auto", "kvm", "tcg"}));
    c->add_option("--timeout", start_o.run.timeout, "Seconds each host may take from boot to all checks passed (default 600)")
        ->check(CLI::Range(10, 86400));
    if (drill) c->add_flag("--keep", start_o.run.keep, "Leave the drill running (stop it with planb-invoke stop)");
    c->add_flag("--json", start_o.json, "Print the final state as JSON");
    c->callback([&, drill] {
      run = [&, drill] { return drill ? planb::invoke_drill_main(start_o) : planb::invoke_start_main(start_o); };
    });
  };
  add_start("start", "Recover for real: boot the request's hosts from their good images in dependency order, check each, redirect DNS, start the VPN, write the handover report", false);
  add_start("drill", "BCP drill: the same recovery on an isolated network with no DNS or VPN, every check, the report, then tear-down", true);
  planb::InvokeIdOptions id_o;
  auto add_id = [&](const std::string& name, const std::string& help, std::function<planb::Status()> fn) {
    auto* c = app.add_subcommand(name, help);
    c->add_option("id", id_o.id, "Invocation id")->required();
    c->add_option("--server", id_o.server, "Server directory (default $PLANB_SERVER or /var/lib/planb-server)");
    c->add_flag("--json", id_o.json, "Print the invocation's state as JSON");
    c->callback([&run, fn] { run = fn; });
    return c;
  };
  auto* status_c = add_id("status", "Each host's state, address and checks", [&] { return planb::invoke_status_main(id_o); });
  status_c->add_flag("--live", id_o.live, "Run every check once now (from the rescue network)");
  status_c->add_option("--cmdb", id_o.cmdb, "CMDB file or directory (default SERVER/cmdb)");
  add_id("stop", "Restore DNS, shut the VMs down (dependents first), stop the VPN and the rescue network", [&] { return planb::invoke_stop_main(id_o); });
  add_id("report", "Print the handover report (Markdown; --format html|json), rewriting report.{md,html,json}", [&] { return planb::invoke_report_main(id_o); })
      ->add_option("--format", id_o.format, "md (default), html or json")->check(CLI::IsMember({"md", "html", "json"}));

  app.footer(planb::exit_codes_help(
      "  10 not authorised: no quorum of valid approvals for this request (nothing started)\n"
      "  11 not verified: a host failed its checks (the others keep running; see status)\n"
      "  12 redirection failed: a DNS update was refused (changes rolled back)\n"));
  if (int rc = planb::parse_args(app, "planb-invoke", argc, argv); rc >= 0) return rc;
  if (!run) return 2;
  return planb::run_command("planb-invoke", run);
}
