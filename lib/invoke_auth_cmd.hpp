// planb-invoke subcommands of the authorisation area: keygen, request,
// approve, submit, executives, authorise, audit. Each takes an options struct
// filled by cmd/planb-invoke.cpp and returns a Status (run_command prints it).
#pragma once
#include <string>
#include <vector>

#include "result.hpp"

namespace planb {

struct InvokeKeygenOptions {
  std::string out;
  bool force = false;
  bool json = false;
};
Status invoke_keygen_main(const InvokeKeygenOptions& o);

struct InvokeRequestOptions {
  std::string server;
  std::string cmdb;  // "" = SERVER/cmdb
  std::string customer;
  std::vector<std::string> hosts;
  bool all = false;
  bool executives = false;  // a change of the executive set (from the CMDB) instead of an invocation
  std::string reason;
  std::string mode;         // real | drill
  std::string valid_for;    // "4h" (default 24h)
  std::string not_before, not_after;  // times (lib/timeparse.hpp), instead of --valid-for
  std::string out;          // also write the request here ("-" = stdout, the default)
  bool json = false;
};
Status invoke_request_main(const InvokeRequestOptions& o);

struct InvokeApproveOptions {
  std::string key;       // executive key file (planb-invoke keygen, or OpenSSH ed25519 private key)
  std::string request;   // request file
  std::string out;       // approval file ("" = ID-KEYID.approval in the current directory; "-" = stdout)
  std::string signed_at; // default now
  bool yes = false;      // do not ask on a terminal
  bool json = false;
};
Status invoke_approve_main(const InvokeApproveOptions& o);

struct InvokeSubmitOptions {
  std::string server;
  std::vector<std::string> approvals;
  bool json = false;
};
Status invoke_submit_main(const InvokeSubmitOptions& o);

struct InvokeExecutivesOptions {
  std::string server;
  std::string cmdb;  // "" = SERVER/cmdb
  std::string customer;
  bool enrol = false;
  std::string apply;  // request id or file
  bool json = false;
};
Status invoke_executives_main(const InvokeExecutivesOptions& o);

struct InvokeAuthoriseOptions {
  std::string server;
  std::string cmdb;  // "" = SERVER/cmdb
  std::string request;  // id or file
  std::string mode;     // real | drill
  bool dry_run = false;
  bool json = false;
};
Status invoke_authorise_main(const InvokeAuthoriseOptions& o);

struct InvokeAuditOptions {
  std::string server;
  std::string invocation;
  bool json = false;
};
Status invoke_audit_main(const InvokeAuditOptions& o);

}  // namespace planb
