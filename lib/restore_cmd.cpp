#include "restore_cmd.hpp"

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <map>

#include "cli.hpp"
#include "json.hpp"
#include "progress.hpp"
#include "restore.hpp"
#include "timeparse.hpp"

namespace planb {

namespace {

// Printable form of a path for a terminal: C-style escapes for control and
// non-UTF-8 bytes; JSON output carries the exact bytes instead.
std::string shell_safe(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c == '\\') o += "\\\\";
    else if (c == '\n') o += "\\n";
    else if (c == '\t') o += "\\t";
    else if (c < 0x20 || c == 0x7f || c >= 0x80) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      o += b;
    } else o += char(c);
  }
  return o;
}
// UTF-8 sequences are printed as-is; only invalid bytes are escaped.
std::string display(const std::string& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = s[i];
    if (c >= 0x80) {
      if (size_t len = utf8_sequence(s, i)) {
        o.append(s, i, len);
        i += len - 1;
        continue;
      }
    }
    o += shell_safe(std::string(1, char(c)));
  }
  return o;
}

std::string mode_string(const Entry& e) {
  std::string s(10, '-');
  switch (e.type) {
    case EntryType::Dir: s[0] = 'd'; break;
    case EntryType::Symlink: s[0] = 'l'; break;
    case EntryType::Fifo: s[0] = 'p'; break;
    case EntryType::Socket: s[0] = 's'; break;
    case EntryType::Char: s[0] = 'c'; break;
    case EntryType::Block: s[0] = 'b'; break;
    case EntryType::Hardlink: s[0] = 'h'; break;
    default: break;
  }
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i)
    if (e.mode & (0400 >> i)) s[1 + i] = rwx[i];
  if (e.mode & 04000) s[3] = (e.mode & 0100) ? 's' : 'S';
  if (e.mode & 02000) s[6] = (e.mode & 010) ? 's' : 'S';
  if (e.mode & 01000) s[9] = (e.mode & 01) ? 't' : 'T';
  return s;
}

std::string entry_json(const Entry& e) {
  JsonObject j;
  j.add("path", "/" + e.path)
      .add("type", std::string(1, char(e.type)))
      .add("mode", uint64_t(e.mode))
      .add("uid", uint64_t(e.uid))
      .add("gid", uint64_t(e.gid))
      .add("user", e.uname)
      .add("group", e.gname)
      .add("size", e.size)
      .add("mtime", e.mtime_sec)
      .add("mtime_nsec", uint64_t(e.mtime_nsec));
  if (!e.target.empty()) j.add("target", e.target);
  if (e.has_content()) j.add("content", e.content.hex());
  if (e.flags) j.add("flags", uint64_t(e.flags));
  return j.str();
}

std::string entry_line(const Entry& e, bool full_path) {
  char b[256];
  std::string name = full_path ? "/" + e.path : e.path.substr(e.path.find_last_of('/') + 1);
  if (e.path.empty()) name = "/";
  std::snprintf(b, sizeof b, "%s %-8s %-8s %12llu %s ", mode_string(e).c_str(),
                (e.uname.empty() ? std::to_string(e.uid) : e.uname).c_str(),
                (e.gname.empty() ? std::to_string(e.gid) : e.gname).c_str(),
                static_cast<unsigned long long>(e.size), format_local_time(e.mtime_sec).c_str());
  std::string s = b + display(name);
  if (e.type == EntryType::Symlink) s += " -> " + display(e.target);
  if (e.type == EntryType::Hardlink) s += " => /" + display(e.target);
  return s;
}

Result<uint64_t> pick_snapshot(Store& store, const RestoreCmdOptions& o) {
  PB_ASSIGN(auto snaps, store.list_snapshots(o.host));
  if (snaps.empty()) return make_error(kExitNotFound, "failed to find host " + o.host + ": no snapshots");
  if (o.snapshot > 0) {
    for (auto& s : snaps)
      if (s.sequence == uint64_t(o.snapshot)) return s.sequence;
    return make_error(kExitNotFound, "failed to find snapshot " + std::to_string(o.snapshot) + " of host " + o.host);
  }
  if (o.at.empty()) return snaps.back().sequence;
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  PB_ASSIGN(int64_t when, parse_when(o.at, now));
  const SnapshotInfo* best = nullptr;
  for (auto& s : snaps)
    if (s.header.created_ns / 1000000000 <= when) best = &s;
  if (!best)
    return make_error(kExitNotFound, "failed to find a snapshot of host " + o.host + " at or before " +
                                         format_local_time(when) + " (oldest is " +
                                         format_local_time(snaps.front().header.created_ns / 1000000000) + ")");
  return best->sequence;
}

