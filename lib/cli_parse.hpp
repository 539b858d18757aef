// CLI11 parsing with Plan B's conventions: --help/--version on stdout with
// exit 0; any parse error is "PROG: error: failed to parse arguments: ..."
// with exit code 2.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "result.hpp"

namespace planb {

// Returns -1 to go on, else the exit code to return from main.
inline int parse_args(CLI::App& app, const std::string& prog, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return -1;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: error: failed to parse arguments: %s (see %s --help)\n", prog.c_str(), e.what(),
                 prog.c_str());
    return kExitUsage;
  }
}

}  // namespace planb
