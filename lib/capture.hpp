// planb-capture: walk a server's tree into a new snapshot of the store.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "store.hpp"

namespace planb {

struct CaptureOptions {
  std::string host;
  std::string source;              // local path (ssh:// reserved)
  std::vector<std::string> excludes;
  bool default_excludes = true;    // /proc/* /sys/* /dev/* /run/* /tmp/*
  bool one_file_system = true;
  int change_retries = 3;          // re-reads of a file that changes while read
  bool progress = true;
};

struct CaptureResult {
  uint64_t sequence = 0;
  Hash manifest;
  uint64_t entries = 0, files = 0, dirs = 0, symlinks = 0, hardlinks = 0, specials = 0;
  uint64_t files_read = 0, files_unchanged = 0;
  uint64_t bytes_total = 0, bytes_read = 0, bytes_new = 0, objects_new = 0;
  uint64_t changing = 0, unreadable = 0;
  double seconds = 0;
  std::vector<std::string> warnings;
  bool partial() const { return unreadable > 0; }
};

std::vector<std::string> default_excludes();
// Does relative path `rel` match an exclude pattern? Patterns with a '/' are
// anchored at the source root; others match the last path component.
bool excluded(const std::vector<std::string>& patterns, const std::string& rel);

Result<CaptureResult> capture(Store& store, const CaptureOptions& opt);

}  // namespace planb
