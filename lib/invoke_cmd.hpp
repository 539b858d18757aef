// planb-invoke plan / start / drill / status / stop / report (the orchestrator's
// subcommands; authorisation, DNS, VPN and failback have their own *_cmd files).
#pragma once
#include <string>
#include <vector>

#include "invocation.hpp"

namespace planb {

struct InvokePlanOptions {
  std::string server, cmdb;
  std::string request;                 // a request id/path: plan exactly its hosts
  std::string customer;                // or a customer ...
  std::vector<std::string> hosts;      // ... and hosts (none = all)
  bool json = false;
};
Status invoke_plan_main(const InvokePlanOptions& o);

struct InvokeStartOptions {
  std::string server, cmdb;
  std::string request;  // id or path of the approved request
  RunOptions run;
  bool json = false;
};
// start: a real invocation (mode real). drill: mode drill, isolated, torn down.
Status invoke_start_main(InvokeStartOptions o);
Status invoke_drill_main(InvokeStartOptions o);

struct InvokeIdOptions {
  std::string server, cmdb;
  std::string id;
  bool live = false;   // status: run every check once now
  bool json = false;
  std::string format = "md";  // report: md | html | json
};
Status invoke_status_main(const InvokeIdOptions& o);
Status invoke_stop_main(const InvokeIdOptions& o);
Status invoke_report_main(const InvokeIdOptions& o);

}  // namespace planb