Status do_list(Store& store, const RestoreCmdOptions& o) {
  PB_ASSIGN(auto snaps, store.list_snapshots(o.host));
  std::vector<std::string> js;
  if (!o.json) std::printf("%-8s %-19s %10s %12s  %s\n", "SNAPSHOT", "TIME", "ENTRIES", "SIZE", "SOURCE");
  for (auto& s : snaps) {
    if (o.json) {
      js.push_back(JsonObject()
                       .add("sequence", s.sequence)
                       .add("time", format_local_time(s.header.created_ns / 1000000000))
                       .add("created_ns", s.header.created_ns)
                       .add("entries", s.header.entries)
                       .add("bytes", s.header.total_bytes)
                       .add("source", s.header.source)
                       .str());
    } else {
      std::printf("%-8llu %-19s %10llu %12s  %s\n", static_cast<unsigned long long>(s.sequence),
                  format_local_time(s.header.created_ns / 1000000000).c_str(),
                  static_cast<unsigned long long>(s.header.entries), human_bytes(s.header.total_bytes).c_str(),
                  display(s.header.source).c_str());
    }
  }
  if (o.json) std::printf("%s\n", json_array(js).c_str());
  return {};
}

Status do_ls(Store& store, const RestoreCmdOptions& o) {
  PB_ASSIGN(uint64_t seq, pick_snapshot(store, o));
  PB_ASSIGN(Manifest m, store.load_manifest(o.host, seq));
  std::vector<std::string> paths = o.paths.empty() ? std::vector<std::string>{""} : o.paths;
  std::vector<std::string> js;
  for (auto& raw : paths) {
    PB_ASSIGN(std::string p, normalize_path(raw));
    const Entry* e = m.find(p);
    if (!e) return make_error(kExitNotFound, "failed to find /" + p + " in snapshot " + std::to_string(seq) + " of host " + o.host);
    std::vector<const Entry*> show;
    if (e->type != EntryType::Dir) {
      show.push_back(e);
    } else {
      for (size_t i = m.lower_bound(p) + 1; i < m.entries.size() && path_within(m.entries[i].path, p); ++i) {
        const Entry& c = m.entries[i];
        std::string_view rest = std::string_view(c.path).substr(p.empty() ? 0 : p.size() + 1);
        if (o.recursive || rest.find('/') == std::string_view::npos) show.push_back(&c);
      }
    }
    for (const Entry* c : show) {
      if (o.json) js.push_back(entry_json(*c));
      else std::printf("%s\n", entry_line(*c, o.recursive || e->type != EntryType::Dir).c_str());
    }
  }
  if (o.json) std::printf("%s\n", JsonObject().add("snapshot", seq).add_raw("entries", json_array(js)).str().c_str());
  return {};
}

