#include "timeparse.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <regex>
#include <sstream>
#include <vector>

namespace planb {

namespace {

int64_t local_time(struct tm t) {
  t.tm_isdst = -1;
  return int64_t(std::mktime(&t));
}
struct tm local_tm(int64_t sec) {
  time_t s = time_t(sec);
  struct tm t;
  localtime_r(&s, &t);
  return t;
}
// Start of the local day containing sec, shifted by `days`.
struct tm day_tm(int64_t sec, int days) {
  struct tm t = local_tm(sec);
  t.tm_mday += days;
  t.tm_hour = t.tm_min = t.tm_sec = 0;
  t.tm_isdst = -1;
  time_t x = std::mktime(&t);
  localtime_r(&x, &t);
  return t;
}
int64_t end_of_day(struct tm t) {
  t.tm_hour = 23;
  t.tm_min = 59;
  t.tm_sec = 59;
  return local_time(t);
}
bool parse_hm(const std::string& s, int& h, int& m, int& sec) {
  static const std::regex re(R"((\d{1,2})(?::(\d{2}))?(?::(\d{2}))?\s*(am|pm)?)");
  std::smatch mm;
  if (!std::regex_match(s, mm, re)) return false;
  if (!mm[2].matched && !mm[4].matched) return false;  // a bare number is not a time
  h = std::stoi(mm[1]);
  m = mm[2].matched ? std::stoi(mm[2]) : 0;
  sec = mm[3].matched ? std::stoi(mm[3]) : 0;
  if (mm[4].matched) {
    if (h < 1 || h > 12) return false;
    if (mm[4] == "pm" && h != 12) h += 12;
    if (mm[4] == "am" && h == 12) h = 0;
  }
  return h < 24 && m < 60 && sec < 61;
}
// A day (struct tm at midnight) plus an optional time-of-day rest.
Result<int64_t> day_with_time(struct tm day, const std::string& rest, const std::string& text) {
  if (rest.empty()) return end_of_day(day);
  std::string r = rest;
  if (r.rfind("at ", 0) == 0) r = r.substr(3);
  int h, m, s;
  if (r == "noon") {
    h = 12; m = s = 0;
  } else if (r == "midnight") {
    h = m = s = 0;
  } else if (!parse_hm(r, h, m, s)) {
    return make_error(kExitUsage, "failed to parse time '" + text + "': '" + rest + "' is not a time of day (HH:MM)");
  }
  day.tm_hour = h;
  day.tm_min = m;
  day.tm_sec = s;
  return local_time(day);
}

const char* kWeekdays[] = {"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"};

}  // namespace

std::string format_local_time(int64_t unix_sec) {
  struct tm t = local_tm(unix_sec);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%d %H:%M:%S", &t);
  return b;
}

Result<int64_t> parse_when(const std::string& input, int64_t now) {
  std::string s;
  for (char c : input) s += char(std::tolower(static_cast<unsigned char>(c)));
  s.erase(0, s.find_first_not_of(" \t"));
  s.erase(s.find_last_not_of(" \t") + 1);
  std::smatch m;
  auto rest_after = [&](size_t n) {
    std::string r = s.substr(n);
    r.erase(0, r.find_first_not_of(" \t"));
    return r;
  };
  if (s.empty()) return make_error(kExitUsage, "failed to parse time: empty");
  if (s == "now") return now;
  if (s[0] == '@') {
    try {
      return int64_t(std::stoll(s.substr(1)));
    } catch (...) {
      return make_error(kExitUsage, "failed to parse time '" + input + "': bad @seconds");
    }
  }
  if (s == "last night" || s == "tonight") {
    struct tm t = day_tm(now, 0);
    t.tm_hour = 6;
    return local_time(t);
  }
  if (s.rfind("today", 0) == 0) return day_with_time(day_tm(now, 0), rest_after(5), input);
  if (s.rfind("yesterday", 0) == 0) return day_with_time(day_tm(now, -1), rest_after(9), input);
  if (s.rfind("this morning", 0) == 0) {
    struct tm t = day_tm(now, 0);
    t.tm_hour = 12;
    return local_time(t);
  }
  static const std::regex ago(R"((\d+|an?|one)\s*(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?|months?|y|years?)\s+ago)");
  if (std::regex_match(s, m, ago)) {
    std::string n = m[1], u = m[2];
    int64_t k = (n == "a" || n == "an" || n == "one") ? 1 : std::stoll(n);
    int64_t unit = 1;
    if (u[0] == 's') unit = 1;
    else if (u == "m" || u.rfind("min", 0) == 0) unit = 60;
    else if (u[0] == 'h') unit = 3600;
    else if (u[0] == 'd') unit = 86400;
    else if (u[0] == 'w') unit = 7 * 86400;
    else if (u.rfind("month", 0) == 0) unit = 30 * 86400;
    else if (u[0] == 'y') unit = 365 * 86400;
    return now - k * unit;
  }
  // [last] <weekday> [time]
  {
    std::string r = s;
    if (r.rfind("last ", 0) == 0) r = r.substr(5);
    for (int wd = 0; wd < 7; ++wd) {
      std::string name = kWeekdays[wd];
      std::string abbr = name.substr(0, 3);
      std::string rest;
      if (r.rfind(name, 0) == 0) rest = r.substr(name.size());
      else if (r.rfind(abbr, 0) == 0 && (r.size() == 3 || r[3] == ' ')) rest = r.substr(3);
      else continue;
      rest.erase(0, rest.find_first_not_of(" \t"));
      struct tm today = local_tm(now);
      int back = (today.tm_wday - wd + 7) % 7;
      if (back == 0) back = 7;  // "monday" on a Monday means last week's
      return day_with_time(day_tm(now, -back), rest, input);
    }
  }
  static const std::regex iso(R"((\d{4})-(\d{1,2})-(\d{1,2})(?:[t ](.*))?)");
  if (std::regex_match(s, m, iso)) {
    struct tm t{};
    t.tm_year = std::stoi(m[1]) - 1900;
    t.tm_mon = std::stoi(m[2]) - 1;
    t.tm_mday = std::stoi(m[3]);
    if (t.tm_mon < 0 || t.tm_mon > 11 || t.tm_mday < 1 || t.tm_mday > 31)
      return make_error(kExitUsage, "failed to parse time '" + input + "': no such date");
    std::string rest = m[4].matched ? std::string(m[4]) : "";
    if (!rest.empty() && rest.back() == 'z') {
      // UTC
      int h, mi, sec;
      rest.pop_back();
      if (!parse_hm(rest, h, mi, sec)) return make_error(kExitUsage, "failed to parse time '" + input + "'");
      t.tm_hour = h;
      t.tm_min = mi;
      t.tm_sec = sec;
      return int64_t(timegm(&t));
    }
    return day_with_time(t, rest, input);
  }
  {
    int h, mi, sec;
    if (parse_hm(s, h, mi, sec)) {
      struct tm t = day_tm(now, 0);
      t.tm_hour = h;
      t.tm_min = mi;
      t.tm_sec = sec;
      int64_t v = local_time(t);
      return v > now ? v - 86400 : v;  // "02:00" at 01:00 means yesterday's
    }
  }
  return make_error(kExitUsage, "failed to parse time '" + input +
                                    "': try 'yesterday', '2 days ago', 'last monday 14:00', '2026-11-24 13:05', 'now'");
}

}  // namespace planb
