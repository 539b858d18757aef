// Times a tired engineer types: "yesterday", "2 days ago", "last monday 14:00",
// "2026-11-24", "2026-11-24 13:05", "13:05", "now", "@1764000000".
// A date without a time means the end of that day (the newest snapshot of it).
#pragma once
#include <cstdint>
#include <string>

#include "result.hpp"

namespace planb {

// Returns Unix seconds. `now` is the reference time (Unix seconds); local time zone.
Result<int64_t> parse_when(const std::string& text, int64_t now);
std::string format_local_time(int64_t unix_sec);  // "2026-11-24 02:00:13"

}  // namespace planb
