// Invocation authorisation: key encodings, canonical request bytes,
// signatures and the quorum check, the audit log's hash chain.
#include <gtest/gtest.h>
#include <sodium.h>
#include <sqlite3.h>

#include "catalog.hpp"
#include "hash.hpp"
#include "invoke_auth.hpp"
#include "testutil.hpp"

using namespace planb;

namespace {

// ssh-keygen -t ed25519 -N '' -C alice@test (a test vector, not a secret of anyone's).
const char* kSshPriv =
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACA6foDAIWi0Rd0q9P1QgDlh0Q/9CXpTj8/Pf2tBbmY9HAAAAJBreg9ba3oP\n"
    "WwAAAAtzc2gtZWQyNTUxOQAAACA6foDAIWi0Rd0q9P1QgDlh0Q/9CXpTj8/Pf2tBbmY9HA\n"
    "AAAEDgKmBvqkBO8f6EDu62TAE5PL0LeZ+6KjRAE0yEPCbHkjp+gMAhaLRF3Sr0/VCAOWHR\n"
    "D/0JelOPz89/a0FuZj0cAAAACmFsaWNlQHRlc3QBAgM=\n"
    "-----END OPENSSH PRIVATE KEY-----\n";
const char* kSshPub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDp+gMAhaLRF3Sr0/VCAOWHRD/0JelOPz89/a0FuZj0c alice@test";
const char* kHex = "3a7e80c02168b445dd2af4fd50803961d10ffd097a538fcfcf7f6b416e663d1c";
// ssh-keygen -t ed25519 -N pw: encrypted.
const char* kSshEncrypted =
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABBhEtX9i5\n"
    "ETNVqYkXGlAsKRAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAICzr++vDZRR8rV1G\n"
    "jpjW7Jo1LdelGMKJz8zfZTF85D96AAAAkDjwn7deJhqZLgKSD650wjOV76kB32uhKXoqpm\n"
    "kJf8eluBoqCPy+CqeTdwUQLvPr9yqa35LqagGdsFPEzoXHf6trzUmVLjzzzRv4CZwOUVF0\n"
    "ClUEt/VnbDJo80p2Se3embOECVlOAkU95uG54/7xWOOitTN5/JlsXJGOxbEqRRr4a9Me4u\n"
    "6EWavI3zNLO1ED8A==\n"
    "-----END OPENSSH PRIVATE KEY-----\n";

std::string b64(std::string_view s) {
  std::string out(sodium_base64_encoded_len(s.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()), s.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(strlen(out.c_str()));
  return out;
}

ExecutiveSecretKey new_key() {
  ensure_sodium();
  unsigned char pk[32], sk[64];
  crypto_sign_keypair(pk, sk);
  ExecutiveSecretKey k;
  k.secret.assign(reinterpret_cast<char*>(sk), 64);
  k.public_key.assign(reinterpret_cast<char*>(pk), 32);
  return k;
}

InvocationRequest sample_request(const ExecutiveSet& set) {
  InvocationRequest r;
  r.id = "0123456789abcdef0123456789abcdef";
  r.customer = "acme";
  r.mode = "drill";
  r.hosts = {"app", "db", "web"};
  r.reason = "yearly BCP drill";
  r.not_before = 1764000000;
  r.not_after = 1764014400;
  r.requested_at = 1764000000;
  r.executives_digest = set.digest();
  r.quorum = set.quorum;
  return r;
}

}  // namespace

TEST(ExecKeys, EveryEncodingNormalisesToTheSameRawKey) {
  auto ssh = parse_executive_public_key(kSshPub);
  ASSERT_TRUE(ssh.ok()) << ssh.error().message;
  EXPECT_EQ(exec_key_hex(*ssh), kHex);
  for (std::string enc : {std::string(kHex), "ed25519:" + std::string(kHex), b64(*ssh), "ed25519:" + b64(*ssh),
                          b64(*ssh).substr(0, 43) /* unpadded */, "  " + std::string(kSshPub) + "\n",
                          exec_key_openssh(*ssh, "")}) {
    auto k = parse_executive_public_key(enc);
    ASSERT_TRUE(k.ok()) << enc << ": " << k.error().message;
    EXPECT_EQ(*k, *ssh) << enc;
  }
  EXPECT_EQ(exec_key_openssh(*ssh, "alice@test"), kSshPub);
}

TEST(ExecKeys, RefusesWhatIsNotAnEd25519PublicKey) {
  EXPECT_FALSE(parse_executive_public_key("").ok());
  EXPECT_FALSE(parse_executive_public_key(std::string(kHex).substr(2)).ok());  // 31 bytes
  EXPECT_FALSE(parse_executive_public_key("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ x").ok());
  EXPECT_FALSE(parse_executive_public_key(std::string(64, '0')).ok());  // small order (identity-ish)
  // An ssh-ed25519 line whose blob says another type.
  std::string blob = std::string("\0\0\0\x0bssh-ed25519X", 16);
  EXPECT_FALSE(parse_executive_public_key("ssh-ed25519 " + b64(blob)).ok());
}

TEST(ExecKeys, ReadsAnUnencryptedOpenSshPrivateKeyAndRefusesAnEncryptedOne) {
  auto k = parse_executive_secret_key(kSshPriv, "test");
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(exec_key_hex(k->public_key), kHex);
  EXPECT_EQ(k->comment, "alice@test");
  auto e = parse_executive_secret_key(kSshEncrypted, "test");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("encrypted"), std::string::npos);
}

