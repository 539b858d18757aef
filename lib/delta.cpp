#include "delta.hpp"

#include <librsync.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

namespace planb {

namespace {

// librsync reports problems on stderr by default; Plan B reports them itself.
void quiet_trace(rs_loglevel, char const*) {}
const bool kQuiet = [] {
  rs_trace_to(&quiet_trace);
  return true;
}();

// Drive a librsync job over an in-memory input, collecting output.
Status drive(rs_job_t* job, std::string_view in, std::string* out, const char* what) {
  rs_buffers_t b{};
  b.next_in = const_cast<char*>(in.data());
  b.avail_in = in.size();
  b.eof_in = 1;
  char buf[65536];
  for (;;) {
    b.next_out = buf;
    b.avail_out = sizeof buf;
    rs_result r = rs_job_iter(job, &b);
    if (out) out->append(buf, sizeof buf - b.avail_out);
    if (r == RS_DONE) return {};
    if (r != RS_BLOCKED) return fail(std::string("failed to compute ") + what + ": " + rs_strerror(r));
  }
}

void put_be(std::string& s, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) s.push_back(char(v >> (8 * i)));
}

// Encoded size of one command.
int width(uint64_t v) { return v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffULL ? 4 : 8; }
int width_code(int w) { return w == 1 ? 0 : w == 2 ? 1 : w == 4 ? 2 : 3; }

std::string encode_copy(uint64_t off, uint64_t len) {
  std::string s;
  int wo = width(off), wl = width(len);
  s.push_back(char(0x45 + 4 * width_code(wo) + width_code(wl)));  // RS_OP_COPY_Nx_Nx
  put_be(s, off, wo);
  put_be(s, len, wl);
  return s;
}
std::string encode_literal_head(uint64_t len) {
  std::string s;
  if (len >= 1 && len <= 64) {
    s.push_back(char(len));  // RS_OP_LITERAL_1..64
    return s;
  }
  int w = width(len);
  s.push_back(char(0x41 + width_code(w)));  // RS_OP_LITERAL_N1..N8
  put_be(s, len, w);
  return s;
}

}  // namespace

Result<std::string> rs_signature(std::string_view base, size_t* block_len_out) {
  rs_magic_number magic = RS_RK_BLAKE2_SIG_MAGIC;
  size_t block_len = 0, strong_len = 0;
  if (rs_sig_args(rs_long_t(base.size()), &magic, &block_len, &strong_len) != RS_DONE)
    return fail("failed to choose signature arguments");
  if (block_len_out) *block_len_out = block_len;
  rs_job_t* job = rs_sig_begin(block_len, strong_len, magic);
  std::string sig;
  Status st = drive(job, base, &sig, "signature");
  rs_job_free(job);
  if (!st.ok()) return st.error();
  return sig;
}

Result<std::string> rs_delta(std::string_view signature, std::string_view target) {
  rs_signature_t* sig = nullptr;
  rs_job_t* job = rs_loadsig_begin(&sig);
  Status st = drive(job, signature, nullptr, "signature load");
  rs_job_free(job);
  if (!st.ok()) {
    if (sig) rs_free_sumset(sig);
    return st.error();
  }
  if (rs_build_hash_table(sig) != RS_DONE) {
    rs_free_sumset(sig);
    return fail("failed to index signature");
  }
  job = rs_delta_begin(sig);
  std::string out;
  st = drive(job, target, &out, "delta");
  rs_job_free(job);
  rs_free_sumset(sig);
  if (!st.ok()) return st.error();
  return out;
}

struct PatchCallback {
  static rs_result copy(void* self_v, rs_long_t pos, size_t* len, void** buf) {
    auto* self = static_cast<RsPatcher*>(self_v);
    auto r = self->basis_(uint64_t(pos), static_cast<char*>(*buf), *len);
    if (!r.ok()) {
      self->cb_error_ = r.error();
      self->cb_failed_ = true;
      return RS_IO_ERROR;
    }
    if (*r == 0) return RS_INPUT_ENDED;
    *len = *r;
    return RS_DONE;
  }
};

RsPatcher::RsPatcher(BasisReader basis, Sink out) : basis_(std::move(basis)), out_(std::move(out)) {
  job_ = rs_patch_begin(&PatchCallback::copy, this);
  outbuf_.resize(1 << 20);
}

RsPatcher::~RsPatcher() { rs_job_free(static_cast<rs_job_t*>(job_)); }

Status RsPatcher::feed(std::string_view delta, bool eof) {
  rs_buffers_t b{};
  b.next_in = const_cast<char*>(delta.data());
  b.avail_in = delta.size();
  b.eof_in = eof;
  for (;;) {
    b.next_out = outbuf_.data();
    b.avail_out = outbuf_.size();
    rs_result r = rs_job_iter(static_cast<rs_job_t*>(job_), &b);
    size_t n = outbuf_.size() - b.avail_out;
    if (n) PB_TRY(out_(std::string_view(outbuf_.data(), n)));
    if (cb_failed_) return cb_error_;
    if (r == RS_DONE) {
      if (b.avail_in) return make_error(kExitCorrupt, "failed to apply delta: trailing data after end");
      return {};
    }
    if (r != RS_BLOCKED) return make_error(kExitCorrupt, std::string("failed to apply delta: ") + rs_strerror(r));
    if (b.avail_in == 0 && n == 0) {
      if (eof) return make_error(kExitCorrupt, "failed to apply delta: truncated");
      return {};  // needs more input
    }
  }
}

