#include "store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace planb {

namespace {
constexpr const char* kMarker = "planb-store 1\n";

bool dir_is_empty(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (!d) return false;
  bool empty = true;
  while (auto* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") {
      empty = false;
      break;
    }
  }
  ::closedir(d);
  return empty;
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (!d) return out;
  while (auto* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != ".." && n[0] != '.') out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::string default_store_path() {
  const char* s = std::getenv("PLANB_STORE");
  return s && *s ? s : "/var/lib/planb/store";
}

Status validate_host_name(const std::string& host) {
  if (host.empty() || host.size() > 253 || host[0] == '.' || host[0] == '-')
    return make_error(kExitUsage, "failed to use host name '" + host + "': must be 1-253 characters of A-Z a-z 0-9 . _ - not starting with . or -");
  for (char c : host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
      return make_error(kExitUsage, "failed to use host name '" + host + "': only A-Z a-z 0-9 . _ - are allowed");
  }
  return {};
}

Result<Store> Store::open(const std::string& root, bool create) {
  Store s;
  s.root_ = root;
  std::string marker = join_path(root, "planb-store");
  struct stat st;
  if (::stat(root.c_str(), &st) != 0 || (S_ISDIR(st.st_mode) && dir_is_empty(root))) {
    if (!create)
      return make_error(kExitNotFound, "failed to open store " + root + ": no such store");
    PB_TRY(mkdir_p(root, 0700));
    PB_TRY(mkdir_p(join_path(root, "objects")));
    PB_TRY(mkdir_p(join_path(root, "hosts")));
    PB_TRY(mkdir_p(join_path(root, "tmp")));
    PB_TRY(write_file_atomic(marker, kMarker));
  } else if (!S_ISDIR(st.st_mode)) {
    return make_error(kExitNotFound, "failed to open store " + root + ": not a directory");
  }
  auto m = read_file(marker);
  if (!m.ok())
    return make_error(kExitNotFound, "failed to open store " + root + ": not a Plan B store (no planb-store marker)");
  if (*m != kMarker)
    return make_error(kExitCorrupt, "failed to open store " + root + ": unsupported store format '" +
                                        m->substr(0, m->find('\n')) + "'");
  s.objects_ = std::make_unique<ObjectStore>(root);
  return s;
}

std::string Store::host_dir(const std::string& host) const { return root_ + "/hosts/" + host; }

std::string Store::manifest_path(const std::string& host, uint64_t seq) const {
  char name[32];
  std::snprintf(name, sizeof name, "%010llu.pbm", static_cast<unsigned long long>(seq));
  return host_dir(host) + "/manifests/" + name;
}

std::vector<std::string> Store::hosts() const { return list_dir(root_ + "/hosts"); }

bool Store::has_host(const std::string& host) const {
  return validate_host_name(host).ok() && path_exists(host_dir(host) + "/refs/latest");
}

Status Store::require_host(const std::string& host) const {
  PB_TRY(validate_host_name(host));
  if (!has_host(host))
    return make_error(kExitNotFound, "failed to find host " + host + ": no snapshots in store " + root_);
  return {};
}

Result<std::optional<Ref>> Store::read_ref(const std::string& host, const std::string& name) const {
  std::string path = host_dir(host) + "/refs/" + name;
  if (!path_exists(path)) return std::optional<Ref>{};
  PB_ASSIGN(std::string s, read_file(path));
  Ref r;
  auto sp = s.find(' ');
  char* end = nullptr;
  r.sequence = std::strtoull(s.c_str(), &end, 10);
  std::optional<Hash> h;
  if (sp != std::string::npos && s.size() >= sp + 65) h = Hash::from_hex(std::string_view(s).substr(sp + 1, 64));
  if (end != s.c_str() + sp || !h || r.sequence == 0)
    return make_error(kExitCorrupt, "failed to read ref " + path + ": malformed");
  r.manifest = *h;
  return std::optional<Ref>(r);
}

Status Store::write_ref(const std::string& host, const std::string& name, const Ref& ref) {
  std::string dir = host_dir(host) + "/refs";
  PB_TRY(mkdir_p(dir));
  return write_file_atomic(dir + "/" + name, std::to_string(ref.sequence) + " " + ref.manifest.hex() + "\n");
}

Result<std::vector<uint64_t>> Store::sequences(const std::string& host, bool committed_only) const {
  uint64_t limit = UINT64_MAX;
  if (committed_only) {
    PB_ASSIGN(auto latest, read_ref(host, "latest"));
    if (!latest) return std::vector<uint64_t>{};
    limit = latest->sequence;
  }
  std::vector<uint64_t> out;
  for (auto& n : list_dir(host_dir(host) + "/manifests")) {
    if (n.size() != 14 || n.substr(10) != ".pbm") continue;
    uint64_t seq = std::strtoull(n.c_str(), nullptr, 10);
    if (seq > 0 && seq <= limit) out.push_back(seq);
  }
  return out;
}

Result<std::string> Store::read_manifest_bytes(const std::string& host, uint64_t seq) const {
  std::string path = manifest_path(host, seq);
  if (!path_exists(path))
    return make_error(kExitNotFound, "failed to find snapshot " + std::to_string(seq) + " of host " + host);
  return read_file(path);
}

Result<Manifest> Store::load_manifest(const std::string& host, uint64_t seq) const {
  PB_ASSIGN(std::string data, read_manifest_bytes(host, seq));
  PB_ASSIGN(Manifest m, decode_manifest(data, manifest_path(host, seq)));
  if (m.header.host != host || m.header.sequence != seq)
    return make_error(kExitCorrupt, "failed to read manifest " + manifest_path(host, seq) +
                                        ": header names host " + m.header.host + " snapshot " +
                                        std::to_string(m.header.sequence));
  return m;
}

Result<std::vector<SnapshotInfo>> Store::list_snapshots(const std::string& host) const {
  PB_ASSIGN(auto seqs, sequences(host));
  std::vector<SnapshotInfo> out;
  for (uint64_t s : seqs) {
    // The header is at the front: read a prefix, not the whole manifest.
    std::string path = manifest_path(host, s);
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st;
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0)
      return fail("failed to open manifest " + path + ": " + errstr(errno));
    std::string prefix(std::min<uint64_t>(st.st_size, 16384), '\0');
    PB_ASSIGN(size_t n, read_full(fd.get(), prefix.data(), prefix.size(), path));
    prefix.resize(n);
    auto h = decode_manifest_header(prefix, path);
    if (!h.ok()) {
      PB_ASSIGN(std::string data, read_manifest_bytes(host, s));
      PB_ASSIGN(h, decode_manifest_header(data, path));
    }
    out.push_back({s, *h, uint64_t(st.st_size)});
  }
  return out;
}

Result<FileLock> Store::lock_store(bool exclusive) const {
  return FileLock::acquire(root_ + "/lock", exclusive, true, "store " + root_);
}

Result<FileLock> Store::lock_host(const std::string& host) const {
  PB_TRY(mkdir_p(host_dir(host)));
  return FileLock::acquire(host_dir(host) + "/lock", true, false, "host " + host);
}

}  // namespace planb
