// planb-promote: a boot-tested image becomes the host's last known good one,
// or, when its test failed, a ticket is opened and `good` stays where it was.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "catalog.hpp"
#include "result.hpp"
#include "server_layout.hpp"

namespace planb {

// Exit code of planb-promote when the boot test failed: not promoted, ticket opened.
inline constexpr int kExitNotPromoted = 11;

// What planb-promote needs from a boot-test report (doc/formats.md "Boot-test report").
struct BootReport {
  std::string host;
  uint64_t sequence = 0;
  std::string image;       // path of the image that was tested
  std::string image_hash;  // its hash as the report gives it (hex), may be empty
  std::string hash_algo;   // "blake2b-256" (ours) or "sha256"
  bool passed = false;
  std::vector<std::string> failed_checks;  // "http :80/ (body ...)": one line each
  std::string serial_log, screenshot, summary;
  double seconds = 0;
  int64_t started_at = 0;
  std::string checks_json = "[]";
};
Result<BootReport> read_boot_report(const std::string& report_dir);

// The `good` ref of a host in the repository (SERVER/repository/HOST/good).
struct GoodRef {
  uint64_t sequence = 0;
  std::string image;   // file name inside the repository directory
  std::string hash;    // BLAKE2b-256 of the image, hex
  std::string report;  // report directory
  int64_t promoted_at = 0;
};
Result<std::optional<GoodRef>> read_good_ref(const ServerLayout& s, const std::string& host);

struct PromoteOptions {
  std::string host;
  std::optional<uint64_t> sequence;  // default: the host's candidate
  std::string report_dir;            // default: SERVER/reports/HOST/SEQ
  int keep_images = -1;              // -1: from SERVER/config keep_images, default 3
};

struct PromoteResult {
  std::string host;
  uint64_t sequence = 0;
  bool promoted = false;
  bool already = false;           // this image was already the good one
  std::string image;              // repository path (promoted)
  int64_t ticket = 0;             // ticket id (not promoted)
  std::vector<std::string> failed_checks;
  std::vector<std::string> retired;  // older images removed by retention
  std::string notify_error;       // the notify hook failed (the ticket stands)
  std::optional<GoodRef> good;    // the host's good ref after the run
};

Result<PromoteResult> promote(const ServerLayout& s, const PromoteOptions& opt);

struct HostOverview {
  std::string host;
  std::optional<uint64_t> latest, candidate;  // store refs
  std::optional<GoodRef> good;
  std::optional<bool> last_test_passed;       // of the candidate's report, when there is one
  std::vector<TicketRow> tickets;             // open ones
};
Result<std::vector<HostOverview>> list_hosts(const ServerLayout& s);

}  // namespace planb
