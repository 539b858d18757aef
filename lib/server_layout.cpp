#include "server_layout.hpp"

#include <cstdlib>
#include <sstream>

#include "fsutil.hpp"

namespace planb {

ServerLayout ServerLayout::at(const std::string& dir) {
  ServerLayout s;
  if (!dir.empty()) {
    s.root = dir;
  } else {
    const char* env = std::getenv("PLANB_SERVER");
    s.root = env && *env ? env : "/var/lib/planb-server";
  }
  while (s.root.size() > 1 && s.root.back() == '/') s.root.pop_back();
  return s;
}

static std::string seq_name(uint64_t seq) { return std::to_string(seq); }

std::string ServerLayout::image_dir(const std::string& host, uint64_t seq) const {
  return root + "/images/" + host + "/" + seq_name(seq);
}

std::string ServerLayout::report_dir(const std::string& host, uint64_t seq) const {
  return root + "/reports/" + host + "/" + seq_name(seq);
}

Result<std::map<std::string, std::string>> read_server_config(const ServerLayout& s) {
  std::map<std::string, std::string> out;
  if (!path_exists(s.config())) return out;
  PB_ASSIGN(std::string text, read_file(s.config()));
  std::istringstream in(text);
  std::string line;
  int n = 0;
  auto trim = [](std::string v) {
    size_t a = v.find_first_not_of(" \t"), b = v.find_last_not_of(" \t\r");
    return a == std::string::npos ? std::string() : v.substr(a, b - a + 1);
  };
  while (std::getline(in, line)) {
    ++n;
    std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    size_t eq = t.find('=');
    if (eq == std::string::npos)
      return make_error(kExitUsage, "failed to read " + s.config() + ": line " + std::to_string(n) + ": expected key = value");
    out[trim(t.substr(0, eq))] = trim(t.substr(eq + 1));
  }
  return out;
}

}  // namespace planb
