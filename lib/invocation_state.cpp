// state.json of an invocation: written atomically after every change, read by
// status, stop, report and failback (doc/formats.md "Invocation state v1").
#include <nlohmann/json.hpp>

#include "fsutil.hpp"
#include "invocation.hpp"
#include "invoke_auth.hpp"

namespace planb {

InvocationHost* InvocationState::find(const std::string& name) {
  for (auto& h : hosts)
    if (h.name == name) return &h;
  return nullptr;
}

std::string invocation_state_path(const ServerLayout& s, const std::string& id) {
  return invocation_dir(s, id) + "/state.json";
}

std::string invocation_state_json(const InvocationState& st) {
  using nlohmann::json;
  json j;
  j["format"] = "planb-invocation-state";
  j["version"] = 1;
  j["id"] = st.id;
  j["customer"] = st.customer;
  j["mode"] = st.mode;
  j["reason"] = st.reason;
  j["backend"] = st.backend;
  j["approvers"] = st.approvers;
  j["status"] = st.status;
  j["started_at"] = st.started_at;
  j["verified_at"] = st.verified_at;
  j["stopped_at"] = st.stopped_at;
  j["seconds_to_verified"] = st.seconds_to_verified;
  j["dns_redirected"] = st.dns_redirected;
  j["vpn_up"] = st.vpn_up;
  j["vpn_peers"] = st.vpn_peers;
  json net;
  net["id"] = st.net.id;
  net["cidr"] = st.net.cidr;
  net["gateway"] = st.net.gateway;
  net["domain"] = st.net.domain;
  net["run_dir"] = st.net.run_dir;
  net["netns"] = st.netns;
  json leases = json::array();
  for (const auto& l : st.net.leases) leases.push_back({{"host", l.host}, {"mac", l.mac}, {"address", l.address}});
  net["leases"] = leases;
  j["network"] = net;
  json hosts = json::array();
  for (const auto& h : st.hosts) {
    json x;
    x["name"] = h.name;
    x["sequence"] = h.sequence;
    x["image"] = h.image;
    x["address"] = h.address;
    x["mac"] = h.mac;
    x["cpus"] = h.cpus;
    x["memory_mb"] = h.memory_mb;
    x["wave"] = h.wave;
    x["depends_on"] = h.depends_on;
    x["state"] = h.state;
    x["detail"] = h.detail;
    x["booted_s"] = h.booted_s;
    x["verified_s"] = h.verified_s;
    x["verified_at"] = h.verified_at;
    x["vm"] = {{"backend", h.vm.backend}, {"id", h.vm.id},       {"pid", h.vm.pid},
               {"serial_log", h.vm.serial_log}, {"qmp", h.vm.qmp}, {"overlay", h.vm.overlay}};
    // Top-level copies for readers that only want these (failback).
    x["overlay"] = h.vm.overlay;
    x["qmp"] = h.vm.qmp;
    x["serial_log"] = h.vm.serial_log;
    x["pid"] = h.vm.pid;
    json checks = json::array();
    for (const auto& c : h.checks)
      checks.push_back({{"label", c.label}, {"passed", c.passed}, {"seconds", c.seconds}, {"attempts", c.attempts},
                        {"detail", c.detail}});
    x["checks"] = checks;
    hosts.push_back(x);
  }
  j["hosts"] = hosts;
  return j.dump(2) + "\n";
}

Result<InvocationState> load_invocation_state(const ServerLayout& s, const std::string& id) {
  std::string path = invocation_state_path(s, id);
  auto text = read_file(path);
  if (!text.ok()) {
    if (!path_exists(invocation_dir(s, id)))
      return make_error(kExitNotFound, "failed to read invocation " + id + ": no such invocation in " + invocations_dir(s));
    return make_error(kExitNotFound, "failed to read invocation " + id + ": it was never started (no " + path + ")");
  }
  using nlohmann::json;
  InvocationState st;
  try {
    json j = json::parse(*text);
    if (j.value("format", "") != "planb-invocation-state" || j.value("version", 0) != 1)
      return make_error(kExitCorrupt, "failed to read " + path + ": not a planb-invocation-state version 1 file");
    st.id = j.at("id");
    st.customer = j.at("customer");
    st.mode = j.at("mode");
    st.reason = j.value("reason", "");
    st.backend = j.at("backend");
    st.approvers = j.value("approvers", std::vector<std::string>{});
    st.status = j.at("status");
    st.started_at = j.value("started_at", int64_t(0));
    st.verified_at = j.value("verified_at", int64_t(0));
    st.stopped_at = j.value("stopped_at", int64_t(0));
    st.seconds_to_verified = j.value("seconds_to_verified", -1.0);
    st.dns_redirected = j.value("dns_redirected", false);
    st.vpn_up = j.value("vpn_up", false);
    st.vpn_peers = j.value("vpn_peers", std::vector<std::string>{});
    const json& net = j.at("network");
    st.net.id = net.at("id");
    st.net.cidr = net.at("cidr");
    st.net.gateway = net.at("gateway");
    st.net.domain = net.value("domain", "");
    st.net.run_dir = net.value("run_dir", "");
    st.netns = net.value("netns", "");
    for (const auto& l : net.at("leases")) st.net.leases.push_back({l.at("host"), l.at("mac"), l.at("address")});
    for (const auto& x : j.at("hosts")) {
      InvocationHost h;
      h.name = x.at("name");
      h.sequence = x.value("sequence", uint64_t(0));
      h.image = x.value("image", "");
      h.address = x.value("address", "");
      h.mac = x.value("mac", "");
      h.cpus = x.value("cpus", 1);
      h.memory_mb = x.value("memory_mb", uint64_t(0));
      h.wave = x.value("wave", 0);
      h.depends_on = x.value("depends_on", std::vector<std::string>{});
      h.state = x.value("state", "planned");
      h.detail = x.value("detail", "");
      h.booted_s = x.value("booted_s", -1.0);
      h.verified_s = x.value("verified_s", -1.0);
      h.verified_at = x.value("verified_at", int64_t(0));
      const json& vm = x.at("vm");
      h.vm.backend = vm.value("backend", "");
      h.vm.host = h.name;
      h.vm.id = vm.value("id", "");
      h.vm.pid = vm.value("pid", int64_t(0));
      h.vm.serial_log = vm.value("serial_log", "");
      h.vm.qmp = vm.value("qmp", "");
      h.vm.overlay = vm.value("overlay", "");
      for (const auto& c : x.value("checks", json::array()))
        h.checks.push_back({c.value("label", ""), c.value("passed", false), c.value("seconds", -1.0), c.value("attempts", 0),
                            c.value("detail", "")});
      st.hosts.push_back(std::move(h));
    }
  } catch (const std::exception& e) {
    return make_error(kExitCorrupt, "failed to read " + path + ": " + e.what());
  }
  return st;
}

Status save_invocation_state(const ServerLayout& s, const InvocationState& st) {
  return write_file_atomic(invocation_state_path(s, st.id), invocation_state_json(st), 0644);
}

}  // namespace planb
