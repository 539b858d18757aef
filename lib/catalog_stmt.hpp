// A prepared SQLite statement with positional binding, and the mapping of
// SQLite errors to exit codes. Shared by the catalog and the code that keeps
// its own tables in it (lib/invoke_auth.cpp, lib/audit_log.cpp).
#pragma once
#include <sqlite3.h>

#include <cstdint>
#include <string>

#include "result.hpp"

namespace planb {

inline std::string db_error(sqlite3* db) { return db ? sqlite3_errmsg(db) : "out of memory"; }

inline int code_of(sqlite3* db) {
  int e = db ? sqlite3_errcode(db) : SQLITE_NOMEM;
  if (e == SQLITE_BUSY || e == SQLITE_LOCKED) return kExitLocked;
  if (e == SQLITE_CORRUPT || e == SQLITE_NOTADB) return kExitCorrupt;
  return kExitFailure;
}

// A prepared statement with positional binding.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) s_ = nullptr;
  }
  ~Stmt() { sqlite3_finalize(s_); }
  bool ok() const { return s_ != nullptr; }
  Stmt& bind(const std::string& v) {
    sqlite3_bind_text(s_, ++n_, v.data(), int(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(const char* v) { return bind(std::string(v)); }
  Stmt& bind(int64_t v) {
    sqlite3_bind_int64(s_, ++n_, v);
    return *this;
  }
  Stmt& bind(uint64_t v) { return bind(int64_t(v)); }
  Stmt& bind(int v) { return bind(int64_t(v)); }
  Stmt& bind(double v) {
    sqlite3_bind_double(s_, ++n_, v);
    return *this;
  }
  Stmt& bind_null() {
    sqlite3_bind_null(s_, ++n_);
    return *this;
  }
  // SQLITE_ROW → true, SQLITE_DONE → false.
  Result<bool> step(const std::string& what) {
    if (!s_) return make_error(code_of(db_), "failed to " + what + ": " + db_error(db_));
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return make_error(code_of(db_), "failed to " + what + ": " + db_error(db_));
  }
  Status run(const std::string& what) {
    PB_ASSIGN(bool row, step(what));
    (void)row;
    return {};
  }
  std::string text(int i) const {
    auto p = sqlite3_column_text(s_, i);
    return p ? std::string(reinterpret_cast<const char*>(p), size_t(sqlite3_column_bytes(s_, i))) : "";
  }
  int64_t i64(int i) const { return sqlite3_column_int64(s_, i); }
  double real(int i) const { return sqlite3_column_double(s_, i); }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
  int n_ = 0;
};

}  // namespace planb
