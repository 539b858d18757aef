#include "manifest.hpp"

#include <algorithm>

#include "testutil.hpp"

using namespace planb;

static Manifest sample() {
  Manifest m;
  m.header.host = "web1";
  m.header.sequence = 7;
  m.header.created_ns = 1764000000123456789;
  m.header.source = "/srv/web1";
  m.header.parent = hash_bytes("parent");
  Entry root;
  root.type = EntryType::Dir;
  root.mode = 0755;
  m.entries.push_back(root);
  Entry f;
  f.path = "a";
  f.type = EntryType::Dir;
  f.mode = 01777;
  m.entries.push_back(f);
  Entry g;
  g.path = "a/file with\nnewline\xff";
  g.type = EntryType::File;
  g.mode = 04755;
  g.uid = 1234;
  g.gid = 5678;
  g.uname = "u";
  g.gname = "";
  g.size = 100;
  g.mtime_sec = -5;
  g.mtime_nsec = 999999999;
  g.ctime_sec = 3;
  g.ino = 42;
  g.flags = kFlagSparse;
  g.extents = {{0, 10}, {50, 50}};
  g.content = hash_bytes("x");
  g.xattrs = {{"system.posix_acl_access", std::string("\x02\0\0\0", 4)}, {"user.k", "v"}};
  m.entries.push_back(g);
  Entry l;
  l.path = "a/link";
  l.type = EntryType::Symlink;
  l.target = "../target";
  m.entries.push_back(l);
  Entry h;
  h.path = "a/z";
  h.type = EntryType::Hardlink;
  h.target = "a/file with\nnewline\xff";
  m.entries.push_back(h);
  Entry d;
  d.path = "a.b";
  d.type = EntryType::Char;
  d.rdev = 0x0501;
  m.entries.push_back(d);
  return m;
}

TEST(Manifest, RoundTripKeepsEveryField) {
  Manifest m = sample();
  std::string data = encode_manifest(m);
  auto back = decode_manifest(data, "t");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->header.host, "web1");
  EXPECT_EQ(back->header.sequence, 7u);
  EXPECT_EQ(back->header.created_ns, m.header.created_ns);
  EXPECT_EQ(back->header.parent, m.header.parent);
  ASSERT_EQ(back->entries.size(), m.entries.size());
  for (size_t i = 0; i < m.entries.size(); ++i) {
    EXPECT_TRUE(back->entries[i].same_metadata(m.entries[i])) << m.entries[i].path;
    EXPECT_EQ(back->entries[i].ctime_sec, m.entries[i].ctime_sec);
    EXPECT_EQ(back->entries[i].ino, m.entries[i].ino);
    EXPECT_EQ(back->entries[i].flags, m.entries[i].flags);
  }
  EXPECT_EQ(encode_manifest(*back), data);  // deterministic
}

TEST(Manifest, DiffRebuildsTheSameManifest) {
  Manifest a = sample();
  Manifest b = a;
  b.header.sequence = 8;
  b.entries[2].size = 101;                      // changed
  b.entries.erase(b.entries.begin() + 3);       // deleted
  Entry n;
  n.path = "a/new";
  n.type = EntryType::Fifo;
  b.entries.insert(b.entries.begin() + 3, n);  // new
  std::string diff = encode_manifest_diff(a, b);
  EXPECT_LT(diff.size(), encode_manifest(b).size());
  auto r = apply_manifest_diff(a, diff, "t");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(manifest_id(encode_manifest(*r)), manifest_id(encode_manifest(b)));
  // Applied to another parent, the result differs (the receiver checks the id).
  Manifest other = a;
  other.entries[1].mode = 0700;
  auto wrong = apply_manifest_diff(other, diff, "t");
  ASSERT_TRUE(wrong.ok());
  EXPECT_NE(manifest_id(encode_manifest(*wrong)), manifest_id(encode_manifest(b)));
  // Damaged diffs are errors, not crashes.
  for (size_t i = 0; i < diff.size(); i += 3) {
    std::string bad = diff;
    bad[i] ^= 0x55;
    auto x = apply_manifest_diff(a, bad, "t");
    if (x.ok()) {
      EXPECT_NE(manifest_id(encode_manifest(*x)), manifest_id(encode_manifest(b))) << i;
    }
  }
}

TEST(Manifest, EveryFlippedByteIsDetected) {
  std::string data = encode_manifest(sample());
  for (size_t i = 0; i < data.size(); i += 7) {
    std::string bad = data;
    bad[i] ^= 0x10;
    auto r = decode_manifest(bad, "t");
    ASSERT_FALSE(r.ok()) << "flip at " << i;
    EXPECT_EQ(r.error().code, kExitCorrupt);
  }
  auto r = decode_manifest(data.substr(0, data.size() / 2), "t");
  EXPECT_FALSE(r.ok());
}

TEST(Manifest, PathOrderIsComponentWise) {
  std::vector<std::string> v = {"a.b", "a/x", "a", "", "a/x/y", "a-", "b", "a/x.y"};
  std::sort(v.begin(), v.end(), path_less);
  std::vector<std::string> want = {"", "a", "a/x", "a/x/y", "a/x.y", "a-", "a.b", "b"};
  EXPECT_EQ(v, want);
  EXPECT_TRUE(path_within("a/b", "a"));
  EXPECT_FALSE(path_within("ab", "a"));
  EXPECT_TRUE(path_within("x", ""));
}

TEST(Manifest, FindUsesBinarySearch) {
  Manifest m = sample();
  ASSERT_NE(m.find("a/link"), nullptr);
  EXPECT_EQ(m.find("a/link")->target, "../target");
  EXPECT_EQ(m.find("a/nope"), nullptr);
  EXPECT_EQ(m.find("")->type, EntryType::Dir);
}

TEST(Manifest, OutOfOrderEntriesAreRejected) {
  Manifest m = sample();
  std::swap(m.entries[1], m.entries[2]);
  auto r = decode_manifest(encode_manifest(m), "t");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("out of order"), std::string::npos);
}
