// Adding kernel modules to a guest's existing initramfs without running any
// guest code: the guest's own module files (and their dependencies from its
// modules.dep) plus its full module index go into a new cpio archive that is
// appended to each /boot/initrd.img-VERSION. The kernel unpacks concatenated
// archives in order, later files replacing earlier ones, and the initramfs's
// udev loads the drivers by modalias as the devices appear.
#pragma once
#include <string>
#include <vector>

#include "overlay.hpp"

namespace planb {

struct InitramfsUpdate {
  std::string initrd;                // /boot/initrd.img-VERSION
  std::string version;
  std::vector<std::string> added;    // module names put in (with dependencies)
  std::vector<std::string> builtin;  // asked for but built into the kernel
  std::vector<std::string> missing;  // not in this kernel at all
  uint64_t bytes_before = 0, bytes_appended = 0;
};

// For every initrd in the guest's /boot that has a matching /lib/modules.
Result<std::vector<InitramfsUpdate>> add_initramfs_modules(GuestTree& tree, const std::vector<std::string>& modules);

// A "newc" cpio archive writer (exposed for the unit tests).
class CpioWriter {
 public:
  void dir(const std::string& name, uint32_t mode = 0755);
  void file(const std::string& name, const std::string& data, uint32_t mode = 0644);
  std::string finish();  // appends the trailer

 private:
  void entry(const std::string& name, uint32_t mode, const std::string& data);
  std::string out_;
  uint32_t ino_ = 1;
};

}  // namespace planb
