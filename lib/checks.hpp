// The checks that prove a VM of a host works (the CMDB's [[host.check]]),
// shared by planb-boot-test (qemu user-mode network, guest ports forwarded to
// loopback) and planb-invoke (the rescue network: the guest's own address).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cmdb.hpp"

namespace planb {

struct CheckAttempt {
  bool passed = false;
  std::string detail;  // what passed, or the last error
};

struct CheckTarget {
  const CmdbHost* host = nullptr;
  std::string address = "127.0.0.1";  // where the guest's ports are reached
  std::map<int, int> ports;           // guest port -> port to connect to (absent: the same port)
  std::string key;                    // ssh identity (SERVER/keys/test-agent)
  std::string report_dir, image;      // for script checks' environment
  int remaining_s = 1 << 20;          // no attempt runs past this many seconds
  std::function<bool()> cancelled;    // a signal arrived: give up at once
  // tcp over qemu's user-mode network: the host-side connect always succeeds, so
  // this decides (fd = the connected socket, port = the host-side port).
  std::function<CheckAttempt(const CmdbCheck&, int port, int fd, int timeout_s)> tcp_probe;

  int port(int guest) const {
    auto it = ports.find(guest);
    return it == ports.end() ? guest : it->second;
  }
  bool is_cancelled() const { return cancelled && cancelled(); }
};

// One attempt of one check.
CheckAttempt run_check(const CheckTarget& target, const CmdbCheck& check);
// "tcp port 22" or the check's name.
std::string check_label(const CmdbCheck& check);

// A child process with a time limit and its output (stdout+stderr, up to 64 KiB).
struct ProcResult {
  bool started = false;
  bool timed_out = false;
  int status = -1;  // exit status, or 128+signal; -1 on time-out
  std::string output;
};
ProcResult run_process(const std::vector<std::string>& argv, const std::vector<std::string>& env_add,
                       const std::string& cwd, int timeout_s, const std::function<bool()>& cancelled = {});

}  // namespace planb
