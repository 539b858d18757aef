// Paths of the Plan B server's directory (--server DIR, default $PLANB_SERVER
// or /var/lib/planb-server). The layout is documented in doc/formats.md,
// "Server directory".
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "result.hpp"

namespace planb {

struct ServerLayout {
  std::string root;
  static ServerLayout at(const std::string& dir);  // "" = $PLANB_SERVER or the default
  std::string inbox() const { return root + "/inbox"; }
  std::string store() const { return root + "/store"; }
  std::string catalog() const { return root + "/catalog.db"; }
  std::string keys() const { return root + "/keys"; }
  std::string cmdb() const { return root + "/cmdb"; }
  std::string image_dir(const std::string& host, uint64_t seq) const;
  std::string image(const std::string& host, uint64_t seq) const { return image_dir(host, seq) + "/disk.qcow2"; }
  std::string report_dir(const std::string& host, uint64_t seq) const;
  std::string repository(const std::string& host) const { return root + "/repository/" + host; }
  std::string config() const { return root + "/config"; }
};

// SERVER/config: "key = value" lines, '#' comments. Missing file: empty map.
Result<std::map<std::string, std::string>> read_server_config(const ServerLayout& s);

}  // namespace planb
