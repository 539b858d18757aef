// Invocation requests and approvals: canonical text, signatures, and the
// pure quorum check (which approvals count for a request).
#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "hash.hpp"
#include "invoke_auth.hpp"

namespace planb {

namespace {

constexpr std::string_view kRequestMagic = "planb-invocation-request 1";
constexpr std::string_view kApprovalMagic = "planb-invocation-approval 1";
constexpr std::string_view kApprovalDomain{"planb-invocation-approval-v1\0", 29};
constexpr int64_t kFutureSkew = 600;  // an approval may be signed up to 10 minutes "after" the server's now

std::string hex_of(std::string_view raw) { return exec_key_hex(raw); }

std::optional<std::string> unhex(std::string_view s, size_t bytes) {
  if (s.size() != bytes * 2) return std::nullopt;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  std::string out(bytes, '\0');
  size_t len = 0;
  if (sodium_hex2bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), s.data(), s.size(), nullptr, &len, nullptr) != 0 ||
      len != bytes)
    return std::nullopt;
  return out;
}

bool parse_i64(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 18) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

// Lines "key=value" after the magic line; the text must end with "\n".
bool split_fields(std::string_view text, std::string_view magic, std::vector<std::pair<std::string, std::string>>& out) {
  if (text.empty() || text.back() != '\n') return false;
  size_t pos = 0;
  bool first = true;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (first) {
      if (line != magic) return false;
      first = false;
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string_view::npos) return false;
    out.emplace_back(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
  }
  return !first;
}

}  // namespace

