// Little binary codec: LEB128 varints, zigzag signed ints, length-prefixed strings.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace planb {

// Fixed-width little-endian integers.
inline void put_le32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = char(v >> (8 * i));
}
inline uint32_t get_le32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(uint8_t(p[i])) << (8 * i);
  return v;
}
inline void put_le64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = char(v >> (8 * i));
}
inline uint64_t get_le64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(uint8_t(p[i])) << (8 * i);
  return v;
}

class ByteWriter {
 public:
  std::string& buf() { return out_; }
  void u8(uint8_t v) { out_.push_back(char(v)); }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(char(v | 0x80));
      v >>= 7;
    }
    out_.push_back(char(v));
  }
  void svarint(int64_t v) { varint((uint64_t(v) << 1) ^ uint64_t(v >> 63)); }
  void str(std::string_view s) {
    varint(s.size());
    out_.append(s);
  }
  void raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }

 private:
  std::string out_;
};

// Reader over a buffer; any overrun sets bad() and returns zeros.
class ByteReader {
 public:
  explicit ByteReader(std::string_view d) : d_(d) {}
  bool bad() const { return bad_; }
  bool done() const { return pos_ >= d_.size(); }
  size_t pos() const { return pos_; }
  uint8_t u8() {
    if (pos_ >= d_.size()) return fail0();
    return uint8_t(d_[pos_++]);
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= d_.size()) return fail0();
      uint8_t c = uint8_t(d_[pos_++]);
      v |= uint64_t(c & 0x7f) << shift;
      if (!(c & 0x80)) return v;
    }
    return fail0();
  }
  int64_t svarint() {
    uint64_t u = varint();
    return int64_t(u >> 1) ^ -int64_t(u & 1);
  }
  std::string_view bytes(size_t n) {
    if (n > d_.size() - pos_) {
      bad_ = true;
      pos_ = d_.size();
      return {};
    }
    auto s = d_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string_view str() { return bytes(varint()); }
  void raw(void* p, size_t n) {
    auto s = bytes(n);
    if (!bad_) std::memcpy(p, s.data(), n);
  }

 private:
  uint8_t fail0() {
    bad_ = true;
    pos_ = d_.size();
    return 0;
  }
  std::string_view d_;
  size_t pos_ = 0;
  bool bad_ = false;
};

}  // namespace planb
