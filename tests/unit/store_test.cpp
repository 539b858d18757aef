#include <sys/stat.h>

#include <fstream>

#include "content_writer.hpp"
#include "object_store.hpp"
#include "store.hpp"
#include "testutil.hpp"

using namespace planb;

TEST(ObjectStore, PutGetAndDedup) {
  TempDir t;
  ObjectStore o(t.path);
  std::string text(10000, 'a');
  Hash id = hash_bytes(text);
  auto first = o.put(id, text, ObjKind::Blob);
  ASSERT_TRUE(first.ok());
  EXPECT_GT(*first, 0u);
  EXPECT_LT(*first, 1000u);  // compressed
  EXPECT_EQ(*o.put(id, text, ObjKind::Blob), 0u);  // already staged
  ASSERT_TRUE(o.commit().ok());
  EXPECT_TRUE(o.has(id));
  EXPECT_EQ(*o.get(id), text);
  EXPECT_EQ(*o.put(id, text, ObjKind::Blob), 0u);  // already stored
}

TEST(ObjectStore, DamageIsDetected) {
  TempDir t;
  ObjectStore o(t.path);
  std::string data = random_bytes(5000, 9);
  Hash id = hash_bytes(data);
  ASSERT_TRUE(o.put(id, data, ObjKind::Blob).ok());
  ASSERT_TRUE(o.commit().ok());
  std::string p = o.path_of(id);
  chmod(p.c_str(), 0644);
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(100);
  f.put('X');
  f.close();
  auto r = o.get(id);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kExitCorrupt);
  EXPECT_NE(r.error().message.find("hash mismatch"), std::string::npos);
  Hash missing = hash_bytes("nope");
  EXPECT_EQ(o.get(missing).error().code, kExitCorrupt);
}

TEST(ContentWriter, SmallIsBlobBigIsChunked) {
  TempDir t;
  ObjectStore o(t.path);
  ContentWriter w(o);
  ASSERT_TRUE(w.add("hello").ok());
  auto d = w.finish();
  EXPECT_EQ(d->id, hash_bytes("hello"));
  std::string big = random_bytes(3 << 20, 10);
  ContentWriter w2(o);
  for (size_t i = 0; i < big.size(); i += 100000) ASSERT_TRUE(w2.add(std::string_view(big).substr(i, 100000)).ok());
  auto d2 = w2.finish();
  ASSERT_TRUE(o.commit().ok());
  EXPECT_EQ(d2->size, big.size());
  EXPECT_EQ(*o.kind_of(d2->id), ObjKind::Index);
  auto chunks = o.expand(d2->id, big.size());
  ASSERT_TRUE(chunks.ok());
  EXPECT_GT(chunks->size(), 10u);
  std::string back;
  for (auto& c : *chunks) back += *o.get(c.id);
  EXPECT_EQ(back, big);
}

TEST(Store, OpenCreatesOnlyWhenAsked) {
  TempDir t;
  std::string root = t.path + "/s";
  EXPECT_EQ(Store::open(root, false).error().code, kExitNotFound);
  ASSERT_TRUE(Store::open(root, true).ok());
  ASSERT_TRUE(Store::open(root, false).ok());
  // A non-empty directory that is not a store is refused, and left alone.
  std::string other = t.path + "/o";
  mkdir(other.c_str(), 0755);
  std::ofstream(other + "/precious") << "x";
  auto r = Store::open(other, true);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("not a Plan B store"), std::string::npos);
}

TEST(Store, HostNamesAreValidated) {
  EXPECT_TRUE(validate_host_name("web-1.example_a").ok());
  for (const char* bad : {"", "../x", "a/b", ".hidden", "-x", "sp ace"})
    EXPECT_FALSE(validate_host_name(bad).ok()) << bad;
}
