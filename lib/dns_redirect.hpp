// DNS and mail redirection for an invocation: the CMDB's [[dns]] records are
// switched to the rescue addresses with RFC 2136 dynamic updates (TSIG-signed,
// sent by BIND's nsupdate with -k KEYFILE: the secret never reaches argv), and
// switched back on stop.
//
// Order of work (redirect_dns):
//   1. query each RRset's current rdata and TTL from the zone's primary (dig, TCP);
//   2. write the rollback journal (doc/formats.md "DNS rollback journal v1")
//      atomically, BEFORE any update;
//   3. per RRset, one update: prerequisite "the RRset is still what the journal
//      holds", delete the RRset, add the new records; then query to verify, and
//      mark it applied in the journal;
//   4. if an update is refused (BADKEY, BADSIG, REFUSED, NOTAUTH, NXRRSET, timeout)
//      or does not verify: roll back what was changed, exit code 12.
// rollback_dns restores every RRset of the journal (records that did not exist
// before are deleted); it is idempotent and safe after a crash at any point,
// because it compares the server's current RRset with the journal's original
// and only updates what differs.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cmdb.hpp"
#include "result.hpp"

namespace planb {

// A DNS update was refused or did not take effect (changes rolled back).
inline constexpr int kExitRedirectFailed = 12;

// One record to set: the CMDB [[dns]] entry resolved to rdata.
struct DnsChange {
  std::string server;    // primary that accepts updates (address or name)
  int port = 53;
  std::string zone;      // "acme.example."
  std::string tsig_key;  // BIND key file for nsupdate -k
  std::string name;      // "www.acme.example." (absolute, lower case)
  std::string type;      // A, AAAA, CNAME, MX, TXT
  std::string rdata;     // presentation form: "10.99.0.11", "10 mail.acme.example.", "\"v=spf1 -all\""
  int ttl = 60;
  std::string host;      // the CMDB host whose address it is ("" for a literal value)
  std::string where;     // "file:line" of the [[dns]] table
};

// Resolves every [[dns]] record of the customer: `host` = that host's rescue
// address from host_address (A: IPv4, AAAA: IPv6), else the literal `value`,
// checked for its type. Errors (exit 2) name the record's file:line.
Result<std::vector<DnsChange>> plan_dns(const CmdbCustomer& customer,
                                        const std::map<std::string, std::string>& host_address);

struct DnsOptions {
  int timeout_s = 10;   // per query / per update
  // Called for each RRset changed or restored: event is "dns-redirect" or
  // "dns-rollback", detail a JSON object {"name","type","server","zone","from":[…],"to":[…],"ttl"}.
  // The caller appends it to the audit log (audit_append).
  std::function<void(const std::string& event, const std::string& detail)> audit;
  // Progress lines for people ("redirected www.acme.example. A"); may be empty.
  std::function<void(const std::string& line)> note;
};

// Redirects. An existing journal that is not rolled back keeps its originals
// (re-running after a crash does not take the rescue records for originals).
Status redirect_dns(const std::vector<DnsChange>& changes, const std::string& rollback_path,
                    const DnsOptions& opt = {});
// Restores the originals of the journal. A missing or already rolled-back journal
// is a no-op.
Status rollback_dns(const std::string& rollback_path, const DnsOptions& opt = {});

// The journal, as read back (for --show, status and reports).
struct DnsRRsetState {
  std::string server, zone, tsig_key, name, type;
  int port = 53;
  bool original_exists = false;
  int original_ttl = 0;
  std::vector<std::string> original;  // rdata
  int redirect_ttl = 0;
  std::vector<std::string> redirect;
  std::string state;  // pending | applied | restored
};
struct DnsJournal {
  std::string state;   // applying | applied | failed | rolled-back
  std::string created, updated;
  std::vector<DnsRRsetState> rrsets;
};
Result<DnsJournal> read_dns_journal(const std::string& path);

// The current RRset on the server: ttl and rdata (canonical form, sorted); empty if absent.
struct DnsRRset {
  int ttl = 0;
  std::vector<std::string> rdata;
};
Result<DnsRRset> query_dns(const std::string& server, int port, const std::string& name,
                           const std::string& type, int timeout_s = 10);

// planb-invoke dns ID --apply | --rollback | --show
struct InvokeDnsOptions {
  std::string server;  // --server DIR ("" = $PLANB_SERVER or the default)
  std::string id;      // invocation id
  bool apply = false, rollback = false, show = false;
  bool json = false;
  int timeout_s = 10;
};
Status invoke_dns_main(const InvokeDnsOptions& o);

}  // namespace planb