std::vector<DeltaOp> plan_chunk_delta(const std::vector<ChunkRef>& base, const std::vector<ChunkRef>& target) {
  std::unordered_map<Hash, uint64_t, HashHasher> where;
  uint64_t off = 0;
  for (auto& c : base) {
    where.emplace(c.id, off);
    off += c.size;
  }
  std::vector<DeltaOp> ops;
  for (auto& c : target) {
    auto it = where.find(c.id);
    if (it != where.end()) {
      if (!ops.empty() && ops.back().copy && ops.back().off + ops.back().len == it->second)
        ops.back().len += c.size;  // contiguous in the base: one COPY
      else
        ops.push_back({true, it->second, c.size, {}});
    } else {
      ops.push_back({false, 0, c.size, c.id});
    }
  }
  return ops;
}

uint64_t chunk_delta_size(const std::vector<DeltaOp>& ops) {
  uint64_t n = 4 + 1;  // magic + END
  for (auto& op : ops)
    n += !op.encoded.empty() ? op.encoded.size()
         : op.copy           ? encode_copy(op.off, op.len).size()
                             : encode_literal_head(op.len).size() + op.len;
  return n;
}

namespace {

uint64_t get_be(const std::string& s, size_t& i, int w) {
  uint64_t v = 0;
  for (int k = 0; k < w; ++k) v = v << 8 | uint8_t(s[i++]);
  return v;
}

// The commands of a librsync delta (no magic, no END), COPY offsets moved by `shift`.
Result<std::string> rebase_commands(const std::string& d, uint64_t shift) {
  static const int widths[4] = {1, 2, 4, 8};
  std::string out;
  size_t i = 4;
  while (i < d.size()) {
    uint8_t op = uint8_t(d[i++]);
    if (op == 0) return out;
    if (op <= 0x44) {
      uint64_t len = op <= 0x40 ? op : get_be(d, i, widths[op - 0x41]);
      if (i + len > d.size()) break;
      out += encode_literal_head(len);
      out.append(d, i, len);
      i += len;
    } else if (op <= 0x54) {
      int code = op - 0x45;
      uint64_t off = get_be(d, i, widths[code / 4]);
      uint64_t len = get_be(d, i, widths[code % 4]);
      out += encode_copy(off + shift, len);
    } else {
      break;
    }
  }
  return fail("failed to parse librsync delta: unexpected command");
}

}  // namespace

Status refine_chunk_delta(ObjectStore& objects, const std::vector<ChunkRef>& base, std::vector<DeltaOp>& ops,
                          uint64_t budget) {
  std::vector<uint64_t> boff;
  uint64_t total = 0;
  for (auto& c : base) {
    boff.push_back(total);
    total += c.size;
  }
  auto read_base = [&](uint64_t a, uint64_t b) -> Result<std::string> {
    std::string out;
    size_t i = size_t(std::upper_bound(boff.begin(), boff.end(), a) - boff.begin()) - 1;
    for (; i < base.size() && boff[i] < b; ++i) {
      PB_ASSIGN(std::string data, objects.get(base[i].id));
      uint64_t lo = std::max(a, boff[i]), hi = std::min(b, boff[i] + base[i].size);
      out.append(data, lo - boff[i], hi - lo);
    }
    return out;
  };
  std::vector<DeltaOp> out;
  for (size_t i = 0; i < ops.size();) {
    if (ops[i].copy) {
      out.push_back(std::move(ops[i++]));
      continue;
    }
    size_t j = i;
    uint64_t run = 0;
    while (j < ops.size() && !ops[j].copy) run += ops[j++].len;
    uint64_t a = i > 0 && ops[i - 1].copy ? ops[i - 1].off + ops[i - 1].len : 0;
    uint64_t b = j < ops.size() ? ops[j].off : total;
    if (run <= budget && b > a && b - a <= (64ull << 20) && run <= (64ull << 20)) {
      budget -= run;
      std::string target;
      for (size_t k = i; k < j; ++k) {
        PB_ASSIGN(std::string data, objects.get(ops[k].chunk));
        target += data;
      }
      PB_ASSIGN(std::string window, read_base(a, b));
      PB_ASSIGN(std::string sig, rs_signature(window));
      PB_ASSIGN(std::string d, rs_delta(sig, target));
      PB_ASSIGN(std::string cmds, rebase_commands(d, a));
      if (cmds.size() < run) {
        out.push_back({false, 0, run, {}, std::move(cmds)});
        i = j;
        continue;
      }
    }
    for (; i < j; ++i) out.push_back(std::move(ops[i]));
  }
  ops = std::move(out);
  return {};
}

Status write_chunk_delta(ObjectStore& objects, const std::vector<DeltaOp>& ops, const Sink& out) {
  std::string head;
  put_be(head, RS_DELTA_MAGIC, 4);
  PB_TRY(out(head));
  for (auto& op : ops) {
    if (!op.encoded.empty()) {
      PB_TRY(out(op.encoded));
      continue;
    }
    if (op.copy) {
      PB_TRY(out(encode_copy(op.off, op.len)));
      continue;
    }
    PB_ASSIGN(std::string data, objects.get(op.chunk));
    if (data.size() != op.len)
      return make_error(kExitCorrupt, "failed to read chunk " + op.chunk.hex() + ": size does not match its index");
    PB_TRY(out(encode_literal_head(op.len)));
    PB_TRY(out(data));
  }
  return out(std::string(1, '\0'));  // RS_OP_END
}

}  // namespace planb