TEST(ExecKeys, OwnSecretKeyFileRoundTrips) {
  auto k = new_key();
  k.comment = "c";
  std::string text = encode_executive_secret_key(k);
  auto back = parse_executive_secret_key(text, "t");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->secret, k.secret);
  EXPECT_EQ(back->public_key, k.public_key);
  // A wrong id is refused.
  std::string bad = text;
  bad[bad.find("id=") + 3] ^= 1;
  EXPECT_FALSE(parse_executive_secret_key(bad, "t").ok());
}

TEST(ExecutiveSet, SameKeyInTwoEncodingsCountsOnceAndQuorumIsChecked) {
  CmdbCustomer c;
  c.name = "acme";
  c.authorisation.quorum = 2;
  c.authorisation.executives = {{"Alice", "a@x", kSshPub, ""}, {"Alice again", "a@x", kHex, ""}};
  auto s = executive_set_from_cmdb(c);
  ASSERT_FALSE(s.ok());  // one distinct key, quorum 2
  auto bob = new_key();
  c.authorisation.executives.push_back({"Bob", "b@x", exec_key_hex(bob.public_key), ""});
  s = executive_set_from_cmdb(c);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->executives.size(), 2u);
  // The digest depends on keys and quorum, not on encodings, names or order.
  CmdbCustomer c2 = c;
  std::swap(c2.authorisation.executives[0], c2.authorisation.executives[2]);
  c2.authorisation.executives[1].name = "Renamed";
  EXPECT_EQ(executive_set_from_cmdb(c2)->digest(), s->digest());
  c2.authorisation.quorum = 1;
  EXPECT_NE(executive_set_from_cmdb(c2)->digest(), s->digest());
}

