#include "timeparse.hpp"

#include <cstdlib>
#include <ctime>

#include "testutil.hpp"

using namespace planb;

class TimeParse : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("TZ", "UTC", 1);
    tzset();
  }
  // Wednesday 2026-11-25 10:30:00 UTC
  int64_t now = 1795602600;
  int64_t at(const char* s) {
    auto r = parse_when(s, now);
    EXPECT_TRUE(r.ok()) << s << ": " << (r.ok() ? "" : r.error().message);
    return r.ok() ? *r : 0;
  }
};

TEST_F(TimeParse, Words) {
  EXPECT_EQ(format_local_time(now), "2026-11-25 10:30:00");
  EXPECT_EQ(at("now"), now);
  EXPECT_EQ(format_local_time(at("yesterday")), "2026-11-24 23:59:59");
  EXPECT_EQ(format_local_time(at("Yesterday 14:00")), "2026-11-24 14:00:00");
  EXPECT_EQ(format_local_time(at("today")), "2026-11-25 23:59:59");
  EXPECT_EQ(format_local_time(at("last night")), "2026-11-25 06:00:00");
  EXPECT_EQ(at("2 days ago"), now - 2 * 86400);
  EXPECT_EQ(at("an hour ago"), now - 3600);
  EXPECT_EQ(at("3h ago"), now - 3 * 3600);
  EXPECT_EQ(format_local_time(at("last monday")), "2026-11-23 23:59:59");
  EXPECT_EQ(format_local_time(at("wednesday 9:00")), "2026-11-18 09:00:00");
  EXPECT_EQ(format_local_time(at("fri 2pm")), "2026-11-20 14:00:00");
}

TEST_F(TimeParse, Dates) {
  EXPECT_EQ(format_local_time(at("2026-11-24")), "2026-11-24 23:59:59");
  EXPECT_EQ(format_local_time(at("2026-11-24 13:05")), "2026-11-24 13:05:00");
  EXPECT_EQ(format_local_time(at("2026-11-24T13:05:07")), "2026-11-24 13:05:07");
  EXPECT_EQ(format_local_time(at("09:15")), "2026-11-25 09:15:00");
  EXPECT_EQ(format_local_time(at("23:00")), "2026-11-24 23:00:00");  // not in the future
  EXPECT_EQ(at("@1700000000"), 1700000000);
}

TEST_F(TimeParse, GarbageIsAUsageError) {
  for (const char* s : {"", "soonish", "2026-13-01", "yesterday at teatime", "25:00"}) {
    auto r = parse_when(s, now);
    ASSERT_FALSE(r.ok()) << s;
    EXPECT_EQ(r.error().code, kExitUsage);
  }
}
