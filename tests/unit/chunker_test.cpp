#include "chunker.hpp"

#include <set>
#include <vector>

#include "hash.hpp"
#include "testutil.hpp"

using namespace planb;

static std::vector<std::string> chunks_of(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t n = cdc_cut(reinterpret_cast<const uint8_t*>(s.data() + pos), s.size() - pos);
    out.push_back(s.substr(pos, n));
    pos += n;
  }
  return out;
}

TEST(Chunker, SizesStayWithinBounds) {
  std::string s = random_bytes(8 << 20, 1);
  auto c = chunks_of(s);
  size_t total = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    total += c[i].size();
    EXPECT_LE(c[i].size(), kChunkMax);
    if (i + 1 < c.size()) {
      EXPECT_GE(c[i].size(), kChunkMin);
    }
  }
  EXPECT_EQ(total, s.size());
  double avg = double(s.size()) / double(c.size());
  EXPECT_GT(avg, kChunkAvg / 2.0);
  EXPECT_LT(avg, kChunkAvg * 2.0);
}

TEST(Chunker, InsertionOnlyDisturbsNearbyChunks) {
  std::string a = random_bytes(8 << 20, 2);
  std::string b = a;
  b.insert(3 << 20, "inserted bytes shift everything after them");
  auto ca = chunks_of(a), cb = chunks_of(b);
  std::set<std::string> sa(ca.begin(), ca.end());
  size_t shared = 0;
  for (auto& c : cb) shared += sa.count(c);
  EXPECT_GE(shared + 3, cb.size());  // all but the chunks around the insertion
}

TEST(Chunker, ZerosCutAtMaximum) {
  std::string z(1 << 20, '\0');
  auto c = chunks_of(z);
  EXPECT_EQ(c.front().size(), kChunkMax);
}
