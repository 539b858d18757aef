// planb-ship: push the sealed bundles in the outbox to the server's inbox.
#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "cli_parse.hpp"
#include "ship_cmd.hpp"

int main(int argc, char** argv) {
  planb::ShipCmdOptions o;
  auto& s = o.ship;
  CLI::App app{"planb-ship: push every sealed bundle waiting in the outbox, in sequence order, to the server's inbox"};
  app.set_version_flag("--version", PLANB_VERSION);
  app.add_option("--outbox", s.outbox, "Outbox directory (default $PLANB_OUTBOX or /var/spool/planb/outbox)");
  app.add_option("DEST", s.dest,
                 "file:///srv/planb/inbox/, sftp://user@host[:port]/path/ or https://host[:port]/path/")
      ->required();
  app.add_option("--identity", s.transport.identity, "sftp: SSH private key file (default ~/.ssh/id_ed25519, id_rsa)");
  app.add_option("--known-hosts", s.transport.known_hosts, "sftp: known_hosts file (default ~/.ssh/known_hosts)");
  app.add_option("--cacert", s.transport.cacert, "https: CA certificates to verify the server with (default: system CAs)");
  app.add_option("--cert", s.transport.cert, "https: client certificate (PEM)");
  app.add_option("--cert-key", s.transport.cert_key, "https: the client certificate's private key file (PEM)");
  app.add_option("--limit-rate", o.limit_rate, "Upload at most RATE bytes/s (suffix k, M, G: 500k, 10M)");
  app.add_option("--retries", s.retries, "Retries per bundle on transient errors (default 6)")->check(CLI::Range(0, 1000));
  app.add_option("--retry-delay", s.retry_delay, "First back-off in seconds, doubled each retry up to 60 (default 2)")
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--timeout", s.transport.stall_timeout, "Abandon a transfer that makes no progress for SECONDS (default 60)")
      ->check(CLI::Range(1, 86400));
  app.add_option("--keep-sent", s.keep_sent, "Keep the last N delivered bundles in OUTBOX/sent/; 0 deletes (default 14)")
      ->check(CLI::Range(0, 100000));
  app.add_flag("--no-readback", [&](int64_t) { s.readback = false; },
               "Verify uploads by size only, not by reading them back and comparing hashes");
  app.add_flag("--json", o.json, "Print a JSON summary (bundles, bytes, seconds, throughput) on stdout");
  app.footer(
      "Each bundle is uploaded as .NAME.part, verified (size, and its hash read back), then renamed to NAME;\n"
      "only then is it moved to OUTBOX/sent/. An interrupted run resumes (sftp, file) or restarts (https)\n"
      "the upload; a bundle already in the inbox is not sent again.\n\n" +
      planb::exit_codes_help("  10 unreachable: the destination failed with transient errors through every retry\n"));
  if (int rc = planb::parse_args(app, "planb-ship", argc, argv); rc >= 0) return rc;
  return planb::run_command("planb-ship", [&] { return planb::ship_main(o); });
}
