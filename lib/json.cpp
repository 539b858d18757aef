#include "json.hpp"

#include <cstdio>

namespace planb {

size_t utf8_sequence(std::string_view s, size_t i) {
  unsigned char c = s[i];
  size_t len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k)
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return 0;
  return len;
}

std::string json_escape(std::string_view s) {
  std::string o = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = s[i];
    switch (c) {
      case '"': o += "\\\""; continue;
      case '\\': o += "\\\\"; continue;
      case '\n': o += "\\n"; continue;
      case '\t': o += "\\t"; continue;
      case '\r': o += "\\r"; continue;
    }
    if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
      continue;
    }
    if (c < 0x80) {
      o += char(c);
      continue;
    }
    // Valid UTF-8 passes; stray bytes become \u00XX (lossy but visible).
    if (size_t len = utf8_sequence(s, i)) {
      o.append(s.substr(i, len));
      i += len - 1;
    } else {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    }
  }
  return o + "\"";
}

void JsonObject::key(std::string_view k) {
  if (!body_.empty()) body_ += ",";
  body_ += json_escape(k) + ":";
}
JsonObject& JsonObject::add(std::string_view k, std::string_view v) {
  key(k);
  body_ += json_escape(v);
  return *this;
}
JsonObject& JsonObject::add(std::string_view k, uint64_t v) {
  key(k);
  body_ += std::to_string(v);
  return *this;
}
JsonObject& JsonObject::add(std::string_view k, int64_t v) {
  key(k);
  body_ += std::to_string(v);
  return *this;
}
JsonObject& JsonObject::add(std::string_view k, double v) {
  key(k);
  char b[64];
  std::snprintf(b, sizeof b, "%.3f", v);
  body_ += b;
  return *this;
}
JsonObject& JsonObject::add(std::string_view k, bool v) {
  key(k);
  body_ += v ? "true" : "false";
  return *this;
}
JsonObject& JsonObject::add_raw(std::string_view k, std::string_view json) {
  key(k);
  body_ += json;
  return *this;
}

std::string json_array(const std::vector<std::string>& raw_items) {
  std::string o = "[";
  for (size_t i = 0; i < raw_items.size(); ++i) {
    if (i) o += ",";
    o += raw_items[i];
  }
  return o + "]";
}

}  // namespace planb
