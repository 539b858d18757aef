#include "cmdb.hpp"

#include <fstream>

#include "testutil.hpp"

using namespace planb;

namespace {

const char* kSample = R"(customer = "acme"
[[host]]
name = "web1"
cpus = 2
memory_mb = 1024
depends_on = ["db1"]
  [[host.check]]
  type = "tcp"
  port = 22
  [[host.check]]
  type = "http"
  port = 80
  path = "/"
  status = 200
  body = "Plan B sample"
  [[host.check]]
  type = "ssh"
  command = "test -s /data/records.csv"
  [[host.check]]
  type = "systemd"
  [[host.check]]
  type = "script"
  run = "./probe.sh"
  ports = [8080]
[[host]]
name = "db1"
  [[host.check]]
  type = "tcp"
  port = 5432
)";

// The error message for `text`, which must not parse.
std::string error_of(const std::string& text) {
  auto r = parse_cmdb(text, "cmdb/acme.toml");
  EXPECT_FALSE(r.ok()) << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.error().code, kExitUsage);
  return r.error().message;
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST(Cmdb, ParsesTheSample) {
  auto r = parse_cmdb(kSample, "acme.toml");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->hosts.size(), 2u);
  const CmdbHost* w = r->find("web1");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->customer, "acme");
  EXPECT_EQ(w->cpus, 2);
  EXPECT_EQ(w->memory_mb, 1024u);
  EXPECT_EQ(w->where, "acme.toml:2");
  ASSERT_EQ(w->depends_on.size(), 1u);
  EXPECT_EQ(w->depends_on[0], "db1");
  ASSERT_EQ(w->checks.size(), 5u);
  EXPECT_EQ(w->checks[0].type, CheckType::Tcp);
  EXPECT_EQ(w->checks[0].port, 22);
  EXPECT_EQ(w->checks[1].type, CheckType::Http);
  EXPECT_EQ(w->checks[1].body, "Plan B sample");
  EXPECT_EQ(w->checks[1].status, 200);
  EXPECT_EQ(w->checks[2].command, "test -s /data/records.csv");
  EXPECT_EQ(w->checks[3].type, CheckType::Systemd);
  EXPECT_EQ(w->checks[4].run, "./probe.sh");
  EXPECT_EQ(w->checks[1].where, "acme.toml:10");
  // Ports to forward: tcp 22, http 80, ssh/systemd/script → 22, script's 8080.
  EXPECT_EQ(w->guest_ports(), (std::vector<int>{22, 80, 8080}));
  const CmdbHost* d = r->find("db1");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->cpus, 1);          // defaults
  EXPECT_EQ(d->memory_mb, 1024u);
  EXPECT_EQ(r->find("nope"), nullptr);
}

TEST(Cmdb, HttpDefaults) {
  auto r = parse_cmdb("customer = \"c\"\n[[host]]\nname = \"h\"\n[[host.check]]\ntype = \"http\"\n", "f.toml");
  ASSERT_TRUE(r.ok()) << r.error().message;
  const auto& c = r->hosts[0].checks[0];
  EXPECT_EQ(c.port, 80);
  EXPECT_EQ(c.path, "/");
  EXPECT_EQ(c.status, 200);
}

TEST(Cmdb, SyntaxErrorNamesFileAndLine) {
  std::string m = error_of("customer = \"acme\"\n[[host]]\nname = \"web1\n");
  EXPECT_NE(m.find("cmdb/acme.toml:3"), std::string::npos) << m;
}

