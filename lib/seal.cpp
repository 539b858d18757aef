#include "seal.hpp"

#include "bytes.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <sstream>
#include <vector>

#include "bundle.hpp"
#include "fsutil.hpp"
#include "seal_crypto.hpp"
#include "store.hpp"

namespace planb {

// Envelope:
//   "PBSL" u8 version u32le header-length header-text        (header section)
//   crypto_box_seal(stream key) [80] secretstream header [24] (key section)
//   chunks: u32le length, ciphertext (length = plaintext + 17), last one FINAL
//   u32le 0                                                    (end of chunks)
//   "PBST" H(header section) H(key section) u64le chunk-count
//   chunk-count x H(length ‖ ciphertext)  signature[64]        (trailer)
// The signature is Ed25519 over kSigDomain ‖ H(header section) ‖
// H(key section) ‖ u64le count ‖ H(the chunk hash list). H is BLAKE3-256 (it
// was BLAKE2b-256 in version 1, which is refused). The chunks are
// crypto_secretstream_xchacha20poly1305, computed by SecretStream.
namespace {

constexpr char kMagic[4] = {'P', 'B', 'S', 'L'};
constexpr char kTrailerMagic[4] = {'P', 'B', 'S', 'T'};
constexpr char kSigDomain[] = "planb-sealed 2 signature";
constexpr size_t kSealedKeyBytes = crypto_box_SEALBYTES + crypto_secretstream_xchacha20poly1305_KEYBYTES;
constexpr size_t kSsHeaderBytes = crypto_secretstream_xchacha20poly1305_HEADERBYTES;
constexpr size_t kKeySection = kSealedKeyBytes + kSsHeaderBytes;
constexpr size_t kAbytes = SecretStream::kAbytes;
constexpr size_t kMaxChunkCt = kSealChunk + kAbytes;
constexpr size_t kMaxHeader = 64 * 1024;
constexpr size_t kTrailerFixed = 4 + 32 + 32 + 8;  // before the hash list


double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string signed_message(const Hash& hh, const Hash& hk, uint64_t count, const Hash& hl) {
  std::string m(kSigDomain, sizeof kSigDomain - 1);
  m.append(reinterpret_cast<const char*>(hh.b.data()), 32);
  m.append(reinterpret_cast<const char*>(hk.b.data()), 32);
  char c[8];
  put_le64(c, count);
  m.append(c, 8);
  m.append(reinterpret_cast<const char*>(hl.b.data()), 32);
  return m;
}

// PLANB_SERIAL=1: everything on one thread (to measure the cost per core).
bool serial() {
  static const bool s = std::getenv("PLANB_SERIAL") != nullptr;
  return s;
}

Hash chunk_hash(const char* len4, const char* ct, size_t n) {
  Blake3 h;
  h.update(len4, 4);
  h.update(ct, n);
  return h.final();
}

Result<size_t> pread_full(int fd, void* buf, size_t len, uint64_t off, const std::string& what) {
  size_t got = 0;
  while (got < len) {
    ssize_t r = ::pread(fd, static_cast<char*>(buf) + got, len - got, static_cast<off_t>(off + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return fail("failed to read " + what + ": " + errstr(errno));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

}  // namespace

std::string SealHeader::encode() const {
  std::ostringstream o;
  o << "planb-sealed 1\nappliance=" << appliance << "\nserver-key=" << server_key << "\nhost=" << host
    << "\nsequence=" << sequence << "\nparent=" << (parent.is_zero() ? "" : parent.hex()) << "\ntime=" << time_ns
    << "\n";
  return o.str();
}

Result<SealHeader> SealHeader::decode(std::string_view text) {
  auto bad = [](const std::string& why) { return make_error(kExitCorrupt, "failed to open sealed bundle: header: " + why); };
  std::istringstream in{std::string(text)};
  std::string line;
  if (!std::getline(in, line) || line != "planb-sealed 1") return bad("not a sealed-bundle header");
  SealHeader h;
  unsigned have = 0;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) return bad("malformed line");
    std::string k = line.substr(0, eq), v = line.substr(eq + 1);
    try {
      if (k == "appliance") h.appliance = v, have |= 1;
      else if (k == "server-key") h.server_key = v, have |= 2;
      else if (k == "host") h.host = v, have |= 4;
      else if (k == "sequence") {
        size_t pos = 0;
        h.sequence = std::stoull(v, &pos);
        if (pos != v.size()) return bad("bad sequence");
        have |= 8;
      } else if (k == "parent") {
        if (!v.empty()) {
          auto x = Hash::from_hex(v);
          if (!x) return bad("bad parent hash");
          h.parent = *x;
        }
        have |= 16;
      } else if (k == "time") {
        size_t pos = 0;
        h.time_ns = std::stoll(v, &pos);
        if (pos != v.size()) return bad("bad time");
        have |= 32;
      } else {
        return bad("unknown field '" + k + "'");
      }
    } catch (...) {
      return bad("bad number in " + k);
    }
  }
  if (have != 63) return bad("missing fields");
  if (h.encode() != text) return bad("not in canonical form");
  return h;
}

std::optional<BundleHeader> sniff_bundle_header(const char* data, size_t n) {
  if (n == 0) return std::nullopt;
  struct archive* a = archive_read_new();
  // Bundles are zstd-compressed pax; never let libarchive run external filter programs.
  archive_read_support_filter_zstd(a);
  archive_read_support_filter_none(a);
  archive_read_support_format_tar(a);
  std::optional<BundleHeader> out;
  struct archive_entry* e = nullptr;
  if (archive_read_open_memory(a, data, n) == ARCHIVE_OK && archive_read_next_header(a, &e) == ARCHIVE_OK &&
      archive_entry_pathname(e) && std::strcmp(archive_entry_pathname(e), "PLANB-BUNDLE") == 0 &&
      archive_entry_size(e) >= 0 && archive_entry_size(e) < 65536) {
    std::string text(static_cast<size_t>(archive_entry_size(e)), '\0');
    la_ssize_t got = archive_read_data(a, text.data(), text.size());
    if (got == static_cast<la_ssize_t>(text.size())) {
      auto h = BundleHeader::decode(text);
      if (h.ok()) out = *h;
    }
  }
  archive_read_free(a);
  return out;
}

Result<SealResult> seal(const Key& server_public, const Key& signer, const SealOptions& opt) {
  ensure_sodium();
  auto t0 = std::chrono::steady_clock::now();
  if (server_public.type != KeyType::ServerPublic)
    return make_error(kExitUsage, "failed to seal: --to needs a server public key, not a " +
                                      std::string(key_type_name(server_public.type)) + " key");
  if (signer.type != KeyType::ApplianceSecret)
    return make_error(kExitUsage, "failed to seal: --sign needs an appliance secret key, not a " +
                                      std::string(key_type_name(signer.type)) + " key");
  std::string in_name = opt.in == "-" ? "standard input" : opt.in;
  Fd in_fd;
  int in = 0;
  if (opt.in != "-") {
    in_fd = Fd(::open(opt.in.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in_fd.valid())
      return make_error(errno == ENOENT ? kExitNotFound : kExitFailure, "failed to open " + opt.in + ": " + errstr(errno));
    in = in_fd.get();
    ::posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
  }
  std::vector<char> cur(kSealChunk), nxt(kSealChunk), out(4 + kMaxChunkCt);
  PB_ASSIGN(size_t ncur, read_full(in, cur.data(), cur.size(), in_name));

  SealResult res;
  SealHeader& h = res.header;
  if (auto b = sniff_bundle_header(cur.data(), ncur)) {
    res.from_bundle = true;
    h.host = b->host;
    h.sequence = b->sequence;
    h.parent = b->parent_manifest;
  }
  if (opt.host) h.host = *opt.host;
  if (opt.sequence) h.sequence = *opt.sequence;
  if (opt.parent) {
    if (opt.parent->empty()) h.parent = Hash{};
    else {
      auto x = Hash::from_hex(*opt.parent);
      if (!x) return make_error(kExitUsage, "failed to parse options: --parent must be 64 hex digits or empty");
      h.parent = *x;
    }
  }
  if (!res.from_bundle && (!opt.host || !opt.sequence || !opt.parent))
    return make_error(kExitUsage, "failed to seal " + in_name +
                                      ": not a Plan B bundle, so --host, --sequence and --parent are required");
  PB_TRY(validate_host_name(h.host));
  h.appliance = signer.id;
  h.server_key = server_public.id;
  h.time_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();

  PB_ASSIGN(OutputFile output, OutputFile::open(opt.out, 0644));
  const int ofd = output.fd();
  const std::string& out_name = output.name();
  auto emit = [&](const void* p, size_t n) -> Status {
    res.sealed_bytes += n;
    return write_all(ofd, p, n, out_name);
  };

  // Header section.
  std::string text = h.encode();
  std::string hs(kMagic, 4);
  hs.push_back(char(kSealVersion));
  char l4[4];
  put_le32(l4, uint32_t(text.size()));
  hs.append(l4, 4);
  hs += text;
  Hash hh = blake3(hs);
  PB_TRY(emit(hs.data(), hs.size()));

  // Key section: the per-bundle stream key, sealed to the server.
  unsigned char key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
  crypto_secretstream_xchacha20poly1305_keygen(key);
  unsigned char ks[kKeySection];
  crypto_box_seal(ks, key, sizeof key, reinterpret_cast<const unsigned char*>(server_public.bytes.data()));
  SecretStream st;
  st.init_push(ks + kSealedKeyBytes, key);
  sodium_memzero(key, sizeof key);
  Hash hk = blake3(std::string_view(reinterpret_cast<char*>(ks), sizeof ks));
  PB_TRY(emit(ks, sizeof ks));

  // Chunks; each is bound to the header through the additional data. The
  // ciphertext of chunk i is hashed and written on a second thread while
  // chunk i+1 is read and encrypted (two output buffers, constant memory).
  std::string list;
  Blake3 lh;
  std::vector<char> out2(out.size());
  std::vector<char>* outs[2] = {&out, &out2};
  int which = 0;
  std::future<Status> pending;
  for (;;) {
    size_t nnxt = 0;
    if (ncur == kSealChunk) {
      PB_ASSIGN(nnxt, read_full(in, nxt.data(), nxt.size(), in_name));
    }
    bool final = nnxt == 0;
    char* o = outs[which]->data();
    put_le32(o, uint32_t(ncur + kAbytes));
    if (!st.push(reinterpret_cast<unsigned char*>(o + 4), reinterpret_cast<const unsigned char*>(cur.data()), ncur,
                 hh.b.data(), 32, final ? SecretStream::kTagFinal : SecretStream::kTagMessage))
      return fail("failed to seal " + in_name + ": encryption failed (OpenSSL)");
    if (pending.valid()) PB_TRY(pending.get());
    size_t len = ncur + kAbytes;
    auto finish_chunk = [&, o, len]() -> Status {
      Hash ch = chunk_hash(o, o + 4, len);
      lh.update(ch.b.data(), 32);
      list.append(reinterpret_cast<const char*>(ch.b.data()), 32);
      return emit(o, 4 + len);
    };
    if (serial()) PB_TRY(finish_chunk());
    else pending = std::async(std::launch::async, finish_chunk);
    which ^= 1;
    res.plain_bytes += ncur;
    res.chunks++;
    if (final) break;
    std::swap(cur, nxt);
    ncur = nnxt;
  }
  if (pending.valid()) PB_TRY(pending.get());
  sodium_memzero(cur.data(), cur.size());
  sodium_memzero(nxt.data(), nxt.size());

  // End marker and trailer.
  std::string tr(4, '\0');
  tr.append(kTrailerMagic, 4);
  tr.append(reinterpret_cast<const char*>(hh.b.data()), 32);
  tr.append(reinterpret_cast<const char*>(hk.b.data()), 32);
  char c8[8];
  put_le64(c8, res.chunks);
  tr.append(c8, 8);
  tr += list;
  std::string msg = signed_message(hh, hk, res.chunks, lh.final());
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                       reinterpret_cast<const unsigned char*>(signer.bytes.data()));
  tr.append(reinterpret_cast<char*>(sig), sizeof sig);
  PB_TRY(emit(tr.data(), tr.size()));
  PB_TRY(output.commit());
  res.seconds = since(t0);
  return res;
}

Result<OpenResult> open_sealed(const Key& server_secret, const OpenOptions& opt) {
  ensure_sodium();
  auto t0 = std::chrono::steady_clock::now();
  if (server_secret.type != KeyType::ServerSecret)
    return make_error(kExitUsage, "failed to open sealed bundle: --key needs the server's secret key, not a " +
                                      std::string(key_type_name(server_secret.type)) + " key (an appliance cannot open bundles)");
  if (opt.signers.empty()) return make_error(kExitUsage, "failed to parse options: --signers DIR is required with --open");
  std::string name = opt.in == "-" ? "standard input" : opt.in;
  auto corrupt = [&](const std::string& why) { return make_error(kExitCorrupt, "failed to open sealed bundle " + name + ": " + why); };
  auto truncated = [&](const std::string& why) {
    return make_error(kExitCorrupt, "failed to open sealed bundle " + name + ": truncated: " + why);
  };

  // The input, as a file we can read twice: stdin is spooled to an unlinked temp file.
  Fd in;
  if (opt.in == "-") {
    std::string dir;
    if (opt.out != "-") dir = dirname_of(opt.out);
    else if (const char* t = std::getenv("TMPDIR"); t && *t) dir = t;
    else dir = "/tmp";
    std::string tmp = temp_name(dir, "planb-seal-spool");
    in = Fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!in.valid()) return fail("failed to create spool file " + tmp + ": " + errstr(errno));
    ::unlink(tmp.c_str());
    std::vector<char> buf(kSealChunk);
    for (;;) {
      PB_ASSIGN(size_t n, read_full(0, buf.data(), buf.size(), name));
      if (n == 0) break;
      PB_TRY(write_all(in.get(), buf.data(), n, "spool file " + tmp));
      if (n < buf.size()) break;
    }
  } else {
    in = Fd(::open(opt.in.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in.valid())
      return make_error(errno == ENOENT ? kExitNotFound : kExitFailure, "failed to open " + opt.in + ": " + errstr(errno));
  }
  struct stat sb;
  if (::fstat(in.get(), &sb) != 0) return fail("failed to stat " + name + ": " + errstr(errno));
  uint64_t size = static_cast<uint64_t>(sb.st_size);
  int fd = in.get();
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

  // Header section.
  char pre[9];
  PB_ASSIGN(size_t n, pread_full(fd, pre, 9, 0, name));
  if (n < 4 || std::memcmp(pre, kMagic, 4) != 0) return corrupt("header: not a sealed bundle (bad magic)");
  if (n < 9) return truncated("header: stream ended inside the header");
  if (uint8_t(pre[4]) != kSealVersion)
    return corrupt("header: unsupported sealed-bundle version " + std::to_string(uint8_t(pre[4])) + " (this is version " +
                   std::to_string(kSealVersion) + ")");
  uint32_t hlen = get_le32(pre + 5);
  if (hlen > kMaxHeader) return corrupt("header: bad header length " + std::to_string(hlen));
  std::string hs(9 + hlen, '\0');
  std::memcpy(hs.data(), pre, 9);
  PB_ASSIGN(n, pread_full(fd, hs.data() + 9, hlen, 9, name));
  if (n < hlen) return truncated("header: stream ended inside the header");
  auto hd = SealHeader::decode(std::string_view(hs).substr(9));
  if (!hd.ok()) return make_error(kExitCorrupt, "failed to open sealed bundle " + name + ": " + hd.error().message.substr(
                                                      std::string("failed to open sealed bundle: ").size()));
  OpenResult res;
  res.header = *hd;
  res.sealed_bytes = size;
  uint64_t off = hs.size();

  // Key section.
  unsigned char ks[kKeySection];
  PB_ASSIGN(n, pread_full(fd, ks, sizeof ks, off, name));
  if (n < sizeof ks) return truncated("sealed key: stream ended inside the sealed key");
  off += sizeof ks;
  const uint64_t chunks_off = off;

  // Structure: chunk lengths, end marker, trailer, nothing after it.
  uint64_t count = 0;
  for (;;) {
    char l4[4];
    PB_ASSIGN(n, pread_full(fd, l4, 4, off, name));
    if (n < 4) return truncated("stream ended before the final chunk (after chunk " + std::to_string(count) + ")");
    uint32_t len = get_le32(l4);
    if (len == 0) break;
    std::string cn = "chunk " + std::to_string(count + 1);
    if (len < kAbytes || len > kMaxChunkCt) return corrupt(cn + ": bad length field (" + std::to_string(len) + ")");
    if (off + 4 + len > size) return truncated("stream ended inside " + cn + ", before the final chunk");
    off += 4 + len;
    count++;
    if (len < kMaxChunkCt) {
      PB_ASSIGN(n, pread_full(fd, l4, 4, off, name));
      if (n < 4) return truncated("stream ended after " + cn + ", before the end of the chunks");
      if (get_le32(l4) != 0)
        return corrupt(cn + ": bad length field (a short chunk is not followed by the end marker)");
    }
  }
  if (count == 0) return truncated("stream ended before the final chunk (no chunks)");
  off += 4;  // end marker
  const uint64_t trailer_off = off;
  char tf[kTrailerFixed];
  PB_ASSIGN(n, pread_full(fd, tf, sizeof tf, trailer_off, name));
  if (n < sizeof tf) return truncated("trailer: stream ended inside the trailer");
  if (std::memcmp(tf, kTrailerMagic, 4) != 0) return corrupt("trailer: bad magic");
  if (get_le64(tf + 68) != count)
    return corrupt("trailer: its chunk count " + std::to_string(get_le64(tf + 68)) + " does not match the " +
                   std::to_string(count) + " chunks");
  const uint64_t list_off = trailer_off + kTrailerFixed;
  const uint64_t end = list_off + 32 * count + crypto_sign_BYTES;
  if (size < end) return truncated("trailer: stream ended inside the trailer");
  if (size > end) return corrupt("trailing garbage: " + std::to_string(size - end) + " bytes after the trailer");
  Hash stored_hh, stored_hk;
  std::memcpy(stored_hh.b.data(), tf + 4, 32);
  std::memcpy(stored_hk.b.data(), tf + 36, 32);
  unsigned char sig[crypto_sign_BYTES];
  PB_ASSIGN(n, pread_full(fd, sig, sizeof sig, end - sizeof sig, name));

  // Hash every part against the trailer (the trailer is checked by the signature below).
  std::string bad_part;
  Hash hh = blake3(hs);
  Hash hk = blake3(std::string_view(reinterpret_cast<char*>(ks), sizeof ks));
  if (hh != stored_hh) bad_part = "header";
  else if (hk != stored_hk) bad_part = "sealed key";
  std::vector<char> buf(4 + kMaxChunkCt);
  std::vector<char> lbuf;
  // All chunks but the last are full (checked above), so chunk i starts at
  // chunks_off + i * (4 + kMaxChunkCt). Two threads hash alternate chunks.
  auto hash_chunks = [&](uint64_t first, uint64_t step, std::vector<char>& b) -> Result<uint64_t> {
    for (uint64_t i = first; i < count; i += step) {
      uint64_t coff = chunks_off + i * (4 + kMaxChunkCt);
      PB_ASSIGN(size_t got, pread_full(fd, b.data(), 4, coff, name));
      uint32_t len = get_le32(b.data());
      if (got < 4 || len < kAbytes || len > kMaxChunkCt) return i;
      PB_ASSIGN(got, pread_full(fd, b.data() + 4, len, coff + 4, name));
      if (got < len) return i;
      Hash ch = chunk_hash(b.data(), b.data() + 4, len);
      char stored[32];
      PB_ASSIGN(got, pread_full(fd, stored, 32, list_off + i * 32, name));
      if (got < 32 || std::memcmp(ch.b.data(), stored, 32) != 0) return i;
    }
    return count;  // all match
  };
  uint64_t first_bad = count;
  if (serial()) {
    PB_ASSIGN(first_bad, hash_chunks(0, 1, buf));
  } else {
    std::vector<char> buf2(buf.size());
    auto odd = std::async(std::launch::async, [&] { return hash_chunks(1, 2, buf2); });
    auto even = hash_chunks(0, 2, buf);
    auto oddr = odd.get();
    if (!even.ok()) return even.error();
    if (!oddr.ok()) return oddr.error();
    first_bad = std::min(*even, *oddr);
  }
  if (bad_part.empty() && first_bad < count) bad_part = "chunk " + std::to_string(first_bad + 1);
  Blake3 lh;
  for (uint64_t i = 0; i < count; i += 1024) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(1024, count - i) * 32);
    lbuf.resize(k);
    PB_ASSIGN(n, pread_full(fd, lbuf.data(), k, list_off + i * 32, name));
    if (n < k) return truncated("trailer: stream ended inside the trailer");
    lh.update(lbuf.data(), k);
  }
  Hash hl = lh.final();

