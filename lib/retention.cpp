#include "retention.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <chrono>
#include <sstream>
#include <unordered_map>

#include "chunker.hpp"

namespace planb {

Result<uint64_t> parse_size(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  std::string unit = end ? std::string(end) : "";
  while (!unit.empty() && unit.back() == ' ') unit.pop_back();
  uint64_t mul = 1;
  if (unit.empty() || unit == "B") mul = 1;
  else if (unit == "K" || unit == "KiB" || unit == "k") mul = 1ull << 10;
  else if (unit == "M" || unit == "MiB") mul = 1ull << 20;
  else if (unit == "G" || unit == "GiB") mul = 1ull << 30;
  else if (unit == "T" || unit == "TiB") mul = 1ull << 40;
  else return make_error(kExitUsage, "failed to parse size '" + s + "': unknown unit (use K, M, G, T)");
  if (end == s.c_str() || v < 0) return make_error(kExitUsage, "failed to parse size '" + s + "'");
  return uint64_t(v * double(mul));
}

Result<uint64_t> parse_count(const std::string& s, const std::string& what) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 9 || std::stoull(s) < 1)
    return make_error(kExitUsage, "failed to parse " + what + " '" + s + "': must be a whole number of at least 1");
  return std::stoull(s);
}

Result<int64_t> parse_duration(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  std::string unit = end ? std::string(end) : "";
  int64_t mul;
  if (unit == "s") mul = 1;
  else if (unit == "m") mul = 60;
  else if (unit == "h") mul = 3600;
  else if (unit == "d" || unit.empty()) mul = 86400;
  else if (unit == "w") mul = 7 * 86400;
  else if (unit == "y") mul = 365 * 86400;
  else return make_error(kExitUsage, "failed to parse duration '" + s + "': unknown unit (use s, m, h, d, w, y)");
  if (end == s.c_str() || v < 0) return make_error(kExitUsage, "failed to parse duration '" + s + "'");
  return int64_t(v * double(mul));
}

Result<RetentionPolicy> load_retention(const Store& store) {
  RetentionPolicy p;
  std::string path = join_path(store.root(), "config");
  if (!path_exists(path)) return p;
  PB_ASSIGN(std::string text, read_file(path));
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    auto eq = line.find('=');
    auto trim = [](std::string x) {
      x.erase(0, x.find_first_not_of(" \t\""));
      x.erase(x.find_last_not_of(" \t\"") + 1);
      return x;
    };
    if (trim(line).empty()) continue;
    if (eq == std::string::npos)
      return make_error(kExitUsage, "failed to read " + path + ": line " + std::to_string(lineno) + ": expected key = value");
    std::string k = trim(line.substr(0, eq)), v = trim(line.substr(eq + 1));
    if (k == "keep-last") {
      PB_ASSIGN(p.keep_last, parse_count(v, path + ": keep-last"));
    } else if (k == "keep-within") {
      PB_ASSIGN(p.keep_within_sec, parse_duration(v));
    } else if (k == "max-size") {
      PB_ASSIGN(p.max_size, parse_size(v));
    } else {
      return make_error(kExitUsage, "failed to read " + path + ": line " + std::to_string(lineno) + ": unknown key '" + k + "'");
    }
  }
  return p;
}

namespace {

struct Snap {
  std::string host;
  uint64_t seq;
  int64_t created_ns;
  bool newest;
  bool remove = false;
  std::vector<uint32_t> objs;  // indexes into the object table
};

struct ObjTable {
  std::unordered_map<Hash, uint32_t, HashHasher> index;
  std::vector<Hash> ids;
  std::vector<uint32_t> refs;
  uint32_t intern(const Hash& h) {
    auto [it, fresh] = index.emplace(h, uint32_t(ids.size()));
    if (fresh) {
      ids.push_back(h);
      refs.push_back(0);
    }
    return it->second;
  }
};

Status collect_objects(Store& store, const Manifest& m, ObjTable& t, Snap& s,
                       std::unordered_map<Hash, std::vector<uint32_t>, HashHasher>& index_cache) {
  for (const Entry& e : m.entries) {
    if (!e.has_content()) continue;
    s.objs.push_back(t.intern(e.content));
    if (e.size < kChunkThreshold) continue;
    auto it = index_cache.find(e.content);
    if (it == index_cache.end()) {
      PB_ASSIGN(auto chunks, store.objects().expand(e.content, e.size));
      std::vector<uint32_t> v;
      for (auto& c : chunks) v.push_back(t.intern(c.id));
      it = index_cache.emplace(e.content, std::move(v)).first;
    }
    s.objs.insert(s.objs.end(), it->second.begin(), it->second.end());
  }
  std::sort(s.objs.begin(), s.objs.end());
  s.objs.erase(std::unique(s.objs.begin(), s.objs.end()), s.objs.end());
  return {};
}

}  // namespace