TEST(Cmdb, BadInputIsRefusedWithFileLineAndReason) {
  struct Case {
    const char* text;
    const char* line;
    const char* words;
  } cases[] = {
      {"[[host]]\nname = \"a\"\n", "cmdb/acme.toml", "no 'customer'"},
      {"customer = 1\n", "cmdb/acme.toml:1", "must be a string"},
      {"customer = \"c\"\ncolour = \"red\"\n", "cmdb/acme.toml:2", "unknown key 'colour'"},
      {"customer = \"c\"\n[[host]]\ncpus = 1\n", "cmdb/acme.toml:2", "no 'name'"},
      {"customer = \"c\"\n[[host]]\nname = \"a b\"\n", "cmdb/acme.toml:3", "not valid"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\ncpus = \"two\"\n", "cmdb/acme.toml:4", "'cpus' must be an integer"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\ncpus = 0\n", "cmdb/acme.toml:4", "out of range"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\nmemroy_mb = 512\n", "cmdb/acme.toml:4", "unknown key 'memroy_mb' in host a"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\n[[host.check]]\nport = 1\n", "cmdb/acme.toml:4", "no 'type'"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\n[[host.check]]\ntype = \"ping\"\n", "cmdb/acme.toml:5", "unknown check type 'ping'"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\n[[host.check]]\ntype = \"tcp\"\n", "cmdb/acme.toml:4", "needs 'port'"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\n[[host.check]]\ntype = \"tcp\"\nport = 70000\n", "cmdb/acme.toml:6", "out of range"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\n[[host.check]]\ntype = \"tcp\"\nport = 1\nbody = \"x\"\n", "cmdb/acme.toml:7",
       "unknown key 'body' in a tcp check"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\n[[host.check]]\ntype = \"http\"\npath = \"x\"\n", "cmdb/acme.toml:6", "start with /"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\n[[host.check]]\ntype = \"ssh\"\n", "cmdb/acme.toml:4", "needs 'command'"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\n[[host.check]]\ntype = \"script\"\n", "cmdb/acme.toml:4", "needs 'run'"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\ndepends_on = [1]\n", "cmdb/acme.toml:4", "must hold strings"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\n[[host]]\nname = \"a\"\n", "cmdb/acme.toml:4", "defined twice (first at cmdb/acme.toml:2)"},
      {"customer = \"c\"\nhost = 3\n", "cmdb/acme.toml:2", "[[host]] tables"},
  };
  for (const auto& c : cases) {
    std::string m = error_of(c.text);
    EXPECT_NE(m.find(std::string("failed to read CMDB ") + c.line + ":"), std::string::npos) << c.text << "\n=> " << m;
    EXPECT_NE(m.find(c.words), std::string::npos) << c.text << "\n=> " << m;
  }
}

TEST(Cmdb, LoadsADirectoryAndChecksDependencies) {
  TempDir d;
  write(d.path + "/acme.toml", kSample);
  write(d.path + "/beta.toml", "customer = \"beta\"\n[[host]]\nname = \"mail\"\n[[host.check]]\ntype = \"tcp\"\nport = 25\n");
  write(d.path + "/notes.txt", "not toml");
  auto r = load_cmdb(d.path);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->hosts.size(), 3u);
  ASSERT_NE(r->find("mail"), nullptr);
  EXPECT_EQ(r->find("mail")->customer, "beta");
  EXPECT_EQ(r->files.size(), 2u);

  // The same host in two files.
  write(d.path + "/gamma.toml", "customer = \"g\"\n\n[[host]]\nname = \"web1\"\n");
  auto dup = load_cmdb(d.path);
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.error().message.find("gamma.toml:3"), std::string::npos) << dup.error().message;
  EXPECT_NE(dup.error().message.find("defined twice"), std::string::npos) << dup.error().message;
  std::filesystem::remove(d.path + "/gamma.toml");

  // Unknown dependency, and a cycle.
  write(d.path + "/gamma.toml", "customer = \"g\"\n[[host]]\nname = \"x\"\ndepends_on = [\"ghost\"]\n");
  auto unk = load_cmdb(d.path);
  ASSERT_FALSE(unk.ok());
  EXPECT_NE(unk.error().message.find("unknown host 'ghost'"), std::string::npos) << unk.error().message;
  write(d.path + "/gamma.toml",
        "customer = \"g\"\n[[host]]\nname = \"x\"\ndepends_on = [\"y\"]\n[[host]]\nname = \"y\"\ndepends_on = [\"x\"]\n");
  auto cyc = load_cmdb(d.path);
  ASSERT_FALSE(cyc.ok());
  EXPECT_NE(cyc.error().message.find("dependency cycle: x -> y -> x"), std::string::npos) << cyc.error().message;
}

