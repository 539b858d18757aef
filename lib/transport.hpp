// Transports for planb-ship: where sealed bundles go. One interface, one
// implementation per URL scheme (file:// natively, sftp:// and https:// through
// libcurl), so that S3 or another target is one more class.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "hash.hpp"
#include "result.hpp"

namespace planb {

// Errors a retry may cure (connection refused or dropped, timeouts, 5xx) carry
// this code inside ship; everything else is permanent (auth refused, certificate
// or host key mismatch, disk full, conflict).
inline constexpr int kTransient = 10;

inline Error transient(std::string msg) { return make_error(kTransient, std::move(msg)); }

struct TransportOptions {
  std::string identity;     // sftp: private key file (default ~/.ssh/id_ed25519, id_rsa)
  std::string known_hosts;  // sftp: known_hosts file (default ~/.ssh/known_hosts)
  std::string cacert;       // https: CA bundle to verify the server with
  std::string cert, cert_key;  // https: optional client certificate and its key
  uint64_t limit_rate = 0;  // bytes per second, 0 = unlimited
  long connect_timeout = 30;  // seconds
  long stall_timeout = 60;    // seconds without progress before a transfer is abandoned
};

// Called with bytes sent so far in this transfer.
using XferProgress = std::function<void(uint64_t)>;

class Transport {
 public:
  virtual ~Transport() = default;
  // The destination, for messages (no credentials).
  virtual std::string describe() const = 0;
  // Size of `name` in the inbox, or nullopt when absent.
  virtual Result<std::optional<uint64_t>> size_of(const std::string& name) = 0;
  // Whether upload() can append to a partial temp file (else it rewrites it).
  virtual bool can_resume() const = 0;
  // Sends bytes [offset, total) of fd into `name`, which already holds exactly
  // `offset` bytes (offset is 0 unless can_resume()).
  virtual Status upload(int fd, uint64_t offset, uint64_t total, const std::string& name,
                        const XferProgress& progress) = 0;
  // Reads `name` back and hashes it (BLAKE2b-256).
  virtual Result<Hash> hash_of(const std::string& name) = 0;
  // Renames `from` to `to`, refusing to replace an existing `to`.
  virtual Status rename(const std::string& from, const std::string& to) = 0;
  virtual Status remove(const std::string& name) = 0;
  // Free bytes for us in the inbox's file system, nullopt when unknown.
  virtual Result<std::optional<uint64_t>> free_space() = 0;
};

// A transport for a destination URL: file:///dir/, sftp://[user@]host[:port]/dir/,
// https://host[:port]/dir/. Anything else is a usage error.
Result<std::unique_ptr<Transport>> open_transport(const std::string& url, const TransportOptions& opt);

std::unique_ptr<Transport> make_file_transport(std::string dir, const TransportOptions& opt);
Result<std::unique_ptr<Transport>> make_curl_transport(const std::string& url, const TransportOptions& opt);

// Sleeps as needed so that `sent` bytes since `start` stay under `rate` B/s.
void throttle(uint64_t sent, double elapsed_s, uint64_t rate);

}  // namespace planb
