// Minimal JSON writer for --json output.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace planb {

std::string json_escape(std::string_view s);
// Length of the valid UTF-8 multi-byte sequence starting at s[i], or 0.
size_t utf8_sequence(std::string_view s, size_t i);  // quoted; invalid UTF-8 bytes as \u00XX

class JsonObject {
 public:
  JsonObject& add(std::string_view k, std::string_view v);
  JsonObject& add(std::string_view k, const char* v) { return add(k, std::string_view(v)); }
  JsonObject& add(std::string_view k, uint64_t v);
  JsonObject& add(std::string_view k, int64_t v);
  JsonObject& add(std::string_view k, int v) { return add(k, int64_t(v)); }
  JsonObject& add(std::string_view k, double v);
  JsonObject& add(std::string_view k, bool v);
  JsonObject& add_raw(std::string_view k, std::string_view json);
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void key(std::string_view k);
  std::string body_;
};

std::string json_array(const std::vector<std::string>& raw_items);

}  // namespace planb
