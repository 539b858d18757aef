// The server catalog: schema creation and version, each table's API,
// transactions (rollback on error), refusal of a newer schema, concurrent
// opening.
#include <sqlite3.h>

#include <thread>

#include "catalog.hpp"
#include "testutil.hpp"

using namespace planb;

namespace {

Catalog open_cat(const std::string& path) {
  auto c = Catalog::open(path);
  if (!c.ok()) ADD_FAILURE() << c.error().message;
  return std::move(c).value();
}

std::string pragma(Catalog& c, const char* sql) {
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(c.handle(), sql, -1, &st, nullptr);
  std::string v;
  if (sqlite3_step(st) == SQLITE_ROW) v = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return v;
}

}  // namespace

TEST(Catalog, CreatesTheCurrentSchemaVersionInWalModeWithForeignKeys) {
  TempDir d;
  auto c = open_cat(d.path + "/catalog.db");
  EXPECT_EQ(c.schema_version(), kCatalogVersion);
  EXPECT_EQ(pragma(c, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(pragma(c, "PRAGMA foreign_keys"), "1");
  EXPECT_EQ(pragma(c, "SELECT version FROM schema_version"), std::to_string(kCatalogVersion));
  // Re-opening does not migrate again.
  auto c2 = open_cat(d.path + "/catalog.db");
  EXPECT_EQ(pragma(c2, "SELECT count(*) FROM schema_version"), "1");
}

TEST(Catalog, RefusesANewerSchema) {
  TempDir d;
  {
    auto c = open_cat(d.path + "/catalog.db");
    ASSERT_EQ(sqlite3_exec(c.handle(), "UPDATE schema_version SET version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  }
  auto c = Catalog::open(d.path + "/catalog.db");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, kExitCorrupt);
  EXPECT_NE(c.error().message.find("schema version 99"), std::string::npos);
}

TEST(Catalog, SnapshotsUpsertAndLatest) {
  TempDir d;
  auto c = open_cat(d.path + "/c.db");
  SnapshotRow s;
  s.host = "web1";
  s.sequence = 1;
  s.manifest = "aa";
  s.bundle = "web1-1.sealed";
  s.bytes = 100;
  ASSERT_TRUE(c.record_snapshot(s).ok());
  s.sequence = 2;
  s.manifest = "bb";
  s.parent = "aa";
  ASSERT_TRUE(c.record_snapshot(s).ok());
  s.bytes = 200;  // the same (host, sequence) again: replaced, not duplicated
  ASSERT_TRUE(c.record_snapshot(s).ok());
  auto all = c.snapshots("web1");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  auto latest = c.latest_snapshot("web1");
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ((*latest)->sequence, 2u);
  EXPECT_EQ((*latest)->bytes, 200u);
  EXPECT_EQ((*latest)->parent, "aa");
  EXPECT_GT((*latest)->applied_at, 0);
  auto none = c.latest_snapshot("web2");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto one = c.snapshot("web1", 1);
  ASSERT_TRUE(one.ok() && one->has_value());
  EXPECT_EQ((*one)->manifest, "aa");
}

TEST(Catalog, TicketsOpenCloseAndRefusals) {
  TempDir d;
  auto c = open_cat(d.path + "/c.db");
  auto id = c.record_refusal("web1", 3, kTicketGap, "web1-3.sealed", "a \"quoted\" reason", kExitRefused, "abcd");
  ASSERT_TRUE(id.ok()) << id.error().message;
  TicketRow t;
  t.host = "web1";
  t.kind = kTicketFullBundleNeeded;
  t.summary = "parent mismatch";
  auto id2 = c.open_ticket(t);
  ASSERT_TRUE(id2.ok());
  t.host = "web2";
  t.kind = "other";
  ASSERT_TRUE(c.open_ticket(t).ok());
  auto open = c.open_tickets("web1");
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(open->size(), 2u);
  EXPECT_EQ((*open)[0].kind, "gap");
  EXPECT_NE((*open)[0].details_json.find("web1-3.sealed"), std::string::npos);
  EXPECT_NE((*open)[0].details_json.find("\\\"quoted\\\""), std::string::npos);
  EXPECT_EQ(c.open_tickets("")->size(), 3u);
  ASSERT_TRUE(c.close_ticket(*id).ok());
  EXPECT_EQ(c.open_tickets("web1")->size(), 1u);
  auto closed = c.tickets("web1");
  ASSERT_TRUE(closed.ok());
  EXPECT_EQ((*closed)[0].status, "closed");
  EXPECT_GT((*closed)[0].closed_at, 0);
  auto n = c.close_tickets("web1", {kTicketFullBundleNeeded, kTicketGap});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1);
  EXPECT_EQ(c.close_ticket(999).error().code, kExitNotFound);
  // Details must be JSON.
  t.details_json = "{not json";
  EXPECT_FALSE(c.open_ticket(t).ok());
}

TEST(Catalog, ImagesBootTestsGoodImageAndForeignKeys) {
  TempDir d;
  auto c = open_cat(d.path + "/c.db");
  ImageRow img;
  img.host = "web1";
  img.sequence = 1;
  img.path = "/srv/images/web1/1/disk.qcow2";
  img.bytes = 1 << 20;
  auto i1 = c.add_image(img);
  ASSERT_TRUE(i1.ok());
  img.sequence = 2;
  auto i2 = c.add_image(img);
  ASSERT_TRUE(i2.ok());
  EXPECT_FALSE(c.good_image("web1")->has_value());
  ASSERT_TRUE(c.set_image_state(*i1, "good").ok());
  ASSERT_TRUE(c.set_image_state(*i2, "failed").ok());
  auto good = c.good_image("web1");
  ASSERT_TRUE(good.ok() && good->has_value());
  EXPECT_EQ((*good)->id, *i1);
  EXPECT_FALSE(c.set_image_state(*i1, "bogus").ok());  // CHECK constraint
  EXPECT_EQ(c.set_image_state(12345, "good").error().code, kExitNotFound);

  BootTestRow b;
  b.image_id = *i2;
  b.passed = false;
  b.seconds = 12.5;
  b.checks_json = R"([{"type":"tcp","port":22,"passed":false}])";
  auto bt = c.record_boot_test(b);
  ASSERT_TRUE(bt.ok()) << bt.error().message;
  auto tests = c.boot_tests(*i2);
  ASSERT_TRUE(tests.ok());
  ASSERT_EQ(tests->size(), 1u);
  EXPECT_DOUBLE_EQ((*tests)[0].seconds, 12.5);
  EXPECT_EQ((*tests)[0].checks_json, b.checks_json);
  // Foreign keys are on: a boot test of a missing image is refused.
  b.image_id = 777;
  EXPECT_FALSE(c.record_boot_test(b).ok());
  TicketRow t;
  t.host = "web1";
  t.kind = kTicketBootTestFailed;
  t.summary = "boot test failed";
  t.image_id = *i2;
  ASSERT_TRUE(c.open_ticket(t).ok());
  t.image_id = 778;
  EXPECT_FALSE(c.open_ticket(t).ok());
}

TEST(Catalog, TransactionRollsBackEveryWriteOnError) {
  TempDir d;
  auto c = open_cat(d.path + "/c.db");
  SnapshotRow s;
  s.host = "web1";
  s.sequence = 1;
  s.manifest = "aa";
  Status st = c.transaction([&]() -> Status {
    PB_TRY(c.record_snapshot(s));
    TicketRow t;
    t.host = "web1";
    t.kind = "x";
    PB_TRY(c.open_ticket(t));
    return fail("failed to do the third thing: on purpose");
  });
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(c.snapshots("web1")->empty());
  EXPECT_TRUE(c.open_tickets("web1")->empty());
  // And commits when ok.
  ASSERT_TRUE(c.transaction([&]() -> Status { return c.record_snapshot(s); }).ok());
  EXPECT_EQ(c.snapshots("web1")->size(), 1u);
}

TEST(Catalog, HostsStatus) {
  TempDir d;
  auto c = open_cat(d.path + "/c.db");
  SnapshotRow s;
  s.host = "web1";
  s.sequence = 4;
  s.manifest = "aa";
  ASSERT_TRUE(c.record_snapshot(s).ok());
  ImageRow img;
  img.host = "web1";
  img.sequence = 3;
  img.path = "p3";
  auto g = c.add_image(img);
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(c.set_image_state(*g, "good").ok());
  img.sequence = 4;
  img.path = "p4";
  ASSERT_TRUE(c.add_image(img).ok());
  ASSERT_TRUE(c.record_refusal("db1", 2, kTicketFullBundleNeeded, "db1-2.sealed", "parent", kExitRefused).ok());
  auto hs = c.list_hosts_status();
  ASSERT_TRUE(hs.ok());
  ASSERT_EQ(hs->size(), 2u);
  const HostStatus& db1 = (*hs)[0];
  const HostStatus& web1 = (*hs)[1];
  EXPECT_EQ(db1.host, "db1");
  EXPECT_TRUE(db1.full_bundle_needed);
  EXPECT_EQ(db1.open_tickets.size(), 1u);
  EXPECT_FALSE(db1.latest.has_value());
  EXPECT_EQ(web1.latest->sequence, 4u);
  EXPECT_EQ(web1.candidate->path, "p4");
  EXPECT_EQ(web1.good->path, "p3");
  EXPECT_FALSE(web1.full_bundle_needed);
}

TEST(Catalog, TwoWritersAtOnce) {
  TempDir d;
  std::string path = d.path + "/c.db";
  { auto c = open_cat(path); }
  auto writer = [&](const char* host) {
    auto c = Catalog::open(path);
    ASSERT_TRUE(c.ok());
    for (int i = 1; i <= 50; ++i) {
      SnapshotRow s;
      s.host = host;
      s.sequence = uint64_t(i);
      s.manifest = "m";
      auto st = c->record_snapshot(s);
      ASSERT_TRUE(st.ok()) << st.error().message;
    }
  };
  std::thread a(writer, "a"), b(writer, "b");
  a.join();
  b.join();
  auto c = open_cat(path);
  EXPECT_EQ(c.snapshots("a")->size(), 50u);
  EXPECT_EQ(c.snapshots("b")->size(), 50u);
}
