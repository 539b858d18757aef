#include "delta.hpp"

#include <cstdio>
#include <fstream>

#include "chunker.hpp"
#include "content_writer.hpp"
#include "testutil.hpp"

using namespace planb;

static std::string patch(std::string_view base, std::string_view delta, size_t piece = SIZE_MAX) {
  std::string out;
  RsPatcher p(
      [&](uint64_t pos, char* buf, size_t len) -> Result<size_t> {
        if (pos >= base.size()) return size_t(0);
        size_t n = std::min<size_t>(len, base.size() - pos);
        std::memcpy(buf, base.data() + pos, n);
        return n;
      },
      [&](std::string_view d) -> Status {
        out.append(d);
        return {};
      });
  for (size_t i = 0; i < delta.size(); i += piece) {
    auto st = p.feed(delta.substr(i, piece), i + piece >= delta.size());
    EXPECT_TRUE(st.ok()) << st.error().message;
  }
  return out;
}

TEST(Delta, RsyncRoundTripOverFixturePairs) {
  std::string a = random_bytes(300000, 3);
  std::vector<std::pair<std::string, std::string>> pairs;
  std::string edited = a;
  edited.replace(1000, 50, "EDITED");
  pairs.push_back({a, edited});
  pairs.push_back({a, a + "appended"});
  pairs.push_back({a, a.substr(0, 1000)});
  pairs.push_back({a, ""});
  pairs.push_back({"", a.substr(0, 5000)});
  pairs.push_back({a, random_bytes(1000, 4) + a});
  for (auto& [base, target] : pairs) {
    auto sig = rs_signature(base);
    ASSERT_TRUE(sig.ok());
    auto d = rs_delta(*sig, target);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(patch(base, *d), target);
    EXPECT_EQ(patch(base, *d, 7), target);  // fed in small pieces
  }
  // A small edit costs little.
  auto sig = rs_signature(a);
  auto d = rs_delta(*sig, edited);
  EXPECT_LT(d->size(), 5000u);
}

TEST(Delta, BlockSizeGrowsWithFileSize) {
  size_t small = 0, big = 0;
  ASSERT_TRUE(rs_signature(std::string(10000, 'a'), &small).ok());
  ASSERT_TRUE(rs_signature(random_bytes(4 << 20, 5), &big).ok());
  EXPECT_LT(small, big);
}

TEST(Delta, ChunkMapDeltaAppliesWithLibrsyncAndRdiff) {
  TempDir t;
  ObjectStore objs(t.path);
  std::string a = random_bytes(6 << 20, 6);
  std::string b = a;
  std::string fresh = random_bytes(1 << 20, 7);
  b.replace(2 << 20, fresh.size(), fresh);  // 1 MiB rewritten in place
  b += "tail";
  auto store = [&](const std::string& s) {
    ContentWriter w(objs);
    EXPECT_TRUE(w.add(s).ok());
    auto d = w.finish();
    return d->id;
  };
  Hash ia = store(a), ib = store(b);
  ASSERT_TRUE(objs.commit().ok());
  auto ca = objs.expand(ia, a.size()), cb = objs.expand(ib, b.size());
  ASSERT_TRUE(ca.ok() && cb.ok());
  auto ops = plan_chunk_delta(*ca, *cb);
  uint64_t coarse = chunk_delta_size(ops);
  ASSERT_TRUE(refine_chunk_delta(objs, *ca, ops).ok());
  EXPECT_LT(chunk_delta_size(ops), coarse);
  std::string delta;
  ASSERT_TRUE(write_chunk_delta(objs, ops, [&](std::string_view d) -> Status {
                delta.append(d);
                return {};
              }).ok());
  EXPECT_EQ(delta.size(), chunk_delta_size(ops));
  EXPECT_LT(delta.size(), (1u << 20) + 16 * 1024);  // the 1 MiB changed, and little more
  EXPECT_EQ(patch(a, delta), b);

  // The same bytes through the reference tool, when installed.
  if (std::system("command -v rdiff >/dev/null 2>&1") == 0) {
    std::ofstream(t.path + "/base", std::ios::binary) << a;
    std::ofstream(t.path + "/delta", std::ios::binary) << delta;
    std::string cmd = "rdiff patch " + t.path + "/base " + t.path + "/delta " + t.path + "/out";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::ifstream in(t.path + "/out", std::ios::binary);
    std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(out, b);
  }
}

TEST(Delta, CorruptDeltaIsAnError) {
  std::string a = random_bytes(100000, 8);
  auto sig = rs_signature(a);
  auto d = rs_delta(*sig, a + "x");
  std::string bad = *d;
  bad[0] ^= 1;  // magic
  std::string out;
  RsPatcher p([&](uint64_t, char*, size_t) -> Result<size_t> { return size_t(0); },
              [&](std::string_view x) -> Status {
                out.append(x);
                return {};
              });
  EXPECT_FALSE(p.feed(bad, true).ok());
  RsPatcher q([&](uint64_t pos, char* buf, size_t len) -> Result<size_t> {
                size_t n = std::min<size_t>(len, a.size() - std::min<size_t>(pos, a.size()));
                std::memcpy(buf, a.data() + pos, n);
                return n;
              },
              [&](std::string_view) -> Status { return {}; });
  EXPECT_FALSE(q.feed(std::string_view(*d).substr(0, d->size() - 3), true).ok());  // truncated
}
