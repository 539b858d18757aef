#include "cli.hpp"

#include "memory.hpp"

#include <cstdio>
#include <exception>
#include <new>

namespace planb {

int run_command(const std::string& prog, const std::function<Status()>& body) {
  tune_memory();
  try {
    Status st = body();
    if (st.ok()) return kExitOk;
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s\n", prog.c_str(), st.error().message.c_str());
    return st.error().code;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: error: failed to allocate memory\n", prog.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", prog.c_str(), e.what());
  }
  return kExitFailure;
}

void print_warning(const std::string& prog, const std::string& msg) {
  std::fprintf(stderr, "%s: warning: %s\n", prog.c_str(), msg.c_str());
}

std::string exit_codes_help(const std::string& extra) {
  return "Exit codes:\n"
         "  0  success\n"
         "  1  failure\n"
         "  2  usage error (bad option or argument)\n"
         "  3  partial: finished, but some files could not be read or restored\n"
         "  4  not found: unknown store, host, snapshot or path\n"
         "  5  corrupt: damaged store (hash mismatch, bad manifest or object)\n"
         "  6  destination exists (use --force)\n"
         "  7  locked: another planb process holds the store or host\n"
         "  8  refused: a bundle that is a replay, leaves a gap, or has the wrong parent\n"
         "  9  bad signature: sealed bundle from an unknown or revoked signer, or badly signed\n" +
         extra;
}

}  // namespace planb
