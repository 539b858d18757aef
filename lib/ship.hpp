// planb-ship: push the sealed bundles waiting in the appliance's outbox to the
// server's inbox, in sequence order per host, each exactly once and never
// visible there partially. See man/planb-ship.1 and ARCHITECTURE.md.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "result.hpp"
#include "seal.hpp"
#include "transport.hpp"

namespace planb {

// Exit code when the destination stayed unreachable through every retry.
inline constexpr int kExitUnreachable = kTransient;

// The clear-text header of a sealed bundle file (no signature check: that is
// the server's job; the outbox is the appliance's own).
Result<SealHeader> read_sealed_header(const std::string& path);

// The temp name a bundle travels under: hidden (leading dot), so an inbox
// reader that skips dot-files never sees a partial bundle.
std::string ship_temp_name(const std::string& name);

struct ShipOptions {
  std::string outbox;
  std::string dest;
  TransportOptions transport;
  int retries = 6;             // attempts after the first, per bundle, on transient errors
  double retry_delay = 2.0;    // first back-off, doubled up to max_delay
  double max_delay = 60.0;
  int keep_sent = 14;          // delivered bundles kept in OUTBOX/sent/ (0: delete at once)
  bool readback = true;        // read each upload back and compare its hash
  bool progress = true;
};

struct ShippedBundle {
  std::string name, host;
  uint64_t sequence = 0, bytes = 0, resumed_from = 0;
  std::string state;  // sent, already-there, failed, held-back, invalid
  int attempts = 0;
  double seconds = 0;
  std::string error;
};

struct ShipReport {
  std::string destination;
  std::vector<ShippedBundle> bundles;
  uint64_t bytes_sent = 0;
  double seconds = 0;
  int sent = 0, already = 0, failed = 0;
  Error first_error;  // set when failed > 0
  // Hosts the server asks a full bundle of (SERVER/inbox/.requests/HOST.full-bundle-needed),
  // recorded as OUTBOX/requests/HOST.full-bundle-needed for appliance-nightly.
  std::vector<std::string> full_bundle_requested;
};

Result<ShipReport> ship(const ShipOptions& opt);

}  // namespace planb
