#include "overlay.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <regex>
#include <sstream>
#include <toml++/toml.h>

namespace planb {

// ---------------------------------------------------------------------------
// Parsing

namespace {

Error bad(const std::string& file, const std::string& why) {
  return make_error(kExitUsage, "failed to load overlay " + file + ": " + why);
}

const std::map<std::string, std::set<std::string>>& action_keys() {
  static const std::map<std::string, std::set<std::string>> k = {
      {"write_file", {"path", "content", "mode", "if_missing"}},
      {"replace_lines", {"path", "match", "replace"}},
      {"delete_lines", {"path", "match"}},
      {"append_lines", {"path", "lines"}},
      {"set_key", {"path", "key", "value", "separator"}},
      {"delete", {"paths"}},
      {"authorized_key", {"user", "key"}},
      {"fstab", {"root_device", "absent"}},
      {"enable_unit", {"unit"}},
      {"disable_unit", {"unit"}},
      {"guest_command", {"command"}},
      {"initramfs_modules", {"modules"}},
      {"bootloader", {"kind", "cmdline"}},
      {"kernel_cmdline", {"cmdline"}},
  };
  return k;
}

// Required keys beyond "type".
const std::map<std::string, std::vector<std::string>>& action_required() {
  static const std::map<std::string, std::vector<std::string>> k = {
      {"write_file", {"path", "content"}}, {"replace_lines", {"path", "match", "replace"}},
      {"delete_lines", {"path", "match"}}, {"append_lines", {"path", "lines"}},
      {"set_key", {"path", "key", "value"}}, {"delete", {"paths"}},
      {"authorized_key", {"key"}},         {"fstab", {}},
      {"enable_unit", {"unit"}},           {"disable_unit", {"unit"}},
      {"guest_command", {"command"}},      {"initramfs_modules", {"modules"}},
      {"bootloader", {"kind"}},            {"kernel_cmdline", {"cmdline"}},
  };
  return k;
}

Result<std::string> get_string(const toml::table& t, const char* key, const std::string& where) {
  auto* n = t.get(key);
  if (!n) return std::string();
  if (auto v = n->value<std::string>()) return *v;
  return fail(where + ": '" + key + "' must be a string");
}

Result<std::vector<std::string>> get_strings(const toml::table& t, const char* key, const std::string& where) {
  std::vector<std::string> out;
  auto* n = t.get(key);
  if (!n) return out;
  if (auto v = n->value<std::string>()) {
    out.push_back(*v);
    return out;
  }
  auto* arr = n->as_array();
  if (!arr) return fail(where + ": '" + key + "' must be a string or an array of strings");
  for (auto& el : *arr) {
    auto v = el.value<std::string>();
    if (!v) return fail(where + ": '" + key + "' must contain only strings");
    out.push_back(*v);
  }
  return out;
}

Status check_keys(const toml::table& t, const std::set<std::string>& allowed, const std::string& where) {
  for (auto& [k, v] : t)
    if (!allowed.count(std::string(k.str())))
      return fail(where + ": unknown key '" + std::string(k.str()) + "'");
  return {};
}

Status check_regex(const std::string& re, const std::string& where) {
  try {
    std::regex r(re, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return fail(where + ": bad regular expression '" + re + "': " + e.what());
  }
  return {};
}

Result<Overlay> parse_table(const toml::table& doc, const std::string& file) {
  Overlay o;
  o.file = file;
  PB_TRY(check_keys(doc, {"overlay", "when", "action"}, "top level"));
  auto* head = doc["overlay"].as_table();
  if (!head) return fail("missing [overlay] table");
  PB_TRY(check_keys(*head, {"format", "name", "description", "priority", "enabled"}, "[overlay]"));
  auto fmt = (*head)["format"].value<int64_t>();
  if (!fmt) return fail("[overlay]: 'format' (integer, 1) is required");
  if (*fmt != 1) return fail("[overlay]: unsupported format " + std::to_string(*fmt) + " (this planb reads format 1)");
  PB_ASSIGN(o.name, get_string(*head, "name", "[overlay]"));
  if (o.name.empty()) return fail("[overlay]: 'name' is required");
  PB_ASSIGN(o.description, get_string(*head, "description", "[overlay]"));
  if (auto* p = head->get("priority")) {
    auto v = p->value<int64_t>();
    if (!v) return fail("[overlay]: 'priority' must be an integer");
    o.priority = int(*v);
  }
  if (auto* p = head->get("enabled")) {
    auto v = p->value<bool>();
    if (!v) return fail("[overlay]: 'enabled' must be true or false");
    o.enabled = *v;
  }
  if (auto* w = doc["when"].as_table()) {
    PB_TRY(check_keys(*w, {"os_id", "version_id", "files", "not_files", "packages"}, "[when]"));
    PB_ASSIGN(o.when.os_id, get_strings(*w, "os_id", "[when]"));
    PB_ASSIGN(o.when.version_id, get_strings(*w, "version_id", "[when]"));
    PB_ASSIGN(o.when.files, get_strings(*w, "files", "[when]"));
    PB_ASSIGN(o.when.not_files, get_strings(*w, "not_files", "[when]"));
    PB_ASSIGN(o.when.packages, get_strings(*w, "packages", "[when]"));
  } else if (doc.contains("when")) {
    return fail("'when' must be a table");
  }
  auto* acts = doc["action"].as_array();
  if (doc.contains("action") && !acts) return fail("'action' must be an array of tables ([[action]])");
  if (!o.enabled) return o;
  if (!acts || acts->empty()) return fail("no [[action]] given");
  int i = 0;
  for (auto& node : *acts) {
    ++i;
    std::string where = "action " + std::to_string(i);
    auto* t = node.as_table();
    if (!t) return fail(where + ": must be a table");
    OverlayAction a;
    PB_ASSIGN(a.type, get_string(*t, "type", where));
    auto keys = action_keys().find(a.type);
    if (keys == action_keys().end())
      return fail(where + ": unknown action type '" + a.type + "'");
    where += " (" + a.type + ")";
    auto allowed = keys->second;
    allowed.insert("type");
    PB_TRY(check_keys(*t, allowed, where));
    for (auto& req : action_required().at(a.type))
      if (!t->contains(req)) return fail(where + ": '" + req + "' is required");
    PB_ASSIGN(a.path, get_string(*t, "path", where));
    if (t->contains("path") && (a.path.empty() || a.path[0] != '/'))
      return fail(where + ": 'path' must be an absolute path inside the guest");
    PB_ASSIGN(a.paths, get_strings(*t, "paths", where));
    for (auto& p : a.paths)
      if (p.empty() || p[0] != '/') return fail(where + ": 'paths' must be absolute paths inside the guest");
    PB_ASSIGN(a.content, get_string(*t, "content", where));
    if (auto* m = t->get("mode")) {
      auto s = m->value<std::string>();
      if (!s || s->empty() || s->find_first_not_of("01234567") != std::string::npos || s->size() > 4)
        return fail(where + ": 'mode' must be an octal string such as \"0644\"");
      a.mode = uint32_t(std::stoul(*s, nullptr, 8));
    }
    if (auto* m = t->get("if_missing")) {
      auto v = m->value<bool>();
      if (!v) return fail(where + ": 'if_missing' must be true or false");
      a.if_missing = *v;
    }
    PB_ASSIGN(a.match, get_string(*t, "match", where));
    if (t->contains("match")) PB_TRY(check_regex(a.match, where));
    PB_ASSIGN(a.replace, get_string(*t, "replace", where));
    PB_ASSIGN(a.lines, get_strings(*t, "lines", where));
    PB_ASSIGN(a.key, get_string(*t, "key", where));
    if (a.type == "set_key") {
      PB_ASSIGN(a.value, get_string(*t, "value", where));
      if (t->contains("separator")) {
        PB_ASSIGN(a.separator, get_string(*t, "separator", where));
      }
      if (a.key.empty() || a.separator.empty()) return fail(where + ": 'key' and 'separator' must not be empty");
    }
    if (a.type == "authorized_key") {
      a.key_text = a.key;
      a.key.clear();
      if (t->contains("user")) {
        PB_ASSIGN(a.user, get_string(*t, "user", where));
      }
    }
    PB_ASSIGN(a.root_device, get_string(*t, "root_device", where));
    if (t->contains("absent")) {
      PB_ASSIGN(a.absent, get_string(*t, "absent", where));
      if (a.absent != "comment" && a.absent != "nofail")
        return fail(where + ": 'absent' must be \"comment\" or \"nofail\"");
    }
    PB_ASSIGN(a.unit, get_string(*t, "unit", where));
    if (t->contains("unit") && (a.unit.empty() || a.unit.find('/') != std::string::npos))
      return fail(where + ": 'unit' must be a unit name");
    PB_ASSIGN(a.command, get_string(*t, "command", where));
    PB_ASSIGN(a.modules, get_strings(*t, "modules", where));
    for (auto& m : a.modules)
      if (m.empty() || m.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
                           std::string::npos)
        return fail(where + ": bad module name '" + m + "'");
    PB_ASSIGN(a.kind, get_string(*t, "kind", where));
    if (a.type == "bootloader" && a.kind != "grub-bios")
      return fail(where + ": unsupported bootloader kind '" + a.kind + "' (known: grub-bios)");
    PB_ASSIGN(a.cmdline, get_strings(*t, "cmdline", where));
    o.actions.push_back(std::move(a));
  }
  return o;
}

}  // namespace

Result<Overlay> parse_overlay(std::string_view text, const std::string& file) {
  toml::table doc;
  try {
    doc = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << e.description() << " (line " << e.source().begin.line << ", column " << e.source().begin.column << ")";
    return bad(file, os.str());
  }
  auto r = parse_table(doc, file);
  if (!r.ok()) return bad(file, r.error().message);
  return r;
}

Result<std::vector<Overlay>> load_overlays(const std::vector<std::string>& dirs) {
  std::map<std::string, Overlay> by_name;
  for (auto& dir : dirs) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) {
      if (errno == ENOENT) continue;
      return fail("failed to read overlay directory " + dir + ": " + errstr(errno));
    }
    std::vector<std::string> names;
    while (auto* de = ::readdir(d)) {
      std::string n = de->d_name;
      if (n.size() > 5 && n.compare(n.size() - 5, 5, ".toml") == 0 && n[0] != '.') names.push_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    std::set<std::string> here;
    for (auto& n : names) {
      std::string path = join_path(dir, n);
      PB_ASSIGN(std::string text, read_file(path));
      PB_ASSIGN(Overlay o, parse_overlay(text, path));
      if (!here.insert(o.name).second)
        return make_error(kExitUsage, "failed to load overlay " + path + ": another file in " + dir +
                                          " is also named '" + o.name + "'");
      by_name[o.name] = std::move(o);
    }
  }
  std::vector<Overlay> out;
  for (auto& [n, o] : by_name) out.push_back(std::move(o));
  std::stable_sort(out.begin(), out.end(), [](const Overlay& a, const Overlay& b) {
    return a.priority != b.priority ? a.priority < b.priority : a.name < b.name;
  });
  return out;
}

// ---------------------------------------------------------------------------
// The guest tree

namespace {

int openat2_in(int root, const std::string& path, int flags, mode_t mode = 0) {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = uint64_t(flags | O_CLOEXEC);
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  for (;;) {
    long fd = ::syscall(SYS_openat2, root, path.empty() ? "." : path.c_str(), &how, sizeof how);
    if (fd >= 0 || errno != EAGAIN) return int(fd);
  }
}

// "/etc//x/" -> "etc/x"
std::string rel(const std::string& p) {
  std::string out;
  size_t i = 0;
  while (i < p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    if (j > i) out += (out.empty() ? "" : "/") + p.substr(i, j - i);
    i = j + 1;
  }
  return out;
}

Status remove_at(int dirfd, const std::string& name, const std::string& what) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return {};
  if (S_ISDIR(st.st_mode)) {
    int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return fail("failed to open " + what + ": " + errstr(errno));
    DIR* d = ::fdopendir(fd);
    if (!d) {
      ::close(fd);
      return fail("failed to read " + what + ": " + errstr(errno));
    }
    std::vector<std::string> kids;
    while (auto* de = ::readdir(d))
      if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, "..")) kids.push_back(de->d_name);
    Status st2;
    for (auto& k : kids) {
      st2 = remove_at(::dirfd(d), k, what + "/" + k);
      if (!st2.ok()) break;
    }
    ::closedir(d);
    PB_TRY(st2);
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0) return fail("failed to remove " + what + ": " + errstr(errno));
    return {};
  }
  if (::unlinkat(dirfd, name.c_str(), 0) != 0) return fail("failed to remove " + what + ": " + errstr(errno));
  return {};
}

}  // namespace

