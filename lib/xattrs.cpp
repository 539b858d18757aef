#include "xattrs.hpp"

#include <sys/xattr.h>

#include <algorithm>
#include <cerrno>

#include "fsutil.hpp"

namespace planb {

Result<XattrList> read_xattrs(const std::string& path, const std::string& display_in) {
  const std::string& display = display_in.empty() ? path : display_in;
  XattrList out;
  std::string names(1024, '\0');
  ssize_t n;
  for (;;) {
    n = ::llistxattr(path.c_str(), names.data(), names.size());
    if (n >= 0) break;
    if (errno == ERANGE) {
      names.resize(names.size() * 4);
      continue;
    }
    if (errno == ENOTSUP || errno == ENOSYS) return out;
    return fail("failed to list extended attributes of " + display + ": " + errstr(errno));
  }
  names.resize(n);
  size_t pos = 0;
  while (pos < names.size()) {
    std::string name = names.c_str() + pos;
    pos += name.size() + 1;
    if (name.empty()) continue;
    std::string val(256, '\0');
    for (;;) {
      ssize_t m = ::lgetxattr(path.c_str(), name.c_str(), val.data(), val.size());
      if (m >= 0) {
        val.resize(m);
        break;
      }
      if (errno == ERANGE) {
        ssize_t need = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
        val.resize(need > 0 ? need : val.size() * 4);
        continue;
      }
      if (errno == ENODATA) {
        val.clear();
        name.clear();
        break;
      }
      return fail("failed to read extended attribute " + name + " of " + display + ": " + errstr(errno));
    }
    if (!name.empty()) out.emplace_back(std::move(name), std::move(val));
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status write_xattrs(const std::string& path, const XattrList& xattrs) {
  // Exactly this set: remove what is there and not listed (an existing
  // directory's own, or an ACL inherited from a parent's default ACL).
  auto have = read_xattrs(path);
  if (have.ok()) {
    for (auto& [k, v] : *have) {
      bool keep = std::any_of(xattrs.begin(), xattrs.end(), [&](const auto& x) { return x.first == k; });
      if (!keep && ::lremovexattr(path.c_str(), k.c_str()) != 0 && errno != ENODATA && errno != ENOTSUP)
        return fail("failed to remove extended attribute " + k + " from " + path + ": " + errstr(errno));
    }
  }
  for (auto& [k, v] : xattrs) {
    if (::lsetxattr(path.c_str(), k.c_str(), v.data(), v.size(), 0) != 0)
      return fail("failed to set extended attribute " + k + " on " + path + ": " + errstr(errno));
  }
  return {};
}

}  // namespace planb
