// The server catalog (SQLite, SERVER/catalog.db): what the server knows about
// each host — snapshots assembled, images built, boot tests run, tickets
// (refused bundles, failed boot tests, ...). Schema: doc/formats.md,
// "Catalog (SQLite) v1".
//
// One Catalog per process (or thread); several processes may open the same
// file: WAL mode, a busy timeout, and every write in its own transaction
// (nested inside transaction() when the caller groups several writes).
// Times are Unix seconds (UTC); 0 given to a write means "now".
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "result.hpp"

struct sqlite3;

namespace planb {

inline constexpr int kCatalogVersion = 2;

// Ticket kinds written by planb-assemble (others may add their own).
inline constexpr const char* kTicketReplay = "replay";                     // sequence not after the head
inline constexpr const char* kTicketGap = "gap";                           // a sequence is missing
inline constexpr const char* kTicketFullBundleNeeded = "full_bundle_needed";  // parent is not the head
inline constexpr const char* kTicketBadSignature = "bad_signature";       // bad signature, unknown/revoked signer
inline constexpr const char* kTicketCorrupt = "corrupt";                   // damaged sealed file or bundle
inline constexpr const char* kTicketMismatch = "header_mismatch";          // sealed header != bundle header
inline constexpr const char* kTicketWrongRecipient = "wrong_recipient";    // sealed to another server key
inline constexpr const char* kTicketBootTestFailed = "boot_test_failed";   // (planb-promote)

struct SnapshotRow {
  std::string host;
  uint64_t sequence = 0;
  std::string manifest;   // manifest id, hex
  std::string parent;     // parent manifest id, hex; empty for a full bundle
  std::string appliance;  // id of the appliance key that signed the bundle
  std::string bundle;     // the sealed bundle's file name
  uint64_t bytes = 0;     // sealed bundle size
  int64_t applied_at = 0;
  std::string state = "applied";  // applied | retired
};

struct ImageRow {
  int64_t id = 0;
  std::string host;
  uint64_t sequence = 0;  // the snapshot it was built from
  std::string path;
  uint64_t bytes = 0;
  std::string format = "qcow2";
  int64_t created_at = 0;
  std::string state = "candidate";  // candidate | good | failed | retired
};

struct BootTestRow {
  int64_t id = 0;
  int64_t image_id = 0;
  bool passed = false;
  std::string report_dir;
  int64_t started_at = 0;
  double seconds = 0;
  std::string checks_json = "[]";  // the checks and their results, as JSON
};

struct TicketRow {
  int64_t id = 0;
  std::string host;
  uint64_t sequence = 0;  // snapshot / bundle sequence (0: none)
  int64_t image_id = 0;   // 0: none
  std::string kind;       // kTicket* or another short word
  std::string summary;    // one line
  std::string details_json = "{}";
  int64_t opened_at = 0;
  int64_t closed_at = 0;  // 0 while open
  std::string status = "open";  // open | closed
};

struct HostStatus {
  std::string host;
  std::optional<SnapshotRow> latest;   // newest applied snapshot
  std::optional<ImageRow> candidate;   // newest image in state candidate
  std::optional<ImageRow> good;        // good_image(host)
  std::vector<TicketRow> open_tickets;
  bool full_bundle_needed = false;     // an open full_bundle_needed or gap ticket
};

class Catalog {
 public:
  // Opens (creating if missing) and migrates the catalog to kCatalogVersion.
  // A catalog newer than this program is refused (exit 5).
  static Result<Catalog> open(const std::string& path);
  Catalog(Catalog&& o) noexcept;
  Catalog& operator=(Catalog&& o) noexcept;
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;
  ~Catalog();

  const std::string& path() const { return path_; }
  int schema_version() const { return version_; }

  // Runs body in one transaction: committed if it returns ok, else rolled
  // back. The write methods below nest inside it.
  Status transaction(const std::function<Status()>& body);

  // Snapshots. record_snapshot inserts or replaces the row of (host, sequence).
  Status record_snapshot(const SnapshotRow& s);
  Result<std::optional<SnapshotRow>> snapshot(const std::string& host, uint64_t sequence);
  Result<std::optional<SnapshotRow>> latest_snapshot(const std::string& host);
  Result<std::vector<SnapshotRow>> snapshots(const std::string& host);

  // Tickets. A refused bundle is a ticket whose details hold the bundle name,
  // the reason and the exit code (see planb-assemble); returns its id.
  Result<int64_t> open_ticket(const TicketRow& t);
  Result<int64_t> record_refusal(const std::string& host, uint64_t sequence, const std::string& kind,
                                 const std::string& bundle, const std::string& reason, int exit_code,
                                 const std::string& appliance = "");
  Status close_ticket(int64_t id);
  // Closes every open ticket of `host` whose kind is one of `kinds`; returns how many.
  Result<int> close_tickets(const std::string& host, const std::vector<std::string>& kinds);
  Result<std::vector<TicketRow>> open_tickets(const std::string& host = "");  // "" : every host
  Result<std::vector<TicketRow>> tickets(const std::string& host = "");       // open and closed

  // Images and boot tests.
  Result<int64_t> add_image(const ImageRow& img);
  Status set_image_state(int64_t image_id, const std::string& state);
  Result<std::optional<ImageRow>> image(int64_t image_id);
  Result<std::vector<ImageRow>> images(const std::string& host);
  // The host's last known good image: the newest (by sequence, then id) in state good.
  Result<std::optional<ImageRow>> good_image(const std::string& host);
  Result<int64_t> record_boot_test(const BootTestRow& b);
  Result<std::vector<BootTestRow>> boot_tests(int64_t image_id);

  // Every host that appears anywhere in the catalog, sorted by name.
  Result<std::vector<HostStatus>> list_hosts_status();

  // Escape hatch for later stages' own tables (add them with a migration).
  sqlite3* handle() { return db_; }

 private:
  Catalog() = default;
  Status exec(const char* sql);
  sqlite3* db_ = nullptr;
  std::string path_;
  int version_ = 0;
};

// "now" in Unix seconds, as the catalog stores times.
int64_t catalog_now();

}  // namespace planb