Result<PruneResult> prune(Store& store, const RetentionPolicy& policy, bool dry_run) {
  auto t0 = std::chrono::steady_clock::now();
  PB_ASSIGN(FileLock lock, store.lock_store(true));
  PruneResult res;
  int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();

  std::vector<Snap> snaps;
  ObjTable table;
  std::unordered_map<Hash, std::vector<uint32_t>, HashHasher> index_cache;
  for (auto& host : store.hosts()) {
    if (!store.has_host(host)) continue;
    // Manifests beyond the latest ref were left by a killed capture.
    PB_ASSIGN(auto all, store.sequences(host, false));
    PB_ASSIGN(auto committed, store.sequences(host, true));
    if (!dry_run)
      for (uint64_t s : all)
        if (!std::binary_search(committed.begin(), committed.end(), s))
          ::unlink(store.manifest_path(host, s).c_str());
    size_t n = committed.size();
    for (size_t i = 0; i < n; ++i) {
      PB_ASSIGN(Manifest m, store.load_manifest(host, committed[i]));
      Snap s{host, committed[i], m.header.created_ns, i + 1 == n};
      PB_TRY(collect_objects(store, m, table, s, index_cache));
      if (!s.newest) {
        if (policy.keep_last && n - i > *policy.keep_last) s.remove = true;
        if (policy.keep_within_sec && now_ns - s.created_ns > *policy.keep_within_sec * 1000000000LL) s.remove = true;
      }
      snaps.push_back(std::move(s));
    }
  }
  for (auto& s : snaps)
    if (!s.remove)
      for (uint32_t o : s.objs) ++table.refs[o];

  // Object sizes on disk.
  std::vector<uint64_t> sizes(table.ids.size(), 0);
  uint64_t live = 0;
  for (size_t i = 0; i < table.ids.size(); ++i) {
    struct stat st;
    if (::stat(store.objects().path_of(table.ids[i]).c_str(), &st) == 0) sizes[i] = st.st_size;
    if (table.refs[i]) live += sizes[i];
  }
  if (policy.max_size) {
    std::vector<Snap*> order;
    for (auto& s : snaps)
      if (!s.remove && !s.newest) order.push_back(&s);
    std::sort(order.begin(), order.end(), [](Snap* a, Snap* b) { return a->created_ns < b->created_ns; });
    for (Snap* s : order) {
      if (live <= *policy.max_size) break;
      s->remove = true;
      for (uint32_t o : s->objs)
        if (--table.refs[o] == 0) live -= sizes[o];
    }
  }

  for (auto& s : snaps) {
    if (!s.remove) continue;
    res.removed.emplace_back(s.host, s.seq);
    if (!dry_run && ::unlink(store.manifest_path(s.host, s.seq).c_str()) != 0 && errno != ENOENT)
      return fail("failed to remove snapshot " + std::to_string(s.seq) + " of host " + s.host + ": " + errstr(errno));
  }
  if (!dry_run) PB_TRY(sync_filesystem(store.root()));

  // Sweep: every object file not referenced by a kept snapshot (stray
  // names under objects/ are reported by --verify, not deleted).
  PB_TRY(store.objects().scan([&](const std::optional<Hash>& h, const std::string& path, uint64_t size) {
    if (!h) return;
    auto it = table.index.find(*h);
    if (it != table.index.end() && table.refs[it->second] > 0) {
      ++res.objects_kept;
      res.bytes_kept += size;
      return;
    }
    ++res.objects_removed;
    res.bytes_freed += size;
    if (!dry_run) ::unlink(path.c_str());
  }));
  if (!dry_run) {
    // No writer holds the store: every temp file is stale.
    std::string tmp = join_path(store.root(), "tmp");
    if (DIR* d = ::opendir(tmp.c_str())) {
      while (auto* e = ::readdir(d))
        if (e->d_name[0] == '.' && std::strstr(e->d_name, ".tmp.")) ::unlinkat(::dirfd(d), e->d_name, 0);
      ::closedir(d);
    }
    PB_TRY(sync_filesystem(store.root()));
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace planb