Status do_versions(Store& store, const RestoreCmdOptions& o) {
  if (o.paths.size() != 1) return make_error(kExitUsage, "failed to parse arguments: versions takes one PATH");
  PB_ASSIGN(std::string p, normalize_path(o.paths[0]));
  PB_ASSIGN(auto snaps, store.list_snapshots(o.host));
  struct Version {
    Entry e;
    std::vector<uint64_t> seqs;
    int64_t first_ns;
  };
  std::vector<Version> versions;
  for (auto& s : snaps) {
    PB_ASSIGN(Manifest m, store.load_manifest(o.host, s.sequence));
    const Entry* e = m.find(p);
    if (!e) continue;
    Entry x = *e;
    if (x.type == EntryType::Hardlink) {
      if (const Entry* t = m.find(x.target)) {
        std::string path = x.path;
        x = *t;
        x.path = path;
      }
    }
    bool same = false;
    for (auto& v : versions) {
      if (v.e.type == x.type && v.e.content == x.content && v.e.target == x.target && v.e.size == x.size &&
          v.e.mtime_sec == x.mtime_sec && v.e.mtime_nsec == x.mtime_nsec && v.e.mode == x.mode &&
          v.e.uid == x.uid && v.e.gid == x.gid) {
        v.seqs.push_back(s.sequence);
        same = true;
        break;
      }
    }
    if (!same) versions.push_back({x, {s.sequence}, s.header.created_ns});
  }
  if (versions.empty())
    return make_error(kExitNotFound, "failed to find /" + p + " in any snapshot of host " + o.host);
  std::vector<std::string> js;
  for (size_t i = 0; i < versions.size(); ++i) {
    auto& v = versions[i];
    std::string seqs;
    for (size_t k = 0; k < v.seqs.size(); ++k) {
      size_t j = k;
      while (j + 1 < v.seqs.size() && v.seqs[j + 1] == v.seqs[j] + 1) ++j;
      seqs += (seqs.empty() ? "" : ",") + std::to_string(v.seqs[k]) + (j > k ? "-" + std::to_string(v.seqs[j]) : "");
      k = j;
    }
    if (o.json) {
      std::vector<std::string> sj;
      for (auto s : v.seqs) sj.push_back(std::to_string(s));
      js.push_back(JsonObject()
                       .add("version", uint64_t(i + 1))
                       .add("first_seen", format_local_time(v.first_ns / 1000000000))
                       .add_raw("snapshots", json_array(sj))
                       .add_raw("entry", entry_json(v.e))
                       .str());
    } else {
      std::printf("version %zu  first seen %s  snapshots %s\n  %s%s\n", i + 1,
                  format_local_time(v.first_ns / 1000000000).c_str(), seqs.c_str(), entry_line(v.e, true).c_str(),
                  v.e.has_content() ? ("  " + v.e.content.hex().substr(0, 12)).c_str() : "");
    }
  }
  if (o.json) std::printf("%s\n", json_array(js).c_str());
  return {};
}

Status do_get(Store& store, const RestoreCmdOptions& o) {
  if (o.paths.empty()) return make_error(kExitUsage, "failed to parse arguments: get needs at least one PATH");
  if (o.to.empty() == !o.in_place)
    return make_error(kExitUsage, "failed to parse arguments: get needs exactly one of --to DIR or --in-place");
  PB_ASSIGN(uint64_t seq, pick_snapshot(store, o));
  PB_ASSIGN(Manifest m, store.load_manifest(o.host, seq));
  RestoreOptions ro;
  ro.dest = o.in_place ? m.header.source : o.to;
  ro.force = o.force;
  for (auto& raw : o.paths) {
    PB_ASSIGN(std::string p, normalize_path(raw));
    ro.paths.push_back(p);
  }
  PB_ASSIGN(RestoreResult r, restore_entries(store, m, ro));
  for (auto& w : r.warnings) print_warning("planb-restore", w);
  if (o.json) {
    std::printf("%s\n", JsonObject()
                            .add("host", o.host)
                            .add("snapshot", seq)
                            .add("to", ro.dest)
                            .add("entries", r.entries)
                            .add("files", r.files)
                            .add("bytes", r.bytes)
                            .add("warnings", uint64_t(r.warnings.size()))
                            .add("seconds", r.seconds)
                            .str().c_str());
  } else {
    std::printf("restored %llu entries (%llu files, %s) from snapshot %llu of %s to %s\n",
                static_cast<unsigned long long>(r.entries), static_cast<unsigned long long>(r.files),
                human_bytes(r.bytes).c_str(), static_cast<unsigned long long>(seq), o.host.c_str(),
                display(ro.dest).c_str());
  }
  if (!r.warnings.empty())
    return make_error(kExitPartial, "failed to restore everything exactly: " + std::to_string(r.warnings.size()) + " warnings");
  return {};
}

}  // namespace

Status restore_main(const RestoreCmdOptions& in) {
  RestoreCmdOptions o = in;
  if (o.store.empty()) o.store = default_store_path();
  if (o.host.empty()) return make_error(kExitUsage, "failed to parse options: --host is required");
  if (!o.at.empty() && o.snapshot > 0)
    return make_error(kExitUsage, "failed to parse options: --at and --snapshot are exclusive");
  PB_ASSIGN(Store store, Store::open(o.store, false));
  PB_TRY(store.require_host(o.host));
  PB_ASSIGN(FileLock lock, store.lock_store(false));
  if (o.action == "list") return do_list(store, o);
  if (o.action == "ls") return do_ls(store, o);
  if (o.action == "versions") return do_versions(store, o);
  if (o.action == "get") return do_get(store, o);
  return make_error(kExitUsage, "failed to parse arguments: unknown action '" + o.action + "'");
}

}  // namespace planb
