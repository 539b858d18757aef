// sftp:// and https:// transports through libcurl. One easy handle per run, so
// the SSH or TLS session is set up once and reused for every request.
//   sftp:  key auth only, host key checked against known_hosts (never trusted
//          on first use); rename and rm as SFTP quote commands; free space by
//          the statvfs@openssh.com extension.
//   https: WebDAV PUT, MOVE (Overwrite: F), DELETE; TLS verified against the
//          system CAs or --cacert, optional client certificate.
#include <curl/curl.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "fsutil.hpp"
#include "transport.hpp"

namespace planb {

namespace {

std::string percent_decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    c = char(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += char(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string home_file(const char* rel) {
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/root") + "/" + rel;
}

struct Reader {
  int fd;
  uint64_t pos, end;
};

size_t read_cb(char* buf, size_t size, size_t nitems, void* user) {
  auto* r = static_cast<Reader*>(user);
  size_t want = size * nitems;
  if (r->pos >= r->end) return 0;
  if (want > r->end - r->pos) want = size_t(r->end - r->pos);
  for (;;) {
    ssize_t n = ::pread(r->fd, buf, want, off_t(r->pos));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return CURL_READFUNC_ABORT;
    r->pos += uint64_t(n);
    return size_t(n);
  }
}

int seek_cb(void* user, curl_off_t offset, int origin) {
  auto* r = static_cast<Reader*>(user);
  if (origin != SEEK_SET || offset < 0 || uint64_t(offset) > r->end) return CURL_SEEKFUNC_FAIL;
  r->pos = uint64_t(offset);
  return CURL_SEEKFUNC_OK;
}

size_t discard_cb(char*, size_t size, size_t nitems, void*) { return size * nitems; }

size_t hash_cb(char* buf, size_t size, size_t nitems, void* user) {
  static_cast<Hasher*>(user)->update(buf, size * nitems);
  return size * nitems;
}

size_t collect_cb(char* buf, size_t size, size_t nitems, void* user) {
  static_cast<std::string*>(user)->append(buf, size * nitems);
  return size * nitems;
}

int xfer_cb(void* user, curl_off_t, curl_off_t, curl_off_t ultotal, curl_off_t ulnow) {
  (void)ultotal;
  auto* p = static_cast<const XferProgress*>(user);
  if (*p) (*p)(uint64_t(ulnow));
  return 0;
}

class CurlTransport : public Transport {
 public:
  CurlTransport(bool sftp, std::string base, std::string remote_dir, std::string shown, TransportOptions opt)
      : sftp_(sftp), base_(std::move(base)), dir_(std::move(remote_dir)), shown_(std::move(shown)),
        opt_(std::move(opt)) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    h_ = curl_easy_init();
  }
  ~CurlTransport() override {
    if (h_) curl_easy_cleanup(h_);
  }

  bool ready() const { return h_ != nullptr; }
  void set_ssh(std::string identity, std::string known_hosts) {
    identity_ = std::move(identity);
    known_hosts_ = std::move(known_hosts);
  }

  std::string describe() const override { return shown_; }

  Result<std::optional<uint64_t>> size_of(const std::string& name) override {
    reset(url(name));
    curl_easy_setopt(h_, CURLOPT_NOBODY, 1L);
    CURLcode rc = curl_easy_perform(h_);
    long status = response_code();
    if (rc == CURLE_REMOTE_FILE_NOT_FOUND || (!sftp_ && rc == CURLE_OK && status == 404))
      return std::optional<uint64_t>{};
    PB_TRY(check(rc, "failed to look up " + name));
    curl_off_t len = -1;
    curl_easy_getinfo(h_, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
    if (len < 0) return fail("failed to look up " + name + ": the server did not say its size");
    return std::optional<uint64_t>{uint64_t(len)};
  }

  bool can_resume() const override { return sftp_; }

  Status upload(int fd, uint64_t offset, uint64_t total, const std::string& name,
                const XferProgress& progress) override {
    Reader r{fd, offset, total};
    reset(url(name));
    curl_easy_setopt(h_, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h_, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(h_, CURLOPT_READDATA, &r);
    curl_easy_setopt(h_, CURLOPT_SEEKFUNCTION, seek_cb);
    curl_easy_setopt(h_, CURLOPT_SEEKDATA, &r);
    if (sftp_ && offset > 0) {
      // Append to the partial temp file: curl seeks our reader to `offset`.
      r.pos = 0;
      curl_easy_setopt(h_, CURLOPT_RESUME_FROM_LARGE, curl_off_t(offset));
      curl_easy_setopt(h_, CURLOPT_INFILESIZE_LARGE, curl_off_t(total));
    } else {
      curl_easy_setopt(h_, CURLOPT_INFILESIZE_LARGE, curl_off_t(total - offset));
    }
    if (!sftp_) {
      headers_ = curl_slist_append(headers_, "Expect:");
      curl_easy_setopt(h_, CURLOPT_HTTPHEADER, headers_);
    }
    if (opt_.limit_rate) curl_easy_setopt(h_, CURLOPT_MAX_SEND_SPEED_LARGE, curl_off_t(opt_.limit_rate));
    curl_easy_setopt(h_, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h_, CURLOPT_XFERINFOFUNCTION, xfer_cb);
    curl_easy_setopt(h_, CURLOPT_XFERINFODATA, &progress);
    return check(curl_easy_perform(h_), "failed to upload " + name);
  }

  Result<Hash> hash_of(const std::string& name) override {
    Hasher hasher;
    reset(url(name));
    curl_easy_setopt(h_, CURLOPT_WRITEFUNCTION, hash_cb);
    curl_easy_setopt(h_, CURLOPT_WRITEDATA, &hasher);
    PB_TRY(check(curl_easy_perform(h_), "failed to read back " + name));
    return hasher.final();
  }

  Status rename(const std::string& from, const std::string& to) override {
    if (sftp_) {
      // SFTP v3 rename (what OpenSSH speaks) fails when the target exists.
      return quote("rename " + quoted(dir_ + from) + " " + quoted(dir_ + to), "failed to move " + from + " into place");
    }
    reset(url(from));
    curl_easy_setopt(h_, CURLOPT_CUSTOMREQUEST, "MOVE");
    curl_easy_setopt(h_, CURLOPT_NOBODY, 1L);
    headers_ = curl_slist_append(headers_, ("Destination: " + url(to)).c_str());
    headers_ = curl_slist_append(headers_, "Overwrite: F");
    curl_easy_setopt(h_, CURLOPT_HTTPHEADER, headers_);
    CURLcode rc = curl_easy_perform(h_);
    if (rc == CURLE_OK && response_code() == 412)
      return fail("failed to move " + from + " into place: " + to + " already exists");
    return check(rc, "failed to move " + from + " into place");
  }

  Status remove(const std::string& name) override {
    if (sftp_) return quote("rm " + quoted(dir_ + name), "failed to remove " + name);
    reset(url(name));
    curl_easy_setopt(h_, CURLOPT_CUSTOMREQUEST, "DELETE");
    curl_easy_setopt(h_, CURLOPT_NOBODY, 1L);
    CURLcode rc = curl_easy_perform(h_);
    if (rc == CURLE_OK && response_code() == 404) return {};
    return check(rc, "failed to remove " + name);
  }

  Result<std::optional<uint64_t>> free_space() override {
    // WebDAV servers do not say; a failed PUT (507, 413) is reported as disk full.
    if (!sftp_) return std::optional<uint64_t>{};
    std::string out;
    reset(base_);
    curl_easy_setopt(h_, CURLOPT_NOBODY, 1L);
    struct curl_slist* q = curl_slist_append(nullptr, ("statvfs " + quoted(dir_)).c_str());
    curl_easy_setopt(h_, CURLOPT_QUOTE, q);
    curl_easy_setopt(h_, CURLOPT_HEADERFUNCTION, collect_cb);
    curl_easy_setopt(h_, CURLOPT_HEADERDATA, &out);
    CURLcode rc = curl_easy_perform(h_);
    curl_slist_free_all(q);
    if (rc == CURLE_QUOTE_ERROR) return fail("failed to reach the inbox " + shown_ + ": no such directory (or not allowed)");
    PB_TRY(check(rc, "failed to reach the inbox " + shown_));
    auto field = [&](const char* key) -> std::optional<uint64_t> {
      size_t at = out.find(std::string(key) + ": ");
      if (at == std::string::npos) return std::nullopt;
      return std::strtoull(out.c_str() + at + std::strlen(key) + 2, nullptr, 10);
    };
    auto bavail = field("f_bavail"), frsize = field("f_frsize");
    if (!bavail || !frsize) return std::optional<uint64_t>{};
    return std::optional<uint64_t>{*bavail * *frsize};
  }

 private:
  std::string url(const std::string& name) const { return base_ + name; }
  static std::string quoted(const std::string& p) { return "\"" + p + "\""; }

  long response_code() {
    long code = 0;
    curl_easy_getinfo(h_, CURLINFO_RESPONSE_CODE, &code);
    return code;
  }

  void reset(const std::string& u) {
    curl_easy_reset(h_);
    if (headers_) curl_slist_free_all(headers_);
    headers_ = nullptr;
    errbuf_[0] = 0;
    curl_easy_setopt(h_, CURLOPT_URL, u.c_str());
    curl_easy_setopt(h_, CURLOPT_ERRORBUFFER, errbuf_);
    curl_easy_setopt(h_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h_, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(h_, CURLOPT_CONNECTTIMEOUT, opt_.connect_timeout);
    curl_easy_setopt(h_, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h_, CURLOPT_LOW_SPEED_TIME, opt_.stall_timeout);
    curl_easy_setopt(h_, CURLOPT_PROTOCOLS_STR, sftp_ ? "sftp" : "https");
    curl_easy_setopt(h_, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    if (sftp_) {
      curl_easy_setopt(h_, CURLOPT_SSH_AUTH_TYPES, long(CURLSSH_AUTH_PUBLICKEY));
      curl_easy_setopt(h_, CURLOPT_SSH_PRIVATE_KEYFILE, identity_.c_str());
      curl_easy_setopt(h_, CURLOPT_SSH_KNOWNHOSTS, known_hosts_.c_str());
    } else {
      curl_easy_setopt(h_, CURLOPT_SSL_VERIFYPEER, 1L);
      curl_easy_setopt(h_, CURLOPT_SSL_VERIFYHOST, 2L);
      if (!opt_.cacert.empty()) curl_easy_setopt(h_, CURLOPT_CAINFO, opt_.cacert.c_str());
      if (!opt_.cert.empty()) curl_easy_setopt(h_, CURLOPT_SSLCERT, opt_.cert.c_str());
      if (!opt_.cert_key.empty()) curl_easy_setopt(h_, CURLOPT_SSLKEY, opt_.cert_key.c_str());
    }
  }

  Status quote(const std::string& cmd, const std::string& what) {
    reset(base_);
    curl_easy_setopt(h_, CURLOPT_NOBODY, 1L);
    struct curl_slist* q = curl_slist_append(nullptr, cmd.c_str());
    curl_easy_setopt(h_, CURLOPT_QUOTE, q);
    CURLcode rc = curl_easy_perform(h_);
    curl_slist_free_all(q);
    if (rc == CURLE_QUOTE_ERROR) return fail(what + ": " + reason(rc));
    return check(rc, what);
  }

  std::string reason(CURLcode rc) const {
    return errbuf_[0] ? std::string(errbuf_) : std::string(curl_easy_strerror(rc));
  }

  // Maps a finished request to ok / permanent / transient.
  Status check(CURLcode rc, const std::string& what) {
    if (rc == CURLE_OK) {
      if (sftp_) return {};
      long st = response_code();
      if (st >= 200 && st < 300) return {};
      std::string msg = what + ": HTTP " + std::to_string(st);
      if (st == 401 || st == 403) return fail(msg + " (authorisation refused)");
      if (st == 507 || st == 413) return fail(msg + " (disk full on the server or bundle too large)");
      if (st == 408 || st == 429 || st >= 500) return transient(msg);
      return fail(msg);
    }
    std::string msg = what + ": " + reason(rc);
    switch (rc) {
      case CURLE_LOGIN_DENIED:
        return fail(msg + " (authentication refused)");
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CACERT_BADFILE:
      case CURLE_SSL_CERTPROBLEM:
      case CURLE_SSL_ISSUER_ERROR:
        return fail(msg + " (server identity not verified)");
      case CURLE_REMOTE_DISK_FULL:
        return fail(msg + " (disk full on the server)");
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_CONNECT:
      case CURLE_OPERATION_TIMEDOUT:
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
      case CURLE_GOT_NOTHING:
      case CURLE_PARTIAL_FILE:
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_SSH:
      case CURLE_AGAIN:
      case CURLE_HTTP2:
      case CURLE_HTTP2_STREAM:
        return transient(msg);
      default:
        return fail(msg);
    }
  }

  bool sftp_;
  std::string base_, dir_, shown_;
  TransportOptions opt_;
  std::string identity_, known_hosts_;
  CURL* h_ = nullptr;
  struct curl_slist* headers_ = nullptr;
  char errbuf_[CURL_ERROR_SIZE] = {};
};

}  // namespace

Result<std::unique_ptr<Transport>> make_curl_transport(const std::string& url, const TransportOptions& opt) {
  bool sftp = url.rfind("sftp://", 0) == 0;
  size_t scheme_end = url.find("://") + 3;
  size_t path_at = url.find('/', scheme_end);
  if (path_at == std::string::npos || path_at == scheme_end)
    return make_error(kExitUsage, "failed to parse destination " + url + ": expected " +
                                      (sftp ? "sftp://[user@]host[:port]/dir/" : "https://host[:port]/dir/"));
  std::string authority = url.substr(scheme_end, path_at - scheme_end);
  std::string path = url.substr(path_at);
  if (path.back() != '/') path += '/';
  std::string shown = url.substr(0, scheme_end);
  size_t at = authority.rfind('@');
  if (at != std::string::npos && authority.substr(0, at).find(':') != std::string::npos)
    return make_error(kExitUsage, "failed to parse destination: passwords are not accepted in URLs (secrets never on argv)");
  shown += authority + path;
  auto t = std::make_unique<CurlTransport>(sftp, url.substr(0, scheme_end) + authority + path, percent_decode(path),
                                           shown, opt);
  if (!t->ready()) return fail("failed to start libcurl");
  if (sftp) {
    std::string identity = opt.identity;
    if (identity.empty()) {
      for (const char* k : {".ssh/id_ed25519", ".ssh/id_ecdsa", ".ssh/id_rsa"})
        if (path_exists(home_file(k))) {
          identity = home_file(k);
          break;
        }
      if (identity.empty())
        return make_error(kExitUsage, "failed to find an SSH key: give --identity FILE (no ~/.ssh/id_ed25519 or id_rsa)");
    }
    if (!path_exists(identity)) return make_error(kExitUsage, "failed to read SSH key " + identity + ": no such file");
    std::string known = opt.known_hosts.empty() ? home_file(".ssh/known_hosts") : opt.known_hosts;
    if (!path_exists(known))
      return make_error(kExitUsage, "failed to check the server's host key: " + known +
                                        " does not exist (add the server with ssh-keyscan; unknown hosts are never trusted)");
    t->set_ssh(identity, known);
  }
  return std::unique_ptr<Transport>(std::move(t));
}

Result<std::unique_ptr<Transport>> open_transport(const std::string& url, const TransportOptions& opt) {
  if (url.rfind("file://", 0) == 0) {
    std::string dir = percent_decode(url.substr(7));
    if (dir.empty() || dir[0] != '/')
      return make_error(kExitUsage, "failed to parse destination " + url + ": expected file:///absolute/dir/");
    return make_file_transport(dir, opt);
  }
  if (url.rfind("sftp://", 0) == 0 || url.rfind("https://", 0) == 0) return make_curl_transport(url, opt);
  if (url.rfind("http://", 0) == 0)
    return make_error(kExitUsage, "failed to parse destination " + url + ": plain http:// is refused; use https://");
  if (!url.empty() && url[0] == '/') return make_file_transport(url, opt);
  return make_error(kExitUsage, "failed to parse destination " + url +
                                    ": expected file:///dir/, sftp://[user@]host[:port]/dir/ or https://host/dir/");
}

}  // namespace planb
