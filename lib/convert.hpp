// P2V: a snapshot of the server store becomes a bootable qcow2 disk image.
// Steps: materialize the manifest into a staging tree (lib/restore), apply
// overlays (lib/overlay), add virtio drivers to the initramfs (lib/initramfs),
// make the file system with mke2fs -d straight into the partition of a raw
// disk, install GRUB (i386-pc, host binaries), optional guest commands in one
// libguestfs session, then qemu-img convert to qcow2 and rename into place.
#pragma once
#include <string>
#include <vector>

#include "initramfs.hpp"
#include "overlay.hpp"

namespace planb {

struct ConvertOptions {
  std::string server;                 // SERVER dir
  std::string host;
  uint64_t snapshot = 0;              // 0: the host's candidate ref
  std::string output;                 // "" = SERVER/images/HOST/SEQ/disk.qcow2
  std::vector<std::string> overlay_dirs;  // built-in first, then customer ones
  bool force = false;                 // replace an existing image
  bool keep_work = false;
  bool compress = false;              // zstd-compressed qcow2 clusters             // keep the staging tree (debugging)
  bool progress = true;
  std::string scratch;                // staging tree + raw disk: "" = /dev/shm when it fits,
                                      // "-" = beside the output, else this directory
  uint64_t size_mib = 0;              // file system size (0 = from the tree + headroom)
};

struct OverlayReport {
  std::string name, file, description;
  bool applied = false;
  std::string reason;  // why skipped
  std::vector<Change> changes;
};

struct ConvertResult {
  std::string host, image, explain_path, root_uuid, kernel;
  uint64_t sequence = 0, image_bytes = 0, fs_bytes = 0, tree_bytes = 0, entries = 0;
  GuestFacts facts;
  std::vector<OverlayReport> overlays;
  std::vector<InitramfsUpdate> initramfs;
  std::vector<std::string> warnings;
  std::vector<std::pair<std::string, double>> timings;  // step, seconds
  double seconds = 0;
};

// The built-in overlay directory: $PLANB_OVERLAYS, else ../share/planb/overlays
// relative to the running binary, else the source tree's overlays/.
std::string builtin_overlay_dir();

Result<ConvertResult> convert_snapshot(const ConvertOptions& opt);
std::string explain_json(const ConvertResult& r);
std::string explain_text(const ConvertResult& r);

}  // namespace planb
