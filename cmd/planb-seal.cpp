// planb-seal: encrypt a bundle to the server and sign it as the appliance
// (or, with --open, verify and decrypt one); keygen, enroll and revoke keys.
#include <CLI/CLI.hpp>

#include <cstring>

#include "cli.hpp"
#include "cli_parse.hpp"
#include "seal_cmd.hpp"

static const char* kKeyNote =
    "Private keys are read only from files (--sign/--key FILE, $PLANB_SIGN_KEY_FILE,\n"
    "$PLANB_SERVER_KEY_FILE) or from the output of --key-command, never from argv.\n\n";

int main(int argc, char** argv) {
  planb::SealCmdOptions o;
  std::string sub = argc > 1 ? argv[1] : "";
  if (sub == "keygen") {
    CLI::App app{"planb-seal keygen: make a key pair (server: X25519 encryption; appliance: Ed25519 signing)"};
    app.add_option("--type", o.type, "server or appliance")->required()->check(CLI::IsMember({"server", "appliance"}));
    app.add_option("--out", o.prefix, "Writes PREFIX.key (secret, mode 0600) and PREFIX.pub")->required();
    app.add_flag("--force", o.force, "Overwrite existing key files");
    app.add_flag("--json", o.json, "Print a JSON summary");
    app.footer(planb::exit_codes_help());
    if (int rc = planb::parse_args(app, "planb-seal", argc - 1, argv + 1); rc >= 0) return rc;
    return planb::run_command("planb-seal", [&] { return planb::seal_keygen_main(o); });
  }
  if (sub == "enroll" || sub == "revoke") {
    bool enroll = sub == "enroll";
    CLI::App app{enroll ? "planb-seal enroll: add an appliance public key to the server's signer directory"
                        : "planb-seal revoke: refuse an appliance's bundles from now on"};
    app.add_option("--signers", o.signers, "Directory of enrolled appliance keys")->required();
    if (enroll) app.add_option("PUB", o.enroll_pub, "Appliance public key file")->required();
    else app.add_option("ID", o.revoke_id, "Appliance key id (16 hex digits)")->required();
    app.footer(planb::exit_codes_help());
    if (int rc = planb::parse_args(app, "planb-seal", argc - 1, argv + 1); rc >= 0) return rc;
    return planb::run_command("planb-seal", [&] {
      return enroll ? planb::seal_enroll_main(o) : planb::seal_revoke_main(o);
    });
  }
  CLI::App app{
      "planb-seal: encrypt a bundle to the server and sign it as the appliance; --open verifies and decrypts\n"
      "usage: planb-seal --to SERVER.pub --sign APPLIANCE.key [-o OUT|-] [IN|-]\n"
      "       planb-seal --open --key SERVER.key --signers DIR [-o OUT|-] [IN|-]\n"
      "       planb-seal keygen --type server|appliance --out PREFIX\n"
      "       planb-seal enroll --signers DIR APPLIANCE.pub\n"
      "       planb-seal revoke --signers DIR APPLIANCE-ID"};
  app.set_version_flag("--version", PLANB_VERSION);
  app.add_flag("--open", o.open, "Verify and decrypt a sealed bundle (server side)");
  app.add_option("--to", o.to, "Server public key file (sealing)");
  app.add_option("--sign", o.sign, "Appliance secret key FILE (sealing; or $PLANB_SIGN_KEY_FILE)");
  app.add_option("--key", o.key, "Server secret key FILE (--open; or $PLANB_SERVER_KEY_FILE)");
  app.add_option("--key-command", o.key_command, "Command whose output is the secret key file");
  app.add_option("--signers", o.signers, "Directory of enrolled appliance public keys (--open)");
  app.add_option("--host", o.host, "Header host (default: from the bundle)");
  app.add_option("--sequence", o.sequence, "Header sequence (default: from the bundle)");
  app.add_option("--parent", o.parent, "Header parent manifest id, hex or empty (default: from the bundle)");
  app.add_option("-o,--output", o.out, "Output file, or - for stdout (default -)");
  app.add_option("IN", o.in, "Input file, or - for stdin (default -)");
  app.add_flag("--json", o.json, "Print a JSON summary (on stderr when the output goes to stdout)");
  app.footer(std::string(kKeyNote) +
             "Output files are written under a temporary name and renamed when complete; a failed\n"
             "--open leaves no output. 'planb-seal keygen|enroll|revoke --help' for those.\n\n" +
             planb::exit_codes_help());
  if (int rc = planb::parse_args(app, "planb-seal", argc, argv); rc >= 0) return rc;
  return planb::run_command("planb-seal", [&] { return planb::seal_main(o); });
}