bool valid_invocation_id(std::string_view id) {
  if (id.size() != 32) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string new_invocation_id() {
  ensure_sodium();
  unsigned char b[16];
  randombytes_buf(b, sizeof b);
  return hex_of(std::string_view(reinterpret_cast<char*>(b), sizeof b));
}

std::string request_hash(std::string_view request_bytes) { return hash_bytes(request_bytes).hex(); }

// ---------------------------------------------------------- request

std::string InvocationRequest::encode() const {
  std::string o = std::string(kRequestMagic) + "\n";
  o += "id=" + id + "\n";
  o += "kind=" + kind + "\n";
  o += "customer=" + customer + "\n";
  if (kind == kRequestKindInvocation) {
    o += "mode=" + mode + "\n";
    std::string hs;
    if (all_hosts) hs = "*";
    else
      for (size_t i = 0; i < hosts.size(); ++i) hs += (i ? "," : "") + hosts[i];
    o += "hosts=" + hs + "\n";
  }
  o += "reason=" + reason + "\n";
  o += "not_before=" + std::to_string(not_before) + "\n";
  o += "not_after=" + std::to_string(not_after) + "\n";
  o += "requested_at=" + std::to_string(requested_at) + "\n";
  o += "executives=" + executives_digest + "\n";
  o += "quorum=" + std::to_string(quorum) + "\n";
  if (kind == kRequestKindExecutives) {
    o += "new_quorum=" + std::to_string(new_executives.quorum) + "\n";
    for (const auto& e : new_executives.executives)
      o += "new_executive=" + hex_of(e.key) + " " + e.name + " <" + e.email + ">\n";
  }
  return o;
}

static bool valid_word(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  return true;
}

// One line of text: no control characters.
static bool valid_line(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  return true;
}

Result<InvocationRequest> InvocationRequest::decode(std::string_view text, const std::string& where) {
  auto bad = [&](const std::string& why) {
    return make_error(kExitNotAuthorised, "failed to read invocation request " + where + ": " + why);
  };
  std::vector<std::pair<std::string, std::string>> f;
  if (!split_fields(text, kRequestMagic, f))
    return bad(text.rfind("planb-invocation-request ", 0) == 0 ? "unsupported version or malformed lines"
                                                               : "not a Plan B invocation request");
  InvocationRequest r;
  bool have_nb = false, have_na = false, have_at = false;
  for (const auto& [k, v] : f) {
    int64_t n = 0;
    if (k == "id") r.id = v;
    else if (k == "kind") r.kind = v;
    else if (k == "customer") r.customer = v;
    else if (k == "mode") r.mode = v;
    else if (k == "hosts") {
      if (v == "*") r.all_hosts = true;
      else {
        size_t p = 0;
        while (p <= v.size()) {
          size_t c = v.find(',', p);
          if (c == std::string::npos) c = v.size();
          r.hosts.push_back(v.substr(p, c - p));
          p = c + 1;
        }
      }
    } else if (k == "reason") r.reason = v;
    else if (k == "not_before" && parse_i64(v, n)) { r.not_before = n; have_nb = true; }
    else if (k == "not_after" && parse_i64(v, n)) { r.not_after = n; have_na = true; }
    else if (k == "requested_at" && parse_i64(v, n)) { r.requested_at = n; have_at = true; }
    else if (k == "executives") r.executives_digest = v;
    else if (k == "quorum" && parse_i64(v, n)) r.quorum = int(n);
    else if (k == "new_quorum" && parse_i64(v, n)) r.new_executives.quorum = int(n);
    else if (k == "new_executive") {
      // <64 hex> <name> <<email>>
      auto lt = v.rfind(" <");
      if (v.size() < 66 || v[64] != ' ' || lt == std::string::npos || lt < 64 || v.back() != '>')
        return bad("malformed new_executive line");
      auto raw = unhex(std::string_view(v).substr(0, 64), 32);
      if (!raw) return bad("malformed new_executive key");
      std::string name = lt > 65 ? v.substr(65, lt - 65) : "";
      std::string email = v.substr(lt + 2, v.size() - lt - 3);
      r.new_executives.executives.push_back({*raw, name, email});
    } else return bad("unexpected line '" + k + "=…'");
  }
  if (!valid_invocation_id(r.id)) return bad("the id is not 32 lowercase hex digits");
  if (r.kind != kRequestKindInvocation && r.kind != kRequestKindExecutives) return bad("unknown kind '" + r.kind + "'");
  if (!valid_word(r.customer)) return bad("malformed customer name");
  if (r.kind == kRequestKindInvocation) {
    if (r.mode != "real" && r.mode != "drill") return bad("mode must be real or drill");
    if (!r.all_hosts && r.hosts.empty()) return bad("no hosts");
    for (const auto& h : r.hosts)
      if (!valid_word(h)) return bad("malformed host name '" + h + "'");
    if (!std::is_sorted(r.hosts.begin(), r.hosts.end()) ||
        std::adjacent_find(r.hosts.begin(), r.hosts.end()) != r.hosts.end())
      return bad("hosts are not sorted and unique");
  } else {
    for (const auto& e : r.new_executives.executives)
      if (!crypto_core_ed25519_is_valid_point(reinterpret_cast<const unsigned char*>(e.key.data())))
        return bad("a new executive's key is not a valid Ed25519 key");
    const auto& ex = r.new_executives.executives;
    for (size_t i = 1; i < ex.size(); ++i)
      if (!(ex[i - 1].key < ex[i].key)) return bad("new executives are not sorted by key and unique");
    if (r.new_executives.quorum < 1 || r.new_executives.quorum > int(ex.size()))
      return bad("new_quorum must be between 1 and the number of new executives");
  }
  if (r.reason.empty() || !valid_line(r.reason)) return bad("missing or malformed reason");
  if (!have_nb || !have_na || !have_at || r.not_after <= r.not_before) return bad("malformed validity window");
  if (!unhex(r.executives_digest, 32)) return bad("malformed executives digest");
  if (r.quorum < 1) return bad("malformed quorum");
  if (r.encode() != text)
    return bad("not in canonical form (fields out of order, repeated, or altered: it is not the text that was signed)");
  return r;
}

// ---------------------------------------------------------- approval

std::string Approval::encode() const {
  return std::string(kApprovalMagic) + "\nrequest=" + request_id + "\nrequest_hash=" + request_hash + "\nkey=" + hex_of(key) +
         "\nsigned_at=" + std::to_string(signed_at) + "\nsignature=" + hex_of(signature) + "\n";
}

Result<Approval> Approval::decode(std::string_view text, const std::string& where) {
  auto bad = [&](const std::string& why) { return make_error(kExitNotAuthorised, "failed to read approval " + where + ": " + why); };
  std::vector<std::pair<std::string, std::string>> f;
  if (!split_fields(text, kApprovalMagic, f) || f.size() != 5) return bad("not a Plan B approval (version 1)");
  const char* names[] = {"request", "request_hash", "key", "signed_at", "signature"};
  for (size_t i = 0; i < 5; ++i)
    if (f[i].first != names[i]) return bad("malformed (expected " + std::string(names[i]) + "=)");
  Approval a;
  a.request_id = f[0].second;
  a.request_hash = f[1].second;
  if (!valid_invocation_id(a.request_id)) return bad("malformed request id");
  if (!unhex(a.request_hash, 32)) return bad("malformed request hash");
  auto key = unhex(f[2].second, 32);
  auto sig = unhex(f[4].second, 64);
  if (!key || !sig || !parse_i64(f[3].second, a.signed_at)) return bad("malformed key, time or signature");
  a.key = *key;
  a.signature = *sig;
  if (a.encode() != text) return bad("not in canonical form");
  return a;
}

std::string approval_message(std::string_view request_bytes, int64_t signed_at) {
  std::string m(kApprovalDomain);
  m += request_bytes;
  m += "signed_at=" + std::to_string(signed_at) + "\n";
  return m;
}

Approval sign_approval(std::string_view request_bytes, const InvocationRequest& req, const ExecutiveSecretKey& key,
                       int64_t signed_at) {
  ensure_sodium();
  Approval a;
  a.request_id = req.id;
  a.request_hash = request_hash(request_bytes);
  a.key = key.public_key;
  a.signed_at = signed_at;
  std::string m = approval_message(request_bytes, signed_at);
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(m.data()), m.size(),
                       reinterpret_cast<const unsigned char*>(key.secret.data()));
  a.signature.assign(reinterpret_cast<char*>(sig), sizeof sig);
  return a;
}