  // The signer, then the signature over the trailer's hashes.
  auto signer = find_signer(opt.signers, res.header.appliance);
  if (!signer.ok()) {
    if (bad_part == "header") return corrupt("header: damaged (its hash does not match the trailer)");
    Error e = signer.error();
    e.message = "failed to open sealed bundle " + name + ": " + e.message.substr(std::strlen("failed to "));
    return e;
  }
  std::string msg = signed_message(stored_hh, stored_hk, count, hl);
  bool sig_ok = crypto_sign_verify_detached(sig, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                                            reinterpret_cast<const unsigned char*>(signer->bytes.data())) == 0;
  if (!sig_ok) {
    if (!bad_part.empty())
      return make_error(kExitBadSignature, "failed to open sealed bundle " + name +
                                               ": trailer/signature: bad signature (the trailer's hash of the " +
                                               bad_part + " does not match it either: damaged or forged)");
    return make_error(kExitBadSignature, "failed to open sealed bundle " + name +
                                             ": trailer/signature: bad signature (not signed by appliance " +
                                             res.header.appliance + ", or the trailer is damaged)");
  }
  if (!bad_part.empty()) return corrupt(bad_part + ": damaged (its hash does not match the signed trailer)");
  if (res.header.server_key != server_secret.id)
    return make_error(kExitFailure, "failed to open sealed bundle " + name + ": wrong recipient key: it is sealed to server key " +
                                        res.header.server_key + ", not " + server_secret.id);

