// plan_dns: CMDB [[dns]] records resolved to rdata, and its refusals.
// (Updates against a real BIND: tests/dns.bats.)
#include "dns_redirect.hpp"

#include <gtest/gtest.h>

using namespace planb;

namespace {

CmdbDnsRecord rec(const std::string& name, const std::string& type, const std::string& host, const std::string& value) {
  CmdbDnsRecord r;
  r.server = "127.0.0.1";
  r.port = 5353;
  r.zone = "acme.example.";
  r.tsig_key = "/k/acme.tsig";
  r.name = name;
  r.type = type;
  r.host = host;
  r.value = value;
  r.where = "acme.toml:" + std::to_string(10);
  return r;
}

CmdbCustomer cust(std::vector<CmdbDnsRecord> recs) {
  CmdbCustomer c;
  c.name = "acme";
  c.dns = std::move(recs);
  return c;
}

const std::map<std::string, std::string> kAddr = {{"web", "10.99.0.11"}, {"mail", "10.99.0.25"}, {"v6", "2001:db8::0:1"}};

std::string err(const Result<std::vector<DnsChange>>& r) {
  EXPECT_FALSE(r.ok());
  return r.ok() ? "" : r.error().message;
}

}  // namespace

TEST(PlanDns, ResolvesHostsAndCanonicalisesValues) {
  auto r = plan_dns(cust({rec("www.acme.example", "A", "web", ""), rec("v6.acme.example.", "AAAA", "v6", ""),
                          rec("acme.example.", "MX", "", "010  MX.Acme.Rescue"),
                          rec("shop.acme.example.", "CNAME", "", "Web.acme.rescue"),
                          rec("acme.example.", "TXT", "", "v=spf1 \"q\" -all"),
                          rec("t2.acme.example.", "TXT", "", "\"a b\"   \"c\"")}),
                    kAddr);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 6u);
  EXPECT_EQ((*r)[0].name, "www.acme.example.");
  EXPECT_EQ((*r)[0].rdata, "10.99.0.11");
  EXPECT_EQ((*r)[0].host, "web");
  EXPECT_EQ((*r)[1].rdata, "2001:db8::1");
  EXPECT_EQ((*r)[2].rdata, "10 mx.acme.rescue.");
  EXPECT_EQ((*r)[3].rdata, "web.acme.rescue.");
  EXPECT_EQ((*r)[4].rdata, "\"v=spf1 \\\"q\\\" -all\"");
  EXPECT_EQ((*r)[5].rdata, "\"a b\" \"c\"");
  EXPECT_EQ((*r)[0].ttl, 60);
  EXPECT_EQ((*r)[0].port, 5353);
}

TEST(PlanDns, LongTxtIsSplitIntoStringsOf255) {
  auto r = plan_dns(cust({rec("acme.example.", "TXT", "", std::string(300, 'x'))}), kAddr);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)[0].rdata, "\"" + std::string(255, 'x') + "\" \"" + std::string(45, 'x') + "\"");
}

TEST(PlanDns, Refusals) {
  EXPECT_NE(err(plan_dns(cust({rec("www.acme.example.", "A", "wbe", "")}), kAddr)).find("unknown host 'wbe' (hosts of customer acme: mail, v6, web)"),
            std::string::npos);
  EXPECT_NE(err(plan_dns(cust({rec("www.acme.example.", "A", "", "10.0.0.300")}), kAddr)).find("is not an IPv4 address"),
            std::string::npos);
  EXPECT_NE(err(plan_dns(cust({rec("www.acme.example.", "A", "v6", "")}), kAddr)).find("host v6: '2001:db8::0:1' is not an IPv4"),
            std::string::npos);
  EXPECT_NE(err(plan_dns(cust({rec("www.acme.example.", "AAAA", "", "10.0.0.1")}), kAddr)).find("not an IPv6"), std::string::npos);
  EXPECT_NE(err(plan_dns(cust({rec("acme.example.", "MX", "", "mail.acme.example.")}), kAddr)).find("is not MX data"),
            std::string::npos);
  EXPECT_NE(err(plan_dns(cust({rec("acme.example.", "MX", "mail", "")}), kAddr)).find("needs 'value'"), std::string::npos);
  EXPECT_NE(err(plan_dns(cust({rec("x.acme.example.", "CNAME", "", "a b")}), kAddr)).find("not a domain name"), std::string::npos);
  EXPECT_NE(err(plan_dns(cust({rec("www.other.example.", "A", "web", "")}), kAddr)).find("is not in zone acme.example."),
            std::string::npos);
  EXPECT_NE(err(plan_dns(cust({rec("www.acme.example.", "SRV", "", "0 0 80 web.")}), kAddr)).find("not supported"),
            std::string::npos);
  EXPECT_NE(err(plan_dns(cust({rec("www.acme.example.", "A", "web", "10.0.0.1")}), kAddr)).find("not both"), std::string::npos);
  EXPECT_NE(err(plan_dns(cust({rec("www.acme.example.", "A", "", "")}), kAddr)).find("no 'host' or 'value'"), std::string::npos);
  EXPECT_NE(err(plan_dns(cust({rec("acme.example.", "TXT", "", "caf\xc3\xa9")}), kAddr)).find("printable ASCII"), std::string::npos);
  auto nokey = rec("www.acme.example.", "A", "web", "");
  nokey.tsig_key.clear();
  EXPECT_NE(err(plan_dns(cust({nokey}), kAddr)).find("no tsig_key"), std::string::npos);
  // Errors name the record's file:line and are usage errors.
  auto r = plan_dns(cust({rec("www.acme.example.", "A", "nohost", "")}), kAddr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kExitUsage);
  EXPECT_EQ(r.error().message.rfind("failed to plan DNS record acme.toml:10 (www.acme.example. A): ", 0), 0u) << r.error().message;
}

TEST(PlanDns, OneRRsetSharesTtlAndKeyAndCnameStandsAlone) {
  auto a = rec("acme.example.", "MX", "", "10 mx1.acme.rescue.");
  auto b = rec("acme.example.", "MX", "", "20 mx2.acme.rescue.");
  auto ok = plan_dns(cust({a, b}), kAddr);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->size(), 2u);
  b.ttl = 300;
  EXPECT_NE(err(plan_dns(cust({a, b}), kAddr)).find("differs"), std::string::npos);
  EXPECT_NE(err(plan_dns(cust({a, a}), kAddr)).find("listed twice"), std::string::npos);
  EXPECT_NE(err(plan_dns(cust({rec("shop.acme.example.", "CNAME", "", "a.rescue."), rec("shop.acme.example.", "A", "web", "")}), kAddr))
                .find("CNAME cannot share"),
            std::string::npos);
  auto empty = plan_dns(cust({}), kAddr);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(PlanDns, EmptyAddressIsAnError) {
  auto r = plan_dns(cust({rec("www.acme.example.", "A", "web", "")}), {{"web", ""}});
  EXPECT_NE(err(r).find("host web has no rescue address"), std::string::npos);
}