bool approval_signature_valid(const Approval& a, std::string_view request_bytes) {
  ensure_sodium();
  if (a.key.size() != 32 || a.signature.size() != 64) return false;
  std::string m = approval_message(request_bytes, a.signed_at);
  return crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(a.signature.data()),
                                     reinterpret_cast<const unsigned char*>(m.data()), m.size(),
                                     reinterpret_cast<const unsigned char*>(a.key.data())) == 0;
}

// ---------------------------------------------------------- quorum

std::string QuorumCheck::summary() const {
  std::string s = std::to_string(approvers.size()) + " of " + std::to_string(quorum) + " required approvals";
  if (!approvers.empty()) {
    s += " (";
    for (size_t i = 0; i < approvers.size(); ++i) s += (i ? ", " : "") + approvers[i].name;
    s += ")";
  }
  std::string nc;
  for (const auto& v : verdicts)
    if (!v.counted) nc += (nc.empty() ? "" : "; ") + v.file + ": " + v.reason;
  if (!nc.empty()) s += "; not counted: " + nc;
  return s;
}

QuorumCheck check_approvals(std::string_view request_bytes, const InvocationRequest& req, const ExecutiveSet& enrolled,
                            const std::vector<std::pair<std::string, std::string>>& approvals, int64_t now) {
  QuorumCheck q;
  q.quorum = enrolled.quorum;
  std::string want_hash = request_hash(request_bytes);
  std::set<std::string> counted;
  for (const auto& [file, text] : approvals) {
    ApprovalVerdict v;
    v.file = file;
    auto a = Approval::decode(text, file);
    if (!a.ok()) {
      v.reason = "unreadable (" + a.error().message + ")";
      q.verdicts.push_back(v);
      continue;
    }
    v.key_id = exec_key_id(a->key);
    const ExecutiveEntry* who = enrolled.find(a->key);
    if (a->request_id != req.id) v.reason = "an approval of another request (" + a->request_id + ")";
    else if (a->request_hash != want_hash) v.reason = "signed over a different text of this request (request or approval altered)";
    else if (!approval_signature_valid(*a, request_bytes)) v.reason = "bad signature";
    else if (!who) v.reason = "key " + v.key_id + " is not an enrolled executive of " + req.customer;
    else if (a->signed_at < req.not_before || a->signed_at > req.not_after)
      v.reason = "signed at " + std::to_string(a->signed_at) + ", outside the request's window [" +
                 std::to_string(req.not_before) + ", " + std::to_string(req.not_after) + "]";
    else if (a->signed_at > now + kFutureSkew) v.reason = "signed in the future (" + std::to_string(a->signed_at) + ")";
    else if (counted.count(a->key)) v.reason = "key " + v.key_id + " (" + who->name + ") already counted: one approval per executive";
    else {
      v.counted = true;
      counted.insert(a->key);
      q.approvers.push_back({who->name, who->email, v.key_id, a->signed_at});
    }
    q.verdicts.push_back(v);
  }
  return q;
}

}  // namespace planb