TEST(Request, CanonicalBytesAreStableAndStrict) {
  ExecutiveSet set;
  set.quorum = 1;
  set.executives = {{std::string(32, '\x11'), "A", "a@x"}};
  auto r = sample_request(set);
  std::string text = r.encode();
  EXPECT_EQ(text.substr(0, text.find("executives=")),
            "planb-invocation-request 1\n"
            "id=0123456789abcdef0123456789abcdef\n"
            "kind=invocation\n"
            "customer=acme\n"
            "mode=drill\n"
            "hosts=app,db,web\n"
            "reason=yearly BCP drill\n"
            "not_before=1764000000\n"
            "not_after=1764014400\n"
            "requested_at=1764000000\n");
  auto back = InvocationRequest::decode(text, "t");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->encode(), text);
  // Any non-canonical variant is refused: reordered, extra space, CRLF, no final newline, unsorted hosts.
  std::string swapped = text;
  auto a = swapped.find("mode=drill\n"), b = swapped.find("hosts=");
  swapped = swapped.substr(0, a) + swapped.substr(b, swapped.find('\n', b) + 1 - b) + "mode=drill\n" +
            swapped.substr(swapped.find('\n', b) + 1);
  EXPECT_FALSE(InvocationRequest::decode(swapped, "t").ok());
  std::string spaced = text;
  spaced.replace(spaced.find("mode=drill"), 10, "mode= drill");
  EXPECT_FALSE(InvocationRequest::decode(spaced, "t").ok());
  EXPECT_FALSE(InvocationRequest::decode(text.substr(0, text.size() - 1), "t").ok());
  std::string unsorted = text;
  unsorted.replace(unsorted.find("app,db,web"), 10, "db,app,web");
  EXPECT_FALSE(InvocationRequest::decode(unsorted, "t").ok());
  std::string dup = text + "mode=real\n";
  EXPECT_FALSE(InvocationRequest::decode(dup, "t").ok());
  // An executives change round-trips too.
  InvocationRequest e = r;
  e.kind = kRequestKindExecutives;
  e.mode.clear();
  e.hosts.clear();
  auto k1 = new_key(), k2 = new_key();
  e.new_executives.quorum = 2;
  e.new_executives.executives = {{k1.public_key, "Carol Smith", "c@x"}, {k2.public_key, "Dan", ""}};
  std::sort(e.new_executives.executives.begin(), e.new_executives.executives.end(),
            [](const auto& x, const auto& y) { return x.key < y.key; });
  auto eb = InvocationRequest::decode(e.encode(), "t");
  ASSERT_TRUE(eb.ok()) << eb.error().message;
  EXPECT_EQ(eb->new_executives.digest(), e.new_executives.digest());
  EXPECT_EQ(eb->new_executives.executives[0].name, e.new_executives.executives[0].name);
}

TEST(Approval, SignatureCoversTheExactRequestAndTheTime) {
  auto alice = new_key(), bob = new_key(), mallory = new_key();
  ExecutiveSet set;
  set.quorum = 2;
  set.executives = {{alice.public_key, "Alice", "a@x"}, {bob.public_key, "Bob", "b@x"}};
  auto r = sample_request(set);
  std::string bytes = r.encode();
  int64_t now = r.not_before + 60;
  auto a = sign_approval(bytes, r, alice, now);
  EXPECT_TRUE(approval_signature_valid(a, bytes));
  auto back = Approval::decode(a.encode(), "t");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_TRUE(approval_signature_valid(*back, bytes));
  // Another text, or another time, does not verify.
  std::string other = bytes;
  other.replace(other.find("mode=drill"), 10, "mode=reel!");
  EXPECT_FALSE(approval_signature_valid(a, other));
  Approval moved = a;
  moved.signed_at += 1;
  EXPECT_FALSE(approval_signature_valid(moved, bytes));
  // The signed message is domain-separated.
  EXPECT_EQ(approval_message("X", 5), std::string("planb-invocation-approval-v1\0Xsigned_at=5\n", 42));

  auto b = sign_approval(bytes, r, bob, now);
  auto m = sign_approval(bytes, r, mallory, now);
  auto a2 = sign_approval(bytes, r, alice, now + 1);  // Alice again
  auto late = sign_approval(bytes, r, bob, r.not_after + 1);
  InvocationRequest r2 = r;
  r2.id = "ffffffffffffffffffffffffffffffff";
  auto other_req = sign_approval(r2.encode(), r2, bob, now);

  auto q = check_approvals(bytes, r, set, {{"a", a.encode()}, {"a2", a2.encode()}, {"m", m.encode()}}, now);
  EXPECT_FALSE(q.met());
  EXPECT_EQ(q.approvers.size(), 1u);
  EXPECT_NE(q.verdicts[1].reason.find("already counted"), std::string::npos);
  EXPECT_NE(q.verdicts[2].reason.find("not an enrolled executive"), std::string::npos);
  q = check_approvals(bytes, r, set, {{"a", a.encode()}, {"late", late.encode()}, {"o", other_req.encode()}}, now);
  EXPECT_FALSE(q.met());
  EXPECT_NE(q.verdicts[1].reason.find("outside the request's window"), std::string::npos);
  EXPECT_NE(q.verdicts[2].reason.find("another request"), std::string::npos);
  q = check_approvals(bytes, r, set, {{"a", a.encode()}, {"b", b.encode()}}, now);
  EXPECT_TRUE(q.met()) << q.summary();
  // Signed far in the future of the server's clock: not counted.
  auto future = sign_approval(bytes, r, bob, now + 3600);
  q = check_approvals(bytes, r, set, {{"a", a.encode()}, {"f", future.encode()}}, now);
  EXPECT_FALSE(q.met());
  // The same approvals over a tampered request text count for nothing.
  InvocationRequest t = r;
  t.mode = "real";
  q = check_approvals(t.encode(), t, set, {{"a", a.encode()}, {"b", b.encode()}}, now);
  EXPECT_TRUE(q.approvers.empty());
}

