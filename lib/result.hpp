// Result<T>: expected failures are values. An Error carries an exit code and a
// message already phrased as "failed to <verb> <object>: <reason>".
#pragma once
#include <string>
#include <utility>
#include <variant>

namespace planb {

// Documented exit codes shared by every command.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,
  kExitUsage = 2,
  kExitPartial = 3,
  kExitNotFound = 4,   // unknown host, snapshot or path
  kExitCorrupt = 5,    // damaged store: hash mismatch, bad manifest
  kExitExists = 6,     // destination exists and --force not given
  kExitLocked = 7,     // store or host is locked by another process
  kExitRefused = 8,    // bundle refused: replay, gap or parent mismatch
  kExitBadSignature = 9,  // sealed bundle: unknown or revoked signer, bad signature
};

struct Error {
  int code = kExitFailure;
  std::string message;
};

inline Error make_error(int code, std::string msg) { return Error{code, std::move(msg)}; }
inline Error fail(std::string msg) { return Error{kExitFailure, std::move(msg)}; }

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::move(v)) {}
  Result(Error e) : v_(std::move(e)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T operator*() && { return std::move(*this).value(); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : err_(std::move(e)), ok_(false) {}
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return err_; }

 private:
  Error err_;
  bool ok_ = true;
};

using Status = Result<void>;

// Propagate an error from an expression returning Result/Status.
#define PB_TRY(expr)                                  \
  do {                                                \
    auto _pb_r = (expr);                              \
    if (!_pb_r.ok()) return _pb_r.error();            \
  } while (0)

#define PB_CONCAT_(a, b) a##b
#define PB_CONCAT(a, b) PB_CONCAT_(a, b)
#define PB_ASSIGN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                   \
  if (!tmp.ok()) return tmp.error();   \
  lhs = std::move(tmp).value()
// PB_ASSIGN(auto x, f()) : assign value or return the error.
#define PB_ASSIGN(lhs, expr) PB_ASSIGN_IMPL(PB_CONCAT(_pb_a_, __LINE__), lhs, expr)

}  // namespace planb
