// Invocation authorisation (planb-invoke): nothing boots unless a quorum of
// the customer's executives signed this exact request within its window.
//
//   executive keys      Ed25519; any encoding (OpenSSH line, base64, hex,
//                       "ed25519:" prefix) normalised to the 32 raw bytes
//                       (lib/exec_keys.cpp)
//   request, approval   canonical text files; an approval signs
//                       "planb-invocation-approval-v1\0" + request bytes +
//                       "signed_at=<unix>\n" (lib/invocation_request.cpp)
//   enrolment           the catalog keeps each customer's ENROLLED executive
//                       set + quorum (versioned); the first one is trust on
//                       first use, later ones need the old quorum
//   audit log           append-only, hash-chained catalog table
//                       (lib/audit_log.cpp)
//
// Formats: doc/formats.md "Invocation request v1", "Approval v1",
// "Executive key file", "Catalog (SQLite)". Design: ARCHITECTURE.md
// "Invocation authorisation".
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cmdb.hpp"
#include "result.hpp"
#include "server_layout.hpp"

namespace planb {

class Catalog;

// Exit code of every refusal to authorise (nothing started).
inline constexpr int kExitNotAuthorised = 10;

// ---------------------------------------------------------------- keys

// Any accepted encoding of an Ed25519 public key -> the 32 raw bytes:
// "ssh-ed25519 AAAA… [comment]" (the OpenSSH wire blob is parsed), base64 of
// the 32 bytes, or 64 hex digits; each optionally prefixed "ed25519:".
// A point of small order or not on the curve is refused.
Result<std::string> parse_executive_public_key(std::string_view text);
std::string exec_key_hex(std::string_view raw);   // 64 lowercase hex
std::string exec_key_id(std::string_view raw);    // 16 hex: BLAKE2b-256(raw) prefix (as key_id_of)
std::string exec_key_openssh(std::string_view raw, std::string_view comment = "");

// An executive's secret key: libsodium's 64-byte form (seed || public).
struct ExecutiveSecretKey {
  std::string secret;      // 64 bytes
  std::string public_key;  // 32 bytes
  std::string comment;
  ExecutiveSecretKey() = default;
  ExecutiveSecretKey(ExecutiveSecretKey&&) = default;
  ExecutiveSecretKey& operator=(ExecutiveSecretKey&&) = default;
  ~ExecutiveSecretKey();
};

// "planb-key 1" / type=executive-secret (doc/formats.md "Executive key
// file"), or an unencrypted OpenSSH ed25519 private key
// ("-----BEGIN OPENSSH PRIVATE KEY-----", ssh-keygen -t ed25519 -N '').
Result<ExecutiveSecretKey> parse_executive_secret_key(std::string_view text, const std::string& where);
Result<ExecutiveSecretKey> load_executive_secret_key(const std::string& path);
std::string encode_executive_secret_key(const ExecutiveSecretKey& k);
// A new key pair written to `out` (0600) and `out`.pub (the OpenSSH public
// line). Returns the OpenSSH public line.
Result<std::string> executive_keygen(const std::string& out, bool force);

// ---------------------------------------------------------- executive sets

struct ExecutiveEntry {
  std::string key;  // 32 raw bytes
  std::string name;
  std::string email;
};

// An executive set: keys unique (however they were written), sorted by key.
struct ExecutiveSet {
  int quorum = 0;
  std::vector<ExecutiveEntry> executives;
  // BLAKE2b-256 hex of "planb-executives 1\nquorum=M\n" + "key=<hex>\n" per key
  // (sorted): what an executive set change changes. Names are not part of it.
  std::string digest() const;
  const ExecutiveEntry* find(std::string_view raw_key) const;
  std::string json() const;
};

// Normalises and validates the CMDB's [authorisation]: every key parses, a
// key listed twice (in any encodings) counts once, 1 <= quorum <= keys.
Result<ExecutiveSet> executive_set_from_cmdb(const CmdbCustomer& c);

// ---------------------------------------------------------- requests

inline constexpr const char* kRequestKindInvocation = "invocation";
inline constexpr const char* kRequestKindExecutives = "executives";

struct InvocationRequest {
  std::string id;                 // 32 lowercase hex (random 128 bits)
  std::string kind = kRequestKindInvocation;
  std::string customer;
  std::string mode;               // invocation: "real" | "drill"
  bool all_hosts = false;         // invocation: "hosts=*"
  std::vector<std::string> hosts; // invocation: sorted, unique
  std::string reason;             // one line
  int64_t not_before = 0, not_after = 0, requested_at = 0;
  std::string executives_digest;  // the enrolled set in force when requested
  int quorum = 0;                 // its quorum
  ExecutiveSet new_executives;    // kind executives: the set to enrol
  // The canonical bytes (doc/formats.md "Invocation request v1").
  std::string encode() const;
  // Strict: the text must be exactly encode() of what it holds.
  static Result<InvocationRequest> decode(std::string_view text, const std::string& where);
};

std::string new_invocation_id();
bool valid_invocation_id(std::string_view id);
std::string request_hash(std::string_view request_bytes);  // BLAKE2b-256 hex

struct Approval {
  std::string request_id;
  std::string request_hash;  // hex
  std::string key;           // 32 raw bytes
  int64_t signed_at = 0;
  std::string signature;     // 64 raw bytes
  std::string encode() const;
  static Result<Approval> decode(std::string_view text, const std::string& where);
};

// "planb-invocation-approval-v1\0" + request bytes + "signed_at=<dec>\n".
std::string approval_message(std::string_view request_bytes, int64_t signed_at);
Approval sign_approval(std::string_view request_bytes, const InvocationRequest& req, const ExecutiveSecretKey& key,
                       int64_t signed_at);
bool approval_signature_valid(const Approval& a, std::string_view request_bytes);

// ---------------------------------------------------------- quorum check

struct Approver {
  std::string name, email, key_id;
  int64_t signed_at = 0;
};

struct ApprovalVerdict {
  std::string file;
  std::string key_id;  // "" if unreadable
  bool counted = false;
  std::string reason;  // why it does not count ("" if counted)
};

struct QuorumCheck {
  std::vector<Approver> approvers;  // distinct enrolled executives whose approval counts
  std::vector<ApprovalVerdict> verdicts;
  int quorum = 0;
  bool met() const { return quorum > 0 && int(approvers.size()) >= quorum; }
  std::string summary() const;  // "1 of 2 required approvals; not counted: a.approval (bad signature), …"
};

// Pure: which of `approvals` (file name, text) count for this request under
// `enrolled` at time `now` (signed_at inside the request's window and not
// more than 10 minutes after `now`; one count per key).
QuorumCheck check_approvals(std::string_view request_bytes, const InvocationRequest& req, const ExecutiveSet& enrolled,
                            const std::vector<std::pair<std::string, std::string>>& approvals, int64_t now);

// ---------------------------------------------------------- server side

struct AuthorisedInvocation {
  std::string id;
  std::string customer;
  std::string mode;                // "real" | "drill"
  std::vector<std::string> hosts;  // expanded when the request says all hosts (CMDB order)
  std::string reason;
  std::vector<Approver> approvers;
  int64_t not_before = 0, not_after = 0;
  std::string request_path;        // SERVER/invocations/ID/request
};

std::string invocations_dir(const ServerLayout& s);                 // SERVER/invocations
std::string invocation_dir(const ServerLayout& s, const std::string& id);

// The customer's enrolled executive set (nullopt: none enrolled yet).
struct EnrolledSet {
  int version = 0;
  ExecutiveSet set;
  int64_t enrolled_at = 0;
  std::string request;  // "" : first enrolment (trust on first use)
};
Result<std::optional<EnrolledSet>> enrolled_executives(Catalog& cat, const std::string& customer);

// Refuses (kExitNotAuthorised, message naming the reason, a "refusal" audit
// row) unless the request (its 32-hex id under SERVER/invocations/, or a path
// to its file) is an invocation of `wanted_mode` ("real" | "drill"), inside
// its window at `now`, for the customer's enrolled executive set (which must
// still match the CMDB's), approved by a quorum of distinct enrolled
// executives, and never used. On success the id is marked used and "start" is
// audited in one transaction.
Result<AuthorisedInvocation> authorise_start(const ServerLayout& s, const Cmdb& cmdb, const std::string& id_or_request_path,
                                             std::string_view wanted_mode, int64_t now);
// The same checks; dry_run = true writes nothing (no mark, no audit row).
Result<AuthorisedInvocation> authorise_check(const ServerLayout& s, const Cmdb& cmdb, const std::string& id_or_request_path,
                                             std::string_view wanted_mode, int64_t now, bool dry_run);

// --- pieces of the commands (lib/invoke_auth_cmd.cpp)

std::string utc_time(int64_t t);  // "2026-11-25 12:00:00Z"
std::string approvers_json(const std::vector<Approver>& as);

struct LoadedRequest {
  std::string path;     // the file read
  std::string id_hint;  // the id it was named by ("" if by path)
  std::string bytes;
};
// A request by id (SERVER/invocations/ID/request) or by path.
Result<LoadedRequest> load_request(const ServerLayout& s, const std::string& id_or_path);
// (file name, text) of every *.approval in dir, sorted; none if dir is missing.
Result<std::vector<std::pair<std::string, std::string>>> read_approvals(const std::string& dir);
// Inserts the request's row (state requested) and audits "request".
Status record_request(Catalog& cat, const InvocationRequest& r, const std::string& bytes, const std::string& actor);
// Enrols a new version of the customer's set and audits "executives", with
// `also` in the same transaction. request_id "" = first enrolment, refused if
// a set is enrolled already. Returns the version.
Result<int> enrol_executive_set(Catalog& cat, const std::string& customer, const ExecutiveSet& set,
                                const std::string& request_id, const std::string& actor, int64_t now,
                                const std::function<Status()>& also = {});

struct ExecutivesApplied {
  int version = 0;
  ExecutiveSet set;
  std::vector<Approver> approvers;
};
// An executives change request approved by the enrolled (old) quorum becomes
// the enrolled set; the request is marked used.
Result<ExecutivesApplied> apply_executives_change(const ServerLayout& s, const Cmdb& cmdb, const std::string& customer,
                                                  const std::string& id_or_request_path, int64_t now);

struct SubmittedApproval {
  std::string request_id, key_id, path;
  Approver approver;
};
// Checks one approval file against the request on the server and the
// enrolled executives, stores it as SERVER/invocations/ID/approvals/KEYID.approval
// and audits "approval" (or "refusal", exit 10).
Result<SubmittedApproval> submit_approval(const ServerLayout& s, const std::string& file, int64_t now);

// ---------------------------------------------------------- audit log

struct AuditRow {
  int64_t seq = 0;
  int64_t time = 0;
  std::string invocation;  // "" : not about one invocation (e.g. enrolment)
  std::string event;
  std::string actor;
  std::string detail = "{}";  // JSON
  std::string prev_hash;      // hex; 64 zeros for the first row
  std::string hash;           // hex: BLAKE2b-256(prev_hash raw || canonical row)
};

// The canonical row bytes hashed after prev_hash (doc/formats.md).
std::string audit_canonical(const AuditRow& r);
std::string audit_row_hash(const AuditRow& r);
// Appends one row (its own transaction, or nested in the caller's).
Status audit_append(Catalog& cat, const std::string& invocation, const std::string& event, const std::string& actor,
                    const std::string& detail_json, int64_t time = 0);
Status audit_append(const ServerLayout& s, const std::string& invocation, const std::string& event,
                    const std::string& actor, const std::string& detail_json);

struct AuditVerification {
  std::vector<AuditRow> rows;
  int64_t first_bad = 0;  // 0: the chain is intact
  std::string problem;
};
Result<AuditVerification> audit_verify(Catalog& cat);
// "operator:<user>" for the person running a command on the server.
std::string audit_actor();

}  // namespace planb