  // Verified: now decrypt. Each chunk is authenticated again by its MAC under
  // the stream key, so a file changed since the first pass cannot slip in.
  unsigned char key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
  std::string pk = server_secret.public_bytes();
  if (crypto_box_seal_open(key, ks, kSealedKeyBytes, reinterpret_cast<const unsigned char*>(pk.data()),
                           reinterpret_cast<const unsigned char*>(server_secret.bytes.data())) != 0)
    return make_error(kExitFailure, "failed to open sealed bundle " + name +
                                        ": sealed key: cannot be opened with this server key (wrong recipient key)");
  SecretStream st;
  bool init_ok = st.init_pull(ks + kSealedKeyBytes, key);
  sodium_memzero(key, sizeof key);
  if (!init_ok) return corrupt("sealed key: bad stream header");

  PB_ASSIGN(OutputFile output, OutputFile::open(opt.out, 0600));
  const int ofd = output.fd();
  const std::string& out_name = output.name();
  // Chunk i is written on a second thread while chunk i+1 is read and decrypted.
  std::vector<char> plain(kSealChunk), plain2(kSealChunk);
  std::vector<char>* plains[2] = {&plain, &plain2};
  int which = 0;
  std::future<Status> pending;
  uint64_t coff = chunks_off;
  for (uint64_t i = 0; i < count; ++i) {
    std::string cn = "chunk " + std::to_string(i + 1);
    PB_ASSIGN(n, pread_full(fd, buf.data(), 4, coff, name));
    uint32_t len = get_le32(buf.data());
    if (n < 4 || len < kAbytes || len > kMaxChunkCt) return corrupt(cn + ": changed while being read");
    PB_ASSIGN(n, pread_full(fd, buf.data() + 4, len, coff + 4, name));
    if (n < len) return truncated("stream ended inside " + cn);
    size_t plen = len - kAbytes;
    unsigned char tag = 0;
    char* p = plains[which]->data();
    if (!st.pull(reinterpret_cast<unsigned char*>(p), &tag, reinterpret_cast<const unsigned char*>(buf.data() + 4), len,
                 hh.b.data(), 32))
      return corrupt(cn + ": authentication failed (damaged)");
    bool last = i + 1 == count;
    if (tag == SecretStream::kTagFinal && !last) return corrupt(cn + ": final tag before the last chunk");
    if (last && tag != SecretStream::kTagFinal) return truncated("stream ended before the final chunk");
    if (pending.valid()) PB_TRY(pending.get());
    if (serial()) PB_TRY(write_all(ofd, p, plen, out_name));
    else pending = std::async(std::launch::async, [&, p, plen] { return write_all(ofd, p, plen, out_name); });
    which ^= 1;
    res.plain_bytes += plen;
    coff += 4 + len;
  }
  if (pending.valid()) PB_TRY(pending.get());
  sodium_memzero(plain.data(), plain.size());
  sodium_memzero(plain2.data(), plain2.size());
  res.chunks = count;
  PB_TRY(output.commit());
  res.seconds = since(t0);
  return res;
}

}  // namespace planb
