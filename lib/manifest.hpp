// Snapshot manifest: the complete sorted list of a snapshot's entries.
// Format "PBMF" v1 (doc/formats.md): a header, then a zstd frame of records.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hash.hpp"
#include "result.hpp"

namespace planb {

enum class EntryType : uint8_t {
  File = 'f',
  Dir = 'd',
  Symlink = 'l',
  Hardlink = 'h',  // target = path of the first link in the snapshot
  Fifo = 'p',
  Socket = 's',
  Char = 'c',
  Block = 'b',
};

enum EntryFlags : uint8_t {
  kFlagSparse = 1,     // extents lists the data regions; the rest are holes
  kFlagChanging = 2,   // the file kept changing while it was read
  kFlagStale = 4,      // unreadable now: content is from the previous snapshot
  kFlagUnreadable = 8, // unreadable and never read: no content
};

struct Entry {
  std::string path;  // relative to the source root, "" is the root itself
  EntryType type = EntryType::File;
  uint8_t flags = 0;
  uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky (07777)
  uint32_t uid = 0, gid = 0;
  std::string uname, gname;
  uint64_t size = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  // Stat cache (not restored): a file whose size, mtime, ctime and inode are
  // unchanged is not read again.
  int64_t ctime_sec = 0;
  uint32_t ctime_nsec = 0;
  uint64_t ino = 0;
  uint64_t rdev = 0;
  std::string target;  // symlink target, or hardlink's first path
  Hash content;        // files: blob id (< 1 MiB) or chunk-index id
  std::vector<std::pair<uint64_t, uint64_t>> extents;     // sparse: (offset, length)
  std::vector<std::pair<std::string, std::string>> xattrs;  // sorted by name; ACLs included

  bool has_content() const { return type == EntryType::File && !(flags & kFlagUnreadable); }
  bool same_metadata(const Entry& o) const;  // everything restore would set
};

// Paths compare component by component ('/' sorts before every other byte),
// which is the order a sorted depth-first walk produces.
int path_compare(std::string_view a, std::string_view b);
inline bool path_less(std::string_view a, std::string_view b) { return path_compare(a, b) < 0; }
// Is `p` equal to `dir` or below it?
bool path_within(std::string_view p, std::string_view dir);

struct ManifestHeader {
  uint32_t version = 1;
  std::string host;
  uint64_t sequence = 0;
  int64_t created_ns = 0;  // Unix time, nanoseconds
  std::string source;      // what was captured (path or URL)
  Hash parent;             // manifest hash of sequence-1 (zero if none)
  uint64_t entries = 0;
  uint64_t total_bytes = 0;  // sum of file sizes
};

struct Manifest {
  ManifestHeader header;
  std::vector<Entry> entries;  // sorted by path_compare
  // Binary search; nullptr if absent.
  const Entry* find(std::string_view path) const;
  size_t lower_bound(std::string_view path) const;
};

std::string encode_manifest(const Manifest& m);
Result<Manifest> decode_manifest(std::string_view data, const std::string& what);
// The manifest's id, stored after the body: BLAKE2b-256 of the canonical
// form (header, then the uncompressed body), so it does not depend on the
// compressor. The last 32 bytes are a checksum of all bytes before them;
// decoding checks both, so any damage is detected.
Hash manifest_id(std::string_view data);

// An incremental bundle carries the manifest as edits of its parent's entry
// list ("PBMD" v1: keep n, drop n, new record); the receiver rebuilds it and
// checks the id.
std::string encode_manifest_diff(const Manifest& parent, const Manifest& m);
Result<Manifest> apply_manifest_diff(const Manifest& parent, std::string_view diff, const std::string& what);
// Two-step decoding, so entries can be consumed while later ones decode:
// manifest_begin checks the checksum, reads the header, sizes m.entries and
// returns the decompressed body; manifest_decode_entries fills m.entries in
// order, calling published(n) once the first n are complete.
Result<std::string> manifest_begin(std::string_view data, const std::string& what, Manifest& m);
Status manifest_decode_entries(std::string_view raw, Manifest& m, const std::string& what,
                               const std::function<void(size_t)>& published);
// Just the uncompressed header (fast listing).
Result<ManifestHeader> decode_manifest_header(std::string_view data, const std::string& what);

}  // namespace planb
