#include "vpn_cmd.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "cmdb.hpp"
#include "fsutil.hpp"
#include "json.hpp"
#include "server_layout.hpp"
#include "vpn.hpp"

namespace planb {

namespace {

bool valid_id(const std::string& id) {
  if (id.size() < 8 || id.size() > 64) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// What the orchestrator recorded (state.json), when it exists.
struct StateHints {
  std::string customer, cidr, netns;
};

StateHints read_state(const std::string& inv_dir) {
  StateHints h;
  auto t = read_file(join_path(inv_dir, "state.json"));
  if (!t.ok()) return h;
  try {
    auto j = nlohmann::json::parse(*t);
    h.customer = j.value("customer", "");
    if (j.contains("network") && j["network"].is_object()) {
      h.cidr = j["network"].value("cidr", "");
      h.netns = j["network"].value("netns", "");
    }
  } catch (const std::exception&) {
  }
  return h;
}

Status configure(const VpnCmdOptions& o, const ServerLayout& s, const std::string& inv_dir, const std::string& dir) {
  StateHints h = read_state(inv_dir);
  std::string cmdb_path = o.cmdb.empty() ? s.cmdb() : o.cmdb;
  PB_ASSIGN(Cmdb cmdb, load_cmdb(cmdb_path));
  std::string name = !o.customer.empty() ? o.customer : h.customer;
  const CmdbCustomer* c = nullptr;
  if (name.empty()) {
    if (cmdb.customers.size() != 1)
      return make_error(kExitUsage, "failed to configure VPN: the CMDB " + cmdb_path + " has " +
                                        std::to_string(cmdb.customers.size()) + " customers: name one with --customer");
    c = &cmdb.customers[0];
  } else {
    c = cmdb.customer(name);
    if (!c) return make_error(kExitNotFound, "failed to configure VPN: no customer '" + name + "' in " + cmdb_path);
  }
  std::string cidr = !o.rescue.empty() ? o.rescue : !h.cidr.empty() ? h.cidr : c->rescue.network;
  PB_ASSIGN(VpnSetup v, vpn_configure(*c, dir, cidr, o.id));
  (void)v;
  return {};
}

void print_summary(const VpnSetup& v, bool running) {
  std::printf("VPN %s (customer %s, invocation %s): %s\n", v.interface_name.c_str(), v.customer.c_str(),
              v.invocation_id.c_str(), running ? "running" : "not running");
  std::printf("  endpoint %s, platform key %s, tunnel %s (platform %s), rescue network %s\n", v.endpoint.c_str(),
              v.public_key.c_str(), v.tunnel_network.c_str(), v.address.c_str(), v.rescue_network.c_str());
  for (const auto& p : v.peers) {
    std::string kind = p.allowed_ips.empty() ? "roaming" : "site";
    for (const auto& a : p.allowed_ips) kind += " " + a;
    std::printf("%-20s %-15s %-30s %s%s%s\n", p.name.c_str(), p.address.c_str(), kind.c_str(), p.config.c_str(),
                p.qr.empty() ? "" : " ", p.qr.c_str());
  }
}

}  // namespace

std::string vpn_dir_of(const std::string& server, const std::string& id) {
  return ServerLayout::at(server).root + "/invocations/" + id + "/vpn";
}

Status vpn_main(const VpnCmdOptions& o) {
  if (!valid_id(o.id)) return make_error(kExitUsage, "failed to read invocation '" + o.id + "': not an invocation id (hex)");
  if (o.up && o.down) return make_error(kExitUsage, "failed to run vpn: --up and --down exclude each other");
  if (o.qr && o.peer.empty()) return make_error(kExitUsage, "failed to print QR code: --qr needs --peer NAME");
  ServerLayout s = ServerLayout::at(o.server);
  std::string inv_dir = s.root + "/invocations/" + o.id;
  std::string dir = inv_dir + "/vpn";
  if (!path_exists(inv_dir)) return make_error(kExitNotFound, "failed to read invocation " + o.id + ": no " + inv_dir);

  if (o.configure) PB_TRY(configure(o, s, inv_dir, dir));
  if (o.down) {
    auto v = vpn_load(dir);
    if (!v.ok()) return v.error().code == kExitNotFound ? Status{} : Status{v.error()};
    PB_TRY(vpn_down(*v));
    if (o.json) std::printf("%s\n", vpn_setup_json(*v, false).c_str());
    else std::printf("VPN %s stopped\n", v->interface_name.c_str());
    return {};
  }
  PB_ASSIGN(VpnSetup v, vpn_load(dir));
  if (o.up) {
    std::string ns = o.netns;
    if (ns.empty()) ns = read_state(inv_dir).netns;
    if (ns.empty()) ns = "planb-" + o.id.substr(0, 8);
    PB_TRY(vpn_up(v, ns));
  }
  if (!o.peer.empty()) {
    const VpnPeer* p = v.find(o.peer);
    if (!p) return make_error(kExitNotFound, "failed to find VPN peer '" + o.peer + "' of invocation " + o.id);
    PB_ASSIGN(std::string text, read_file(p->config));
    if (o.json) {
      std::vector<std::string> ips;
      for (const auto& a : p->allowed_ips) ips.push_back(json_escape(a));
      JsonObject j;
      j.add("name", p->name).add("address", p->address).add_raw("allowed_ips", json_array(ips));
      j.add("public_key", p->public_key).add("config", p->config).add("qr", p->qr).add("text", text);
      std::printf("%s\n", j.str().c_str());
      return {};
    }
    if (!o.qr) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      return {};
    }
    // The configuration goes to qrencode on its standard input, never on argv.
    std::fflush(stdout);
    int in[2];
    if (::pipe(in) != 0) return fail("failed to print QR code: pipe: " + errstr(errno));
    pid_t pid = ::fork();
    if (pid < 0) return fail("failed to print QR code: fork: " + errstr(errno));
    if (pid == 0) {
      ::dup2(in[0], 0);
      ::close(in[0]);
      ::close(in[1]);
      ::execlp("qrencode", "qrencode", "-t", "ansiutf8", (char*)nullptr);
      std::fprintf(stderr, "planb-invoke: error: failed to print QR code: qrencode is not installed (scripts/deps test)\n");
      ::_exit(127);
    }
    ::close(in[0]);
    Status w = write_all(in[1], text.data(), text.size(), "qrencode's input");
    ::close(in[1]);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    PB_TRY(w);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return fail("failed to print QR code: qrencode failed");
    return {};
  }
  bool running = vpn_running(v);
  if (o.json) std::printf("%s\n", vpn_setup_json(v, running).c_str());
  else print_summary(v, running);
  return {};
}

}  // namespace planb
