// Shared command-line plumbing: the one top-level error handler per binary.
#pragma once
#include <functional>
#include <string>

#include "result.hpp"

namespace planb {

// Runs body; on error prints "<prog>: error: <message>" and returns its exit code.
int run_command(const std::string& prog, const std::function<Status()>& body);
void print_warning(const std::string& prog, const std::string& msg);
// Exit-code table for --help footers.
std::string exit_codes_help(const std::string& extra = "");

}  // namespace planb
