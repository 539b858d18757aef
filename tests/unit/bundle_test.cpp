#include "bundle.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <filesystem>
#include <fstream>

#include "capture.hpp"
#include "testutil.hpp"

using namespace planb;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  TempDir t;
  std::string src = t.path + "/src", a = t.path + "/a", s = t.path + "/s";
  Store appliance() { return std::move(Store::open(a, true)).value(); }
  void write(const std::string& rel, const std::string& data) {
    fs::create_directories(fs::path(src + "/" + rel).parent_path());
    std::ofstream(src + "/" + rel, std::ios::binary) << data;
  }
  uint64_t capture_now(Store& st) {
    CaptureOptions o;
    o.host = "h";
    o.source = src;
    o.progress = false;
    auto r = capture(st, o);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r->sequence;
  }
  std::string diff(Store& st, uint64_t to, bool full = false) {
    DiffOptions d;
    d.host = "h";
    d.to = to;
    d.full = full;
    d.progress = false;
    d.out = t.path + "/b" + std::to_string(to) + (full ? "f" : "") + ".pb";
    auto r = write_bundle(st, d);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return d.out;
  }
};

// A bundle with a valid header and manifest, plus whatever entries follow.
std::string craft(const std::string& dir, const std::string& good_bundle,
                  const std::function<void(struct archive*)>& extra) {
  // Copy the first two entries of a real bundle, then add extras.
  struct archive* in = archive_read_new();
  archive_read_support_filter_all(in);
  archive_read_support_format_all(in);
  archive_read_open_filename(in, good_bundle.c_str(), 65536);
  std::string out = dir + "/crafted.pb";
  struct archive* w = archive_write_new();
  archive_write_set_format_pax_restricted(w);
  archive_write_open_filename(w, out.c_str());
  struct archive_entry* e;
  for (int i = 0; i < 2 && archive_read_next_header(in, &e) == ARCHIVE_OK; ++i) {
    std::string data(archive_entry_size(e), '\0');
    archive_read_data(in, data.data(), data.size());
    archive_write_header(w, e);
    archive_write_data(w, data.data(), data.size());
  }
  extra(w);
  archive_write_close(w);
  archive_write_free(w);
  archive_read_free(in);
  return out;
}

void add_file(struct archive* w, const std::string& name, const std::string& data, int type = AE_IFREG) {
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_filetype(e, type);
  archive_entry_set_size(e, type == AE_IFREG ? la_int64_t(data.size()) : 0);
  if (type == AE_IFLNK) archive_entry_set_symlink(e, "/etc");
  archive_write_header(w, e);
  if (type == AE_IFREG) archive_write_data(w, data.data(), data.size());
  archive_entry_free(e);
}

}  // namespace

TEST(Bundle, FullThenIncrementalRebuildsTheSameSnapshots) {
  Fixture f;
  f.write("etc/a", "alpha\n");
  f.write("big", random_bytes(3 << 20, 11));
  Store a = f.appliance();
  f.capture_now(a);
  f.write("etc/a", "alpha changed\n");
  f.write("etc/new", "new\n");
  std::string big = random_bytes(3 << 20, 11);
  big.replace(1 << 20, 4096, std::string(4096, 'z'));
  f.write("big", big);
  f.capture_now(a);
  std::string b1 = f.diff(a, 1), b2 = f.diff(a, 2);
  EXPECT_LT(fs::file_size(b2), 300000u);  // a 4 KiB edit in a 3 MiB file: not the whole file
  Store s = std::move(Store::open(f.s, true)).value();
  auto r1 = apply_bundle(s, b1, "candidate");
  ASSERT_TRUE(r1.ok()) << r1.error().message;
  auto r2 = apply_bundle(s, b2, "candidate");
  ASSERT_TRUE(r2.ok()) << r2.error().message;
  EXPECT_GE(r2->deltas, 1u);
  for (uint64_t seq : {1, 2})
    EXPECT_EQ(*s.read_manifest_bytes("h", seq), *a.read_manifest_bytes("h", seq));
  EXPECT_EQ((*s.read_ref("h", "candidate"))->sequence, 2u);

  // Replay and gap are refused; nothing moves.
  auto again = apply_bundle(s, b2);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("replay"), std::string::npos);
  EXPECT_EQ((*s.read_ref("h", "latest"))->sequence, 2u);
}

TEST(Bundle, WrongParentAsksForAFullBundle) {
  Fixture f;
  f.write("x", "1");
  Store a = f.appliance();
  f.capture_now(a);
  f.write("x", "2");
  f.capture_now(a);
  f.write("x", "3");
  f.capture_now(a);
  Store s = std::move(Store::open(f.s, true)).value();
  ASSERT_TRUE(apply_bundle(s, f.diff(a, 1)).ok());
  auto gap = apply_bundle(s, f.diff(a, 3));  // against 2, which the server lacks
  ASSERT_FALSE(gap.ok());
  EXPECT_NE(gap.error().message.find("full bundle"), std::string::npos);
  auto full = apply_bundle(s, f.diff(a, 3, true));
  ASSERT_TRUE(full.ok()) << full.error().message;
  EXPECT_EQ((*s.read_ref("h", "latest"))->sequence, 3u);
}

TEST(Bundle, HostileEntriesAreRefusedAndNothingMoves) {
  Fixture f;
  f.write("x", "1");
  Store a = f.appliance();
  f.capture_now(a);
  std::string good = f.diff(a, 1);
  std::string data = "payload";
  std::string id = hash_bytes(data).hex();
  std::vector<std::pair<std::string, std::function<void(struct archive*)>>> cases = {
      {"traversal", [&](auto* w) { add_file(w, "../../etc/passwd", data); }},
      {"absolute", [&](auto* w) { add_file(w, "/etc/passwd", data); }},
      {"dotdot object", [&](auto* w) { add_file(w, "objects/../1", data); }},
      {"hex name", [&](auto* w) { add_file(w, "objects/" + id, data); }},
      {"symlink", [&](auto* w) { add_file(w, "objects/1", "", AE_IFLNK); }},
      {"device", [&](auto* w) { add_file(w, "objects/1", "", AE_IFCHR); }},
      {"wrong content", [&](auto* w) { add_file(w, "objects/1", "other"); }},
      {"not an index", [&](auto* w) { add_file(w, "index/1", data); }},
      {"delta without base", [&](auto* w) { add_file(w, "deltas/1", std::string(64, 'x') + "rs\x02\x36garbage"); }},
      {"short delta", [&](auto* w) { add_file(w, "deltas/1", "tiny"); }},
  };
  for (auto& [what, extra] : cases) {
    TempDir t2;
    Store s = std::move(Store::open(t2.path + "/s", true)).value();
    auto r = apply_bundle(s, craft(f.t.path, good, extra));
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.error().code, kExitCorrupt) << what << ": " << r.error().message;
    EXPECT_FALSE(s.has_host("h")) << what;
    EXPECT_FALSE(fs::exists(t2.path + "/etc/passwd"));
  }
}
