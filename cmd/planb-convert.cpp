// planb-convert: build a bootable qcow2 disk image (P2V) of a host's snapshot.
#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "cli_parse.hpp"
#include "convert_cmd.hpp"

int main(int argc, char** argv) {
  planb::ConvertCmdOptions o;
  auto& c = o.convert;
  CLI::App app{"planb-convert: build a bootable disk image (qcow2) of a host's snapshot, with P2V overlays"};
  app.set_version_flag("--version", PLANB_VERSION);
  app.add_option("--server", c.server, "Server directory (default $PLANB_SERVER or /var/lib/planb-server)");
  app.add_option("--host", c.host, "Protected server (required)");
  app.add_option("--snapshot", c.snapshot, "Snapshot to convert (default: the host's candidate)");
  app.add_option("-o,--output", c.output, "Image path (default SERVER/images/HOST/SEQ/disk.qcow2; explain.json beside it, or PATH.explain.json)");
  app.add_option("--overlays", o.overlays, "Built-in overlay directory (default $PLANB_OVERLAYS, else share/planb/overlays beside the binary)");
  app.add_flag("--no-builtin-overlays", o.no_builtin, "Use only the customer overlays in SERVER/cmdb/overlays");
  app.add_option("--scratch", c.scratch, "Directory for the staging tree and raw disk (default /dev/shm when they fit in half the free memory, else beside the image; - = beside the image)");
  app.add_option("--size", c.size_mib, "File system size in MiB (default: the tree + headroom)");
  app.add_flag("--explain", o.explain, "List what each overlay changed (file, action, before -> after) and which were skipped");
  app.add_flag("--json", o.json, "Print the explain document (as saved in explain.json) as JSON");
  app.add_flag("--compress", c.compress, "zstd-compressed qcow2 (sample server: 3x smaller, +4 s)");
  app.add_flag("--force", c.force, "Replace an existing image of the same snapshot");
  app.add_flag("--keep-work", c.keep_work, "Keep the staging tree and raw disk (debugging)");
  app.footer(
      "Needs root (file owners, loop device for GRUB), mke2fs, sfdisk, losetup, grub-install (grub-pc-bin), "
      "qemu-img, ssh-keygen; guestfish only when an overlay has guest commands.\n"
      "The image is written under a temporary name and renamed when complete.\n\n" +
      planb::exit_codes_help("  2  also: an overlay file is invalid (nothing is written)\n"));
  if (int rc = planb::parse_args(app, "planb-convert", argc, argv); rc >= 0) return rc;
  return planb::run_command("planb-convert", [&] { return planb::convert_main(o); });
}
