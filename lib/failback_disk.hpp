// Failback, the disk side: reading a rescue VM's disk without changing any
// layer of it, and talking to the running VM over QMP.
//
//   freeze   QMP blockdev-snapshot-sync puts a new qcow2 layer on top of the
//            running VM's active layer; the old layer becomes a read-only
//            backing file nobody writes again: a crash-consistent point in time.
//   mount    a throwaway qcow2 on top of the layer to read (so an ext4 journal
//            can be replayed without touching the frozen layer), exported as a
//            raw file by qemu-storage-daemon's FUSE export (no nbd module here),
//            a loop device per partition, mounted read-only.
// See ARCHITECTURE.md "Failback" for the choice and the figures.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "result.hpp"

namespace planb {

// Runs a host tool; returns its stdout. The error names the tool and quotes the
// end of its stderr. The tool dies with us (PR_SET_PDEATHSIG).
Result<std::string> fb_run_tool(const std::vector<std::string>& argv, const std::string& what);

// One QMP connection: greeting and qmp_capabilities done by connect().
class QmpClient {
 public:
  QmpClient() = default;
  QmpClient(QmpClient&&) = default;
  QmpClient& operator=(QmpClient&&) = default;
  ~QmpClient();
  Status connect(const std::string& socket_path, int timeout_ms);
  // Sends {"execute": cmd, "arguments": args_json} and returns the "return"
  // value as JSON text; a QMP error is an Error carrying its description.
  Result<std::string> execute(const std::string& cmd, const std::string& args_json = "", int timeout_ms = 30000);

 private:
  Result<std::string> read_line(int timeout_ms);
  int fd_ = -1;
  std::string buf_;
};

bool process_alive(int64_t pid);

// Freezes the running VM's active layer `active`: a new layer `new_layer` on
// top (blockdev-snapshot-sync). Returns the node name that was frozen.
Result<std::string> freeze_active_layer(const std::string& qmp_socket, const std::string& active,
                                        const std::string& new_layer);

// ACPI power-off (system_powerdown), wait up to grace_s for the process to
// exit; then QMP quit; then SIGKILL. Returns how it ended ("powerdown",
// "quit", "killed", "already stopped").
Result<std::string> power_off_vm(const std::string& qmp_socket, int64_t pid, int grace_s);

// A disk image (qcow2 or raw) mounted read-only through a throwaway layer.
class MountedDisk {
 public:
  // work_dir is created and owned: scratch.qcow2, disk.raw (FUSE), qsd.pid, pN/.
  // copy = true (for reading everything once, e.g. the image's own file system):
  // instead of the FUSE export, the chain is copied to a sparse raw file
  // (qemu-img convert; in /dev/shm when it fits in a quarter of the free memory),
  // which is much faster to read through than qemu-storage-daemon's FUSE export.
  static Result<std::unique_ptr<MountedDisk>> open(const std::string& image, const std::string& work_dir,
                                                   bool copy = false);
  ~MountedDisk();
  const std::string& root() const { return root_; }       // the mounted root file system
  const std::string& fs_type() const { return fs_type_; }
  int partition() const { return partition_; }            // 1-based; 0 = whole disk
  double seconds() const { return seconds_; }              // time to mount
  // Leftovers of a killed run in work_dir (mounts, loop devices, qemu-storage-daemon).
  static void cleanup_stale(const std::string& work_dir);

 private:
  MountedDisk() = default;
  void teardown();
  std::string work_, root_, fs_type_;
  std::vector<std::string> loops_;
  int partition_ = 0;
  double seconds_ = 0;
};

}  // namespace planb
