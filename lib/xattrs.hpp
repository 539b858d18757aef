// Extended attributes (including POSIX ACLs, stored by the kernel as
// system.posix_acl_access / system.posix_acl_default) of a path, not followed.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "result.hpp"

namespace planb {

using XattrList = std::vector<std::pair<std::string, std::string>>;
// `display` names the file in errors (defaults to path).
Result<XattrList> read_xattrs(const std::string& path, const std::string& display = "");
// Makes the path's extended attributes exactly `xattrs` (extra ones removed).
Status write_xattrs(const std::string& path, const XattrList& xattrs);

}  // namespace planb