TEST(AuditLog, ChainVerifiesAndAnAlteredRowIsNamed) {
  TempDir d;
  auto cat = Catalog::open(d.path + "/catalog.db");
  ASSERT_TRUE(cat.ok()) << cat.error().message;
  ASSERT_TRUE(audit_append(*cat, "", "executives", "operator:root", "{\"v\":1}").ok());
  ASSERT_TRUE(audit_append(*cat, "0123456789abcdef0123456789abcdef", "request", "operator:root", "{}").ok());
  ASSERT_TRUE(audit_append(*cat, "0123456789abcdef0123456789abcdef", "start", "operator:root", "{\"hosts\":[\"db\"]}").ok());
  EXPECT_FALSE(audit_append(*cat, "", "x", "y", "not json").ok());
  auto v = audit_verify(*cat);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->rows.size(), 3u);
  EXPECT_EQ(v->first_bad, 0);
  EXPECT_EQ(v->rows[0].prev_hash, std::string(64, '0'));
  EXPECT_EQ(v->rows[1].prev_hash, v->rows[0].hash);
  // Append-only: updates are refused by the schema...
  EXPECT_NE(sqlite3_exec(cat->handle(), "UPDATE audit_log SET actor = 'x' WHERE seq = 2", nullptr, nullptr, nullptr), SQLITE_OK);
  // ...and a determined editor (trigger dropped) is caught by the chain.
  ASSERT_EQ(sqlite3_exec(cat->handle(), "DROP TRIGGER audit_log_append_only_update; UPDATE audit_log SET actor = 'x' WHERE seq = 2",
                         nullptr, nullptr, nullptr), SQLITE_OK);
  v = audit_verify(*cat);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->first_bad, 2);
  EXPECT_NE(v->problem.find("altered"), std::string::npos);
}

TEST(AuditLog, CanonicalRowIsLengthPrefixed) {
  AuditRow r;
  r.seq = 1;
  r.time = 2;
  r.event = "a\nb";
  r.actor = "c";
  r.detail = "{}";
  EXPECT_EQ(audit_canonical(r), "planb-audit 1\nseq 1:1\ntime 1:2\ninvocation 0:\nevent 3:a\nb\nactor 1:c\ndetail 2:{}\n");
  AuditRow s = r;
  s.event = "a";
  s.actor = "b\nactor 1:c";
  EXPECT_NE(audit_row_hash(r), audit_row_hash(s));
}