TEST(Cmdb, MissingPathIsNotFound) {
  TempDir d;
  auto r = load_cmdb(d.path + "/none");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kExitNotFound);
  auto e = load_cmdb(d.path);  // empty directory
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, kExitNotFound);
}

TEST(Cmdb, InvocationTables) {
  const char* text = R"(customer = "acme"
[rescue]
network = "10.20.0.0/24"
[authorisation]
quorum = 1
  [[authorisation.executive]]
  name = "Alice"
  key = "ed25519:0000000000000000000000000000000000000000000000000000000000000000"
[[dns]]
zone = "acme.example"
name = "www.acme.example"
tsig_key = "k.tsig"
host = "web"
[vpn]
  [[vpn.peer]]
  name = "office"
  allowed_ips = ["192.168.10.0/24"]
[[host]]
name = "db"
address = "10.20.0.10"
[[host]]
name = "web"
)";
  auto r = parse_cmdb(text, "cmdb/acme.toml");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->customers.size(), 1u);
  const CmdbCustomer& c = r->customers[0];
  EXPECT_EQ(c.rescue.network, "10.20.0.0/24");
  EXPECT_EQ(c.rescue.domain, "acme.rescue");  // default
  EXPECT_EQ(c.authorisation.quorum, 1);
  ASSERT_EQ(c.dns.size(), 1u);
  EXPECT_EQ(c.dns[0].zone, "acme.example.");  // absolute
  EXPECT_EQ(c.dns[0].name, "www.acme.example.");
  EXPECT_EQ(c.dns[0].tsig_key, "cmdb/k.tsig");  // relative to the CMDB file
  EXPECT_TRUE(c.vpn.enabled);
  ASSERT_EQ(c.vpn.peers.size(), 1u);
  EXPECT_EQ(r->find("db")->address, "10.20.0.10");
  EXPECT_EQ(r->find("web")->address, "10.20.0.11");  // assigned from .10 up, skipping taken ones
  EXPECT_EQ(r->hosts_of("acme").size(), 2u);
}

TEST(Cmdb, InvocationTablesRefuseBadInput) {
  struct Case {
    const char* text;
    const char* words;
  } cases[] = {
      {"customer = \"c\"\n[rescue]\nnetwork = \"10.0.0.1/24\"\n", "is not an IPv4 network"},
      {"customer = \"c\"\n[rescue]\nnetwork = \"10.0.0.0/24\"\n[[host]]\nname = \"a\"\naddress = \"10.0.1.5\"\n",
       "not a usable host address of the rescue network 10.0.0.0/24"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\naddress = \"10.99.0.1\"\n", "(.1 is the platform's)"},
      {"customer = \"c\"\n[[host]]\nname = \"a\"\naddress = \"10.99.0.20\"\n[[host]]\nname = \"b\"\naddress = \"10.99.0.20\"\n",
       "is also a's"},
      {"customer = \"c\"\n[authorisation]\nquorum = 3\n[[authorisation.executive]]\nname = \"A\"\nkey = \"x\"\n",
       "quorum = 3 but only 1 executives"},
      {"customer = \"c\"\n[[dns]]\nzone = \"a.example\"\nname = \"www.b.example\"\ntsig_key = \"k\"\nvalue = \"1.2.3.4\"\n",
       "is not in zone a.example."},
      {"customer = \"c\"\n[[dns]]\nzone = \"a.example\"\nname = \"www.a.example\"\nvalue = \"1.2.3.4\"\n", "needs 'tsig_key'"},
      {"customer = \"c\"\n[[dns]]\nzone = \"a.example\"\nname = \"www.a.example\"\ntsig_key = \"k\"\nhost = \"nope\"\n",
       "names host 'nope', which is not a host of customer c"},
      {"customer = \"c\"\n[vpn]\nport = 1\n", "unknown key 'port' in [vpn]"},
  };
  for (const auto& c : cases) {
    std::string m = error_of(c.text);
    EXPECT_NE(m.find(c.words), std::string::npos) << c.text << "\n=> " << m;
  }
}
