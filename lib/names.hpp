// uid/gid -> name, preferring the captured system's own /etc/passwd and
// /etc/group (a mounted server's names, not the appliance's), then NSS.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>

namespace planb {

class NameMap {
 public:
  explicit NameMap(const std::string& source_root);
  const std::string& user(uint32_t uid);
  const std::string& group(uint32_t gid);

 private:
  bool have_files_ = false;
  std::unordered_map<uint32_t, std::string> users_, groups_;
};

}  // namespace planb
