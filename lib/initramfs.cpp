#include "initramfs.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

namespace planb {

void CpioWriter::entry(const std::string& name, uint32_t mode, const std::string& data) {
  char h[111];
  std::snprintf(h, sizeof h, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", ino_++, mode, 0u, 0u,
                (mode & 0170000) == 0040000 ? 2u : 1u, 0u, uint32_t(data.size()), 0u, 0u, 0u, 0u,
                uint32_t(name.size() + 1), 0u);
  out_.append(h, 110);
  out_ += name;
  out_ += '\0';
  out_.append((4 - out_.size() % 4) % 4, '\0');
  out_ += data;
  out_.append((4 - out_.size() % 4) % 4, '\0');
}

void CpioWriter::dir(const std::string& name, uint32_t mode) { entry(name, 0040000 | mode, ""); }
void CpioWriter::file(const std::string& name, const std::string& data, uint32_t mode) {
  entry(name, 0100000 | mode, data);
}
std::string CpioWriter::finish() {
  entry("TRAILER!!!", 0, "");
  out_.append((512 - out_.size() % 512) % 512, '\0');
  return std::move(out_);
}

namespace {

std::string mod_name(const std::string& path) {
  std::string b = path.substr(path.find_last_of('/') + 1);
  b = b.substr(0, b.find(".ko"));
  std::replace(b.begin(), b.end(), '-', '_');
  return b;
}

std::string norm(std::string n) {
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

}  // namespace

Result<std::vector<InitramfsUpdate>> add_initramfs_modules(GuestTree& tree, const std::vector<std::string>& modules) {
  std::vector<InitramfsUpdate> out;
  PB_ASSIGN(auto names, tree.list("/boot"));
  // The initramfs mirrors the guest's layout: usr-merged guests (/lib -> usr/lib)
  // get usr-merged initramfs images (initramfs-tools >= 0.140, dracut).
  PB_ASSIGN(auto lib_link, tree.readlink("/lib"));
  const std::string top = lib_link ? "usr/lib/modules" : "lib/modules";
  for (auto& n : names) {
    if (n.rfind("initrd.img-", 0) != 0 && n.rfind("initramfs-", 0) != 0) continue;
    std::string ver = n.rfind("initrd.img-", 0) == 0 ? n.substr(11) : n.substr(10);
    if (ver.size() > 4 && ver.ends_with(".img")) ver.resize(ver.size() - 4);
    std::string initrd = "/boot/" + n;
    PB_ASSIGN(auto link, tree.readlink(initrd));
    if (link) continue;  // a symlink to another one
    std::string mdir = "/lib/modules/" + ver;
    PB_ASSIGN(auto dep, tree.read(mdir + "/modules.dep"));
    if (!dep) continue;  // no modules for this kernel in the tree
    InitramfsUpdate u;
    u.initrd = initrd;
    u.version = ver;
    std::map<std::string, std::pair<std::string, std::vector<std::string>>> deps;  // name -> (path, deps)
    std::istringstream is(*dep);
    std::string line;
    while (std::getline(is, line)) {
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string path = line.substr(0, colon);
      std::vector<std::string> d;
      std::istringstream ds(line.substr(colon + 1));
      std::string w;
      while (ds >> w) d.push_back(w);
      deps[mod_name(path)] = {path, d};
    }
    std::set<std::string> builtin;
    PB_ASSIGN(auto bi, tree.read(mdir + "/modules.builtin"));
    if (bi) {
      std::istringstream bs(*bi);
      while (std::getline(bs, line))
        if (!line.empty()) builtin.insert(mod_name(line));
    }
    std::set<std::string> files;  // module paths relative to mdir
    std::vector<std::string> todo;
    for (auto& m : modules) {
      std::string k = norm(m);
      if (deps.count(k)) todo.push_back(k);
      else if (builtin.count(k)) u.builtin.push_back(m);
      else u.missing.push_back(m);
    }
    std::set<std::string> seen;
    while (!todo.empty()) {
      std::string k = todo.back();
      todo.pop_back();
      if (!seen.insert(k).second) continue;
      auto& [path, d] = deps[k];
      files.insert(path);
      u.added.push_back(k);
      for (auto& p : d) todo.push_back(mod_name(p));
    }
    std::sort(u.added.begin(), u.added.end());
    CpioWriter w;
    std::set<std::string> dirs;
    auto add_dirs = [&](const std::string& p) {
      for (size_t pos = p.find('/'); pos != std::string::npos; pos = p.find('/', pos + 1)) dirs.insert(p.substr(0, pos));
    };
    std::vector<std::pair<std::string, std::string>> payload;
    for (auto& f : files) {
      PB_ASSIGN(auto data, tree.read(mdir + "/" + f));
      if (!data) return fail("failed to add module " + f + " to " + initrd + ": " + mdir + "/" + f + " is missing in the guest");
      payload.emplace_back(top + "/" + ver + "/" + f, std::move(*data));
    }
    // The guest's full module index, so modprobe and udev find the new drivers.
    for (const char* idx : {"modules.dep", "modules.dep.bin", "modules.alias", "modules.alias.bin", "modules.softdep",
                            "modules.symbols", "modules.symbols.bin", "modules.builtin", "modules.builtin.bin",
                            "modules.builtin.alias.bin", "modules.builtin.modinfo", "modules.devname", "modules.order"}) {
      PB_ASSIGN(auto data, tree.read(mdir + "/" + idx));
      if (data) payload.emplace_back(top + "/" + ver + "/" + idx, std::move(*data));
    }
    for (auto& [p, d] : payload) add_dirs(p);
    for (auto& d : dirs) w.dir(d);
    for (auto& [p, d] : payload) w.file(p, d);
    std::string cpio = w.finish();
    PB_ASSIGN(auto old, tree.read(initrd));
    if (!old) continue;
    u.bytes_before = old->size();
    std::string data = std::move(*old);
    data.append((512 - data.size() % 512) % 512, '\0');  // the next archive starts aligned
    data += cpio;
    u.bytes_appended = data.size() - u.bytes_before;
    PB_TRY(tree.write(initrd, data));
    out.push_back(std::move(u));
  }
  return out;
}

}  // namespace planb
