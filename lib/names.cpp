#include "names.hpp"

#include <grp.h>
#include <pwd.h>

#include <fstream>
#include <vector>

#include "fsutil.hpp"

namespace planb {

static bool load_colon_file(const std::string& path, std::unordered_map<uint32_t, std::string>& out) {
  std::ifstream in(path);
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    // name:x:id:...
    auto a = line.find(':');
    if (a == std::string::npos) continue;
    auto b = line.find(':', a + 1);
    if (b == std::string::npos) continue;
    auto c = line.find(':', b + 1);
    std::string id = line.substr(b + 1, c == std::string::npos ? std::string::npos : c - b - 1);
    if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos) continue;
    out.emplace(uint32_t(std::stoul(id)), line.substr(0, a));
  }
  return true;
}

NameMap::NameMap(const std::string& source_root) {
  bool p = load_colon_file(join_path(source_root, "etc/passwd"), users_);
  bool g = load_colon_file(join_path(source_root, "etc/group"), groups_);
  have_files_ = p && g;
}

const std::string& NameMap::user(uint32_t uid) {
  auto it = users_.find(uid);
  if (it != users_.end()) return it->second;
  std::string name;
  if (!have_files_) {
    struct passwd pw, *res = nullptr;
    std::vector<char> buf(16384);
    if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) == 0 && res) name = res->pw_name;
  }
  return users_.emplace(uid, name).first->second;
}

const std::string& NameMap::group(uint32_t gid) {
  auto it = groups_.find(gid);
  if (it != groups_.end()) return it->second;
  std::string name;
  if (!have_files_) {
    struct group gr, *res = nullptr;
    std::vector<char> buf(16384);
    if (getgrgid_r(gid, &gr, buf.data(), buf.size(), &res) == 0 && res) name = res->gr_name;
  }
  return groups_.emplace(gid, name).first->second;
}

}  // namespace planb