Result<GuestTree> GuestTree::open(const std::string& root) {
  GuestTree t;
  t.root_ = root;
  t.fd_ = std::make_shared<Fd>(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!t.fd_->valid()) return fail("failed to open guest tree " + root + ": " + errstr(errno));
  return t;
}

bool GuestTree::exists(const std::string& path) const {
  Fd fd(openat2_in(fd_->get(), rel(path), O_PATH));
  return fd.valid();
}

bool GuestTree::is_dir(const std::string& path) const {
  Fd fd(openat2_in(fd_->get(), rel(path), O_PATH | O_DIRECTORY));
  return fd.valid();
}

Result<std::optional<std::string>> GuestTree::read(const std::string& path) const {
  Fd fd(openat2_in(fd_->get(), rel(path), O_RDONLY | O_NONBLOCK));
  if (!fd.valid()) {
    if (errno == ENOENT || errno == ENOTDIR) return std::optional<std::string>();
    return fail("failed to open " + path + " in the guest: " + errstr(errno));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return fail("failed to read " + path + " in the guest: not a regular file");
  std::string data(size_t(st.st_size), '\0');
  PB_ASSIGN(size_t n, read_full(fd.get(), data.data(), data.size(), path));
  data.resize(n);
  return std::optional<std::string>(std::move(data));
}

Result<Fd> GuestTree::open_parent(const std::string& path, std::string& leaf, bool create) const {
  std::string r = rel(path);
  if (r.empty()) return fail("failed to use " + path + " in the guest: not a file path");
  auto slash = r.find_last_of('/');
  std::string dir = slash == std::string::npos ? "" : r.substr(0, slash);
  leaf = slash == std::string::npos ? r : r.substr(slash + 1);
  if (leaf == "." || leaf == "..") return fail("failed to use " + path + " in the guest: bad name");
  if (create && !dir.empty() && !is_dir(dir)) PB_TRY(const_cast<GuestTree*>(this)->mkdirs("/" + dir));
  Fd d(openat2_in(fd_->get(), dir, O_RDONLY | O_DIRECTORY));
  if (!d.valid())
    return make_error(errno == ENOENT || errno == ENOTDIR ? kExitNotFound : kExitFailure,
                      "failed to open directory of " + path + " in the guest: " + errstr(errno));
  return d;
}

Status GuestTree::mkdirs(const std::string& path, uint32_t mode) {
  std::string r = rel(path), sofar;
  size_t i = 0;
  while (i < r.size()) {
    size_t j = r.find('/', i);
    if (j == std::string::npos) j = r.size();
    sofar = r.substr(0, j);
    if (!is_dir(sofar)) {
      std::string leaf;
      PB_ASSIGN(Fd d, open_parent(sofar, leaf, false));
      if (::mkdirat(d.get(), leaf.c_str(), mode) != 0 && errno != EEXIST)
        return fail("failed to create directory /" + sofar + " in the guest: " + errstr(errno));
      ::fchmodat(d.get(), leaf.c_str(), mode, 0);
    }
    i = j + 1;
  }
  return {};
}

Status GuestTree::write(const std::string& path, std::string_view data, uint32_t mode) {
  Fd fd(openat2_in(fd_->get(), rel(path), O_WRONLY | O_TRUNC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd.valid() && errno == ELOOP) {
    // A symlink: write through it, still inside the root.
    fd = Fd(openat2_in(fd_->get(), rel(path), O_WRONLY | O_TRUNC | O_NONBLOCK));
  }
  if (fd.valid()) {
    struct stat st;
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
      return fail("failed to write " + path + " in the guest: not a regular file");
    return write_all(fd.get(), data.data(), data.size(), path + " in the guest");
  }
  std::string leaf;
  PB_ASSIGN(Fd d, open_parent(path, leaf, true));
  ::unlinkat(d.get(), leaf.c_str(), 0);  // a dangling symlink
  fd = Fd(::openat(d.get(), leaf.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return fail("failed to create " + path + " in the guest: " + errstr(errno));
  if (::fchown(fd.get(), 0, 0) != 0 && ::geteuid() == 0)
    return fail("failed to set owner of " + path + " in the guest: " + errstr(errno));
  if (::fchmod(fd.get(), mode) != 0) return fail("failed to set mode of " + path + " in the guest: " + errstr(errno));
  return write_all(fd.get(), data.data(), data.size(), path + " in the guest");
}

Status GuestTree::chown(const std::string& path, uint32_t uid, uint32_t gid) {
  Fd fd(openat2_in(fd_->get(), rel(path), O_PATH | O_NOFOLLOW));
  if (!fd.valid()) return fail("failed to open " + path + " in the guest: " + errstr(errno));
  if (::fchownat(fd.get(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 && ::geteuid() == 0)
    return fail("failed to set owner of " + path + " in the guest: " + errstr(errno));
  return {};
}

Status GuestTree::chmod(const std::string& path, uint32_t mode) {
  Fd fd(openat2_in(fd_->get(), rel(path), O_RDONLY | O_NOFOLLOW | O_NONBLOCK));
  if (!fd.valid()) return fail("failed to open " + path + " in the guest: " + errstr(errno));
  if (::fchmod(fd.get(), mode) != 0) return fail("failed to set mode of " + path + " in the guest: " + errstr(errno));
  return {};
}

Result<bool> GuestTree::remove(const std::string& path) {
  std::string leaf;
  auto pd = open_parent(path, leaf, false);
  if (!pd.ok() && pd.error().code == kExitNotFound) return false;
  PB_ASSIGN(Fd d, std::move(pd));
  struct stat st;
  if (::fstatat(d.get(), leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
  PB_TRY(remove_at(d.get(), leaf, path));
  return true;
}

Status GuestTree::symlink(const std::string& target, const std::string& path) {
  std::string leaf;
  PB_ASSIGN(Fd d, open_parent(path, leaf, true));
  struct stat st;
  if (::fstatat(d.get(), leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(st.st_mode)) return fail("failed to create symlink " + path + " in the guest: a directory is in the way");
    if (::unlinkat(d.get(), leaf.c_str(), 0) != 0) return fail("failed to replace " + path + " in the guest: " + errstr(errno));
  }
  if (::symlinkat(target.c_str(), d.get(), leaf.c_str()) != 0)
    return fail("failed to create symlink " + path + " in the guest: " + errstr(errno));
  ::fchownat(d.get(), leaf.c_str(), 0, 0, AT_SYMLINK_NOFOLLOW);
  return {};
}

Result<std::optional<std::string>> GuestTree::readlink(const std::string& path) const {
  std::string leaf;
  auto d = open_parent(path, leaf, false);
  if (!d.ok()) return std::optional<std::string>();
  char buf[4096];
  ssize_t n = ::readlinkat(d->get(), leaf.c_str(), buf, sizeof buf);
  if (n < 0) return std::optional<std::string>();
  return std::optional<std::string>(std::string(buf, size_t(n)));
}

Result<std::vector<std::string>> GuestTree::list(const std::string& dir) const {
  std::vector<std::string> out;
  int fd = openat2_in(fd_->get(), rel(dir), O_RDONLY | O_DIRECTORY);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return out;
    return fail("failed to open directory " + dir + " in the guest: " + errstr(errno));
  }
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return fail("failed to read directory " + dir + " in the guest: " + errstr(errno));
  }
  while (auto* de = ::readdir(d))
    if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, "..")) out.push_back(de->d_name);
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// ---------------------------------------------------------------------------
// Facts and matching

namespace {

std::string unquote(std::string v) {
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) v = v.substr(1, v.size() - 2);
  return v;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find('\n', i);
    if (j == std::string::npos) j = s.size();
    out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (auto& l : lines) out += l + "\n";
  return out;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r"), b = s.find_last_not_of(" \t\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

}  // namespace

Result<GuestFacts> read_guest_facts(const GuestTree& tree) {
  GuestFacts f;
  PB_ASSIGN(auto osr, tree.read("/etc/os-release"));
  if (!osr) {
    PB_ASSIGN(osr, tree.read("/usr/lib/os-release"));
  }
  if (osr) {
    for (auto& line : split_lines(*osr)) {
      auto eq = line.find('=');
      if (eq == std::string::npos || line[0] == '#') continue;
      std::string k = trim(line.substr(0, eq)), v = unquote(trim(line.substr(eq + 1)));
      if (k == "ID") f.id = v;
      else if (k == "VERSION_ID") f.version_id = v;
      else if (k == "PRETTY_NAME") f.pretty_name = v;
      else if (k == "ID_LIKE") {
        std::istringstream is(v);
        std::string w;
        while (is >> w) f.id_like.push_back(w);
      }
    }
  }
  PB_ASSIGN(auto status, tree.read("/var/lib/dpkg/status"));
  if (status) {
    std::string pkg;
    for (auto& line : split_lines(*status)) {
      if (line.rfind("Package: ", 0) == 0) pkg = trim(line.substr(9));
      else if (line.rfind("Status: ", 0) == 0 && line.find(" installed") != std::string::npos &&
               line.find("not-installed") == std::string::npos && line.find("config-files") == std::string::npos)
        f.packages.insert(pkg);
    }
  }
  return f;
}

MatchResult match_overlay(const Overlay& o, const GuestFacts& f, const GuestTree& tree) {
  if (!o.enabled) return {false, "disabled"};
  auto& w = o.when;
  if (!w.os_id.empty()) {
    bool ok = false;
    for (auto& id : w.os_id) {
      ok = ok || id == f.id;
      for (auto& l : f.id_like) ok = ok || id == l;
    }
    if (!ok)
      return {false, "os-release ID '" + f.id + "'" + (f.id_like.empty() ? "" : " (ID_LIKE '" + join(f.id_like, " ") + "')") +
                         " is not one of " + join(w.os_id, ", ")};
  }
  if (!w.version_id.empty()) {
    bool ok = false;
    for (auto& g : w.version_id) ok = ok || ::fnmatch(g.c_str(), f.version_id.c_str(), 0) == 0;
    if (!ok) return {false, "VERSION_ID '" + f.version_id + "' matches none of " + join(w.version_id, ", ")};
  }
  for (auto& p : w.files)
    if (!tree.exists(p)) return {false, p + " does not exist"};
  for (auto& p : w.not_files)
    if (tree.exists(p)) return {false, p + " exists"};
  for (auto& p : w.packages)
    if (!f.packages.count(p)) return {false, "package " + p + " is not installed"};
  return {true, ""};
}

bool version_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit((unsigned char)a[i]) && std::isdigit((unsigned char)b[j])) {
      size_t i2 = i, j2 = j;
      while (i2 < a.size() && std::isdigit((unsigned char)a[i2])) ++i2;
      while (j2 < b.size() && std::isdigit((unsigned char)b[j2])) ++j2;
      std::string x = a.substr(i, i2 - i), y = b.substr(j, j2 - j);
      x.erase(0, std::min(x.find_first_not_of('0'), x.size()));
      y.erase(0, std::min(y.find_first_not_of('0'), y.size()));
      if (x.size() != y.size()) return x.size() < y.size();
      if (x != y) return x < y;
      i = i2;
      j = j2;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

// ---------------------------------------------------------------------------
// Actions

namespace {

Result<std::string> expand(const std::string& s, const std::map<std::string, std::string>& vars) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    size_t p = s.find("${", i);
    if (p == std::string::npos) {
      out += s.substr(i);
      break;
    }
    size_t e = s.find('}', p);
    if (e == std::string::npos) return fail("failed to expand '" + s + "': unterminated ${");
    out += s.substr(i, p - i);
    std::string name = s.substr(p + 2, e - p - 2);
    auto it = vars.find(name);
    if (it == vars.end()) return fail("failed to expand '" + s + "': unknown variable ${" + name + "}");
    out += it->second;
    i = e + 1;
  }
  return out;
}

std::string clip(const std::string& s, size_t n = 120) { return s.size() <= n ? s : s.substr(0, n - 3) + "..."; }

std::string describe(const std::optional<std::string>& content) {
  if (!content) return "absent";
  size_t lines = std::count(content->begin(), content->end(), '\n');
  return std::to_string(lines) + " lines, " + std::to_string(content->size()) + " bytes";
}

// Lines summary: up to 3, then "(+n more)".
std::string summary(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < 3; ++i) out += (i ? " | " : "") + clip(trim(v[i]), 80);
  if (v.size() > 3) out += " (+" + std::to_string(v.size() - 3) + " more)";
  return out;
}

bool is_pseudo_fs(const std::string& t) {
  static const std::set<std::string> p = {"proc", "sysfs", "tmpfs", "devpts", "devtmpfs", "securityfs", "cgroup",
                                          "cgroup2", "debugfs", "tracefs", "pstore", "efivarfs", "mqueue",
                                          "hugetlbfs", "fusectl", "configfs", "binfmt_misc", "bpf", "ramfs",
                                          "autofs", "rpc_pipefs", "overlay", "none"};
  return p.count(t) > 0;
}

bool is_device_spec(const std::string& s) {
  for (const char* p : {"UUID=", "LABEL=", "PARTUUID=", "PARTLABEL=", "ID=", "/dev/"})
    if (s.rfind(p, 0) == 0) return true;
  return false;
}

struct Applier {
  const Overlay& o;
  GuestTree& tree;
  const std::map<std::string, std::string>& vars;
  BootPlan& plan;
  std::vector<Change>& changes;

  void note(const OverlayAction& a, std::string file, std::string before, std::string after) {
    changes.push_back({o.name, a.type, std::move(file), std::move(before), std::move(after)});
  }
  Result<std::string> x(const std::string& s) { return expand(s, vars); }

  Status edit_lines(const OverlayAction& a, bool del) {
    PB_ASSIGN(auto content, tree.read(a.path));
    if (!content) {
      note(a, a.path, "absent", "unchanged (no file)");
      return {};
    }
    std::regex re(a.match, std::regex::ECMAScript);
    std::string repl;
    if (!del) {
      PB_ASSIGN(repl, x(a.replace));
    }
    std::vector<std::string> out, before, after;
    for (auto& line : split_lines(*content)) {
      if (!std::regex_search(line, re)) {
        out.push_back(line);
        continue;
      }
      before.push_back(line);
      if (del) continue;
      std::string nl = std::regex_replace(line, re, repl);
      // A replacement may hold several lines.
      for (auto& l : split_lines(nl + "\n")) out.push_back(l);
      after.push_back(nl);
    }
    if (before.empty()) {
      note(a, a.path, "no line matches /" + a.match + "/", "unchanged");
      return {};
    }
    std::string text = join_lines(out);
    if (text == *content) {
      note(a, a.path, summary(before), "unchanged (already as wanted)");
      return {};
    }
    PB_TRY(tree.write(a.path, text));
    note(a, a.path, std::to_string(before.size()) + " line(s): " + summary(before),
         del ? "deleted" : summary(after));
    return {};
  }

  Status write_file(const OverlayAction& a) {
    PB_ASSIGN(auto old, tree.read(a.path));
    if (old && a.if_missing) {
      note(a, a.path, describe(old), "kept (if_missing)");
      return {};
    }
    PB_ASSIGN(std::string text, x(a.content));
    PB_TRY(tree.write(a.path, text, a.mode));
    PB_TRY(tree.chmod(a.path, a.mode));
    char m[8];
    std::snprintf(m, sizeof m, "%04o", a.mode);
    note(a, a.path, describe(old), describe(text) + ", mode " + m);
    return {};
  }

  Status append_lines(const OverlayAction& a) {
    PB_ASSIGN(auto old, tree.read(a.path));
    std::string text = old.value_or("");
    if (!text.empty() && text.back() != '\n') text += '\n';
    auto have = split_lines(text);
    std::vector<std::string> added;
    for (auto& l0 : a.lines) {
      PB_ASSIGN(std::string l, x(l0));
      if (std::find(have.begin(), have.end(), l) != have.end()) continue;
      text += l + "\n";
      have.push_back(l);
      added.push_back(l);
    }
    if (added.empty()) {
      note(a, a.path, describe(old), "unchanged (lines present)");
      return {};
    }
    PB_TRY(tree.write(a.path, text));
    note(a, a.path, describe(old), "appended: " + summary(added));
    return {};
  }

  Status set_key(const OverlayAction& a) {
    PB_ASSIGN(auto old, tree.read(a.path));
    PB_ASSIGN(std::string value, x(a.value));
    std::string want = a.key + a.separator + value;
    auto lines = split_lines(old.value_or(""));
    auto key_of = [&](const std::string& line, bool& commented) -> std::string {
      std::string t = trim(line);
      commented = false;
      if (!t.empty() && t[0] == '#') {
        commented = true;
        t = trim(t.substr(1));
      }
      std::string sep = trim(a.separator).empty() ? " " : trim(a.separator);
      size_t p = sep == " " ? t.find_first_of(" \t") : t.find(sep);
      if (p == std::string::npos) return "";
      return trim(t.substr(0, p));
    };
    std::vector<std::string> before;
    int active = -1, commented_at = -1;
    for (size_t i = 0; i < lines.size(); ++i) {
      bool c;
      if (key_of(lines[i], c) != a.key) continue;
      if (c) {
        if (commented_at < 0) commented_at = int(i);
      } else {
        before.push_back(lines[i]);
        if (active < 0) {
          active = int(i);
          lines[i] = want;
        } else {
          lines[i] = "# " + lines[i] + "  # planb: superseded";
        }
      }
    }
    if (active < 0) {
      if (commented_at >= 0) lines.insert(lines.begin() + commented_at + 1, want);
      else lines.push_back(want);
    }
    std::string text = join_lines(lines);
    if (old && text == *old) {
      note(a, a.path, want, "unchanged");
      return {};
    }
    PB_TRY(tree.write(a.path, text));
    note(a, a.path, before.empty() ? (old ? "not set" : "absent") : summary(before), want);
    return {};
  }

  Status del(const OverlayAction& a) {
    for (auto& p0 : a.paths) {
      PB_ASSIGN(std::string p, x(p0));
      auto slash = p.find_last_of('/');
      std::string dir = p.substr(0, slash), pat = p.substr(slash + 1);
      std::vector<std::string> targets;
      if (pat.find_first_of("*?[") != std::string::npos) {
        PB_ASSIGN(auto names, tree.list(dir.empty() ? "/" : dir));
        for (auto& n : names)
          if (::fnmatch(pat.c_str(), n.c_str(), FNM_PERIOD) == 0) targets.push_back(dir + "/" + n);
      } else {
        targets.push_back(p);
      }
      bool any = false;
      for (auto& t : targets) {
        PB_ASSIGN(bool removed, tree.remove(t));
        if (removed) {
          note(a, t, "present", "deleted");
          any = true;
        }
      }
      if (!any) note(a, p, "absent", "unchanged");
    }
    return {};
  }

  Status authorized_key(const OverlayAction& a) {
    PB_ASSIGN(std::string key, x(a.key_text));
    key = trim(key);
    if (key.empty() || key.find('\n') != std::string::npos)
      return fail("failed to apply overlay " + o.name + ": authorized_key: the key must be one non-empty line");
    std::string home;
    uint32_t uid = 0, gid = 0;
    PB_ASSIGN(auto passwd, tree.read("/etc/passwd"));
    bool found = false;
    for (auto& line : split_lines(passwd.value_or(""))) {
      std::vector<std::string> f;
      std::stringstream ss(line);
      std::string part;
      while (std::getline(ss, part, ':')) f.push_back(part);
      if (f.size() >= 6 && f[0] == a.user) {
        uid = uint32_t(std::stoul(f[2]));
        gid = uint32_t(std::stoul(f[3]));
        home = f[5];
        found = true;
        break;
      }
    }
    if (!found) {
      if (a.user != "root")
        return fail("failed to apply overlay " + o.name + ": authorized_key: user " + a.user + " is not in the guest's /etc/passwd");
      home = "/root";
    }
    std::string dir = home + "/.ssh", file = dir + "/authorized_keys";
    bool had_dir = tree.is_dir(dir);
    PB_TRY(tree.mkdirs(dir, 0700));
    if (!had_dir) {
      PB_TRY(tree.chown(dir, uid, gid));
      PB_TRY(tree.chmod(dir, 0700));
    }
    PB_ASSIGN(auto old, tree.read(file));
    std::string text = old.value_or("");
    for (auto& l : split_lines(text))
      if (trim(l) == key) {
        note(a, file, describe(old), "unchanged (key present)");
        return {};
      }
    if (!text.empty() && text.back() != '\n') text += '\n';
    text += key + "\n";
    PB_TRY(tree.write(file, text, 0600));
    if (!old) PB_TRY(tree.chown(file, uid, gid));
    PB_TRY(tree.chmod(file, 0600));
    note(a, file, describe(old), "added key " + clip(key, 60));
    return {};
  }

  Status fstab(const OverlayAction& a) {
    PB_ASSIGN(auto old, tree.read("/etc/fstab"));
    std::string root_dev;
    PB_ASSIGN(root_dev, x(a.root_device.empty() ? "UUID=${root_uuid}" : a.root_device));
    std::vector<std::string> out;
    bool have_root = false;
    for (auto& line : split_lines(old.value_or(""))) {
      std::string t = trim(line);
      if (t.empty() || t[0] == '#') {
        out.push_back(line);
        continue;
      }
      std::istringstream is(t);
      std::vector<std::string> f;
      std::string w;
      while (is >> w) f.push_back(w);
      if (f.size() < 3) {
        out.push_back(line);
        continue;
      }
      if (f[1] == "/") {
        std::string before = line;
        f[0] = root_dev;
        std::string opts = f.size() > 3 ? f[3] : "defaults";
        std::string nl = f[0] + " / " + f[2] + " " + opts + " " + (f.size() > 4 ? f[4] : "0") + " " + (f.size() > 5 ? f[5] : "1");
        out.push_back(nl);
        have_root = true;
        note(a, "/etc/fstab", clip(before), nl);
        continue;
      }
      if (is_pseudo_fs(f[2]) || !(is_device_spec(f[0]) || f[2] == "swap")) {
        out.push_back(line);
        continue;
      }
      if (a.absent == "comment") {
        std::string why = f[2] == "swap" ? "swap device absent in the rescue image"
                                         : "disk absent in the rescue image (its files are in the root file system)";
        out.push_back("# planb: " + why + ": " + line);
        note(a, "/etc/fstab", clip(line), "commented out (" + f[1] + ": " + why + ")");
      } else {
        std::string opts = f.size() > 3 ? f[3] : "defaults";
        if (opts.find("nofail") == std::string::npos) opts += ",nofail,x-systemd.device-timeout=1s";
        std::string nl = f[0] + " " + f[1] + " " + f[2] + " " + opts + " " + (f.size() > 4 ? f[4] : "0") + " " +
                         (f.size() > 5 ? f[5] : "0");
        out.push_back(nl);
        note(a, "/etc/fstab", clip(line), nl);
      }
    }
    if (!have_root) {
      std::string nl = root_dev + " / ext4 errors=remount-ro 0 1";
      out.push_back(nl);
      note(a, "/etc/fstab", old ? "no root entry" : "absent", nl);
    }
    PB_TRY(tree.write("/etc/fstab", join_lines(out)));
    return {};
  }

  // Where a unit file lives in the guest ("" if nowhere); templates by name@.
  std::string unit_file(const std::string& unit) {
    std::string name = unit;
    auto at = unit.find('@'), dot = unit.find_last_of('.');
    for (int pass = 0; pass < 2; ++pass) {
      for (const char* d : {"/etc/systemd/system/", "/lib/systemd/system/", "/usr/lib/systemd/system/"}) {
        std::string p = d + name;
        if (tree.exists(p)) return p;
      }
      if (at == std::string::npos || dot == std::string::npos || dot < at) break;
      name = unit.substr(0, at + 1) + unit.substr(dot);
    }
    return "";
  }

  Status enable_unit(const OverlayAction& a, const std::string& unit, int depth) {
    std::string file = unit_file(unit);
    if (file.empty()) {
      note(a, unit, "no unit file in the guest", "unchanged");
      return {};
    }
    PB_ASSIGN(auto text, tree.read(file));
    bool install = false;
    std::vector<std::string> wanted, required, also, alias;
    for (auto& line : split_lines(text.value_or(""))) {
      std::string t = trim(line);
      if (!t.empty() && t[0] == '[') install = t == "[Install]";
      if (!install) continue;
      auto eq = t.find('=');
      if (eq == std::string::npos) continue;
      std::string k = trim(t.substr(0, eq));
      std::istringstream is(t.substr(eq + 1));
      std::string w;
      while (is >> w) {
        if (k == "WantedBy") wanted.push_back(w);
        else if (k == "RequiredBy") required.push_back(w);
        else if (k == "Also") also.push_back(w);
        else if (k == "Alias") alias.push_back(w);
      }
    }
    std::string target = file.rfind("/etc/", 0) == 0 ? file : file;
    if (wanted.empty() && required.empty() && alias.empty() && also.empty()) {
      note(a, file, "no [Install] section", "unchanged (static unit)");
      return {};
    }
    auto link = [&](const std::string& dir, const std::string& name) -> Status {
      std::string p = "/etc/systemd/system/" + dir + name;
      PB_ASSIGN(auto cur, tree.readlink(p));
      if (cur && *cur == target) {
        note(a, p, "-> " + target, "unchanged");
        return {};
      }
      PB_TRY(tree.symlink(target, p));
      note(a, p, cur ? "-> " + *cur : "absent", "-> " + target);
      return {};
    };
    for (auto& w : wanted) PB_TRY(link(w + ".wants/", unit));
    for (auto& w : required) PB_TRY(link(w + ".requires/", unit));
    for (auto& al : alias) PB_TRY(link("", al));
    if (depth < 4)
      for (auto& u : also) PB_TRY(enable_unit(a, u, depth + 1));
    return {};
  }

  Status disable_unit(const OverlayAction& a) {
    PB_ASSIGN(auto dirs, tree.list("/etc/systemd/system"));
    bool any = false;
    for (auto& d : dirs) {
      std::string base = "/etc/systemd/system/" + d;
      bool wants = d.size() > 6 && (d.ends_with(".wants") || d.ends_with(".requires"));
      if (!wants) continue;
      std::string p = base + "/" + a.unit;
      PB_ASSIGN(auto cur, tree.readlink(p));
      if (!cur) continue;
      PB_TRY(tree.remove(p));
      note(a, p, "-> " + *cur, "removed");
      any = true;
    }
    if (!any) note(a, a.unit, "not enabled", "unchanged");
    return {};
  }

  Status run(const OverlayAction& a) {
    if (a.type == "write_file") return write_file(a);
    if (a.type == "replace_lines") return edit_lines(a, false);
    if (a.type == "delete_lines") return edit_lines(a, true);
    if (a.type == "append_lines") return append_lines(a);
    if (a.type == "set_key") return set_key(a);
    if (a.type == "delete") return del(a);
    if (a.type == "authorized_key") return authorized_key(a);
    if (a.type == "fstab") return fstab(a);
    if (a.type == "enable_unit") return enable_unit(a, a.unit, 0);
    if (a.type == "disable_unit") return disable_unit(a);
    if (a.type == "guest_command") {
      PB_ASSIGN(std::string c, x(a.command));
      plan.guest_commands.emplace_back(o.name, c);
      note(a, "(guest)", "", "queued for the guest session: " + clip(c));
      return {};
    }
    if (a.type == "initramfs_modules") {
      for (auto& m : a.modules)
        if (std::find(plan.initramfs_modules.begin(), plan.initramfs_modules.end(), m) == plan.initramfs_modules.end())
          plan.initramfs_modules.push_back(m);
      note(a, "/boot/initrd.img-*", "", "modules to add: " + join(a.modules, " "));
      return {};
    }
    if (a.type == "bootloader" || a.type == "kernel_cmdline") {
      if (a.type == "bootloader") plan.bootloader = a.kind;
      std::vector<std::string> args;
      for (auto& c : a.cmdline) {
        PB_ASSIGN(std::string v, x(c));
        args.push_back(v);
        if (std::find(plan.cmdline.begin(), plan.cmdline.end(), v) == plan.cmdline.end()) plan.cmdline.push_back(v);
      }
      note(a, "/boot/grub/grub.cfg", "", (a.type == "bootloader" ? a.kind + "; " : "") + "kernel arguments: " + join(args, " "));
      return {};
    }
    return fail("failed to apply overlay " + o.name + ": unknown action " + a.type);
  }
};

}  // namespace

Status apply_overlay(const Overlay& o, GuestTree& tree, const std::map<std::string, std::string>& vars,
                     BootPlan& plan, std::vector<Change>& changes) {
  Applier ap{o, tree, vars, plan, changes};
  for (auto& a : o.actions) {
    auto st = ap.run(a);
    if (!st.ok()) {
      if (st.error().message.rfind("failed to apply overlay", 0) == 0) return st;
      return make_error(st.error().code, "failed to apply overlay " + o.name + " (" + o.file + "), action " + a.type +
                                             ": " + st.error().message);
    }
  }
  return {};
}

}  // namespace planb
