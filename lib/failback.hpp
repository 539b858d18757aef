// Failback: bring the data a customer changed on a rescue VM back to their new
// hardware (planb-invoke failback HOST --to TARGET).
//
//   1. read the rescue disk at a point in time without changing any layer
//      (lib/failback_disk.hpp: QMP freeze of a running VM, throwaway layer,
//      read-only mount);
//   2. capture it into a failback store (SERVER/invocations/ID/failback/HOST/
//      store, host HOST): snapshot 1 is the file system of the image the VM
//      booted from (repository/HOST/SEQ.qcow2, i.e. the snapshot plus
//      planb-convert's P2V edits, so those are never "changes"), then one
//      snapshot per pass;
//   3. compare with what the target last received (snapshot 1 at first), drop
//      runtime noise, --exclude patterns and paths planb-convert edited;
//   4. restrict both manifests to the changed paths (plus their ancestors) and
//      write an ordinary incremental bundle between them (deltas against the
//      base contents, which the target holds at the same paths);
//   5. the receiver (failback_receive_*, local or `planb-invoke failback-receive`
//      over ssh) checks that the target holds the base at every path to be
//      replaced or deleted (refusing otherwise, unless --force), seeds a work
//      store with those contents, applies the bundle with apply_bundle and
//      restores the changed entries with restore_entries (metadata kept),
//      then deletes what the rescue VM deleted.
// The wire stream and the state file are in doc/formats.md ("Failback").
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "result.hpp"

namespace planb {

// Paths never failed back by default (runtime noise of the rescue VM), in
// capture's exclude syntax (a '/' anchors at the root).
std::vector<std::string> failback_default_excludes();

struct FailbackOptions {
  std::string server;       // "" = $PLANB_SERVER or the default
  std::string host;
  std::string invocation;   // "" = the newest invocation that has HOST
  std::string to;           // DIR or ssh://user@host[:port]/path
  bool final_pass = false;  // stop the VM, send what changed since the last pass
  bool cutover = false;     // a bulk pass, then the final pass
  bool force = false;       // replace paths whose target content differs from the base
  std::vector<std::string> excludes;
  bool default_excludes = true;
  int grace_s = 120;        // ACPI power-off wait before QMP quit
  // ssh targets
  std::string identity;     // ssh -i
  std::string known_hosts;  // ssh UserKnownHostsFile (StrictHostKeyChecking=yes always)
  std::string remote_command = "planb-invoke";
  bool progress = true;
  // Read the rescue disk through a raw copy (qemu-img convert) instead of the
  // FUSE export (the image's own file system is always read that way).
  bool copy = false;
  // Audit hook (event, detail JSON); may be empty.
  std::function<Status(const std::string& invocation, const std::string& event, const std::string& detail)> audit;
};

struct FailbackPass {
  int pass = 0;
  std::string kind;         // "bulk" | "final"
  std::string vm;           // how the disk was read: "frozen running VM", "stopped VM", ...
  std::string stop;         // final pass: how the VM stopped ("powerdown", "quit", ...)
  std::string layer;        // the qcow2 layer read
  uint64_t snapshot = 0;    // failback store sequence of this pass
  uint64_t base_snapshot = 0;
  uint64_t files = 0;       // regular files written on the target
  uint64_t entries = 0;     // entries restored (files, dirs, links, ...)
  uint64_t deleted = 0;
  uint64_t bytes = 0;       // file bytes written on the target
  uint64_t bundle_bytes = 0;
  double base_seconds = 0;  // first pass: reading and capturing the image's own file system
  double read_seconds = 0, capture_seconds = 0, deliver_seconds = 0, seconds = 0;
  double downtime_seconds = 0;  // final pass: from the stop request to delivered
  std::vector<std::string> skipped;   // changed on the VM but not failed back (P2V-edited)
  std::vector<std::string> warnings;
};

struct FailbackResult {
  std::string host, invocation, to;
  std::vector<FailbackPass> passes;
};

Result<FailbackResult> failback(const FailbackOptions& opt);

// ------------------------------------------------------------ receiving side

struct ReceiveOptions {
  std::string dir;         // the target root
  std::string work;        // work directory (created, removed at the end)
  bool force = false;
  bool progress = true;
};

struct ReceiveMismatch {
  std::string path;        // "/etc/x"
  std::string why;
};

struct ReceiveResult {
  std::vector<ReceiveMismatch> mismatches;  // check only
  uint64_t files = 0, entries = 0, deleted = 0, bytes = 0;
  double seconds = 0;
  std::vector<std::string> warnings;
};

// Check: does DIR hold `base` at every path of base, and nothing at the paths
// `next` adds? (base and next are encoded manifests.)
Result<ReceiveResult> failback_receive_check(const std::string& base, const std::string& next,
                                             const ReceiveOptions& opt);
// Apply: seed a work store from DIR (the base contents), apply the bundle,
// delete, restore. Refuses (exit 6) on a mismatch unless opt.force.
Result<ReceiveResult> failback_receive_apply(const std::string& base, const std::string& bundle_path,
                                             const ReceiveOptions& opt);

// The stream sent to `planb-invoke failback-receive` (doc/formats.md):
//   "planb-failback 1\n" then sections "<name> <length>\n<bytes>", then "end\n".
// Sections: "check" (base, next) or "apply" (base, bundle).
struct FailbackStream {
  std::string kind;         // "check" | "apply"
  std::string base, next;   // manifests
  std::string bundle_path;  // apply: where the bundle was written (work dir)
};
Status write_failback_stream(int fd, const FailbackStream& s);
Result<FailbackStream> read_failback_stream(int fd, const std::string& work_dir);

// JSON of a receive result (what failback-receive prints and the sender parses).
std::string receive_result_json(const ReceiveResult& r);

struct FailbackReceiveCmdOptions {
  std::string dir;
  std::string work;        // "" = DIR/../.planb-failback-PID... (a temp dir beside DIR)
  bool force = false;
  bool json = false;
};
// Reads the stream on stdin and checks or applies it to DIR.
Status failback_receive_main(const FailbackReceiveCmdOptions& o);

struct FailbackCmdOptions {
  FailbackOptions fb;
  bool json = false;
};
Status failback_main(FailbackCmdOptions o);

}  // namespace planb
