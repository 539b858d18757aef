// planb: front command. `planb STAGE ARGS...` runs `planb-STAGE ARGS...`,
// looked up beside this binary first, then on PATH (as git does).
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "cli.hpp"

static const char* kStages[][2] = {
    {"capture", "take an incremental snapshot of a server's tree (--verify, --prune)"},
    {"diff", "write the change bundle of a snapshot against its parent"},
    {"restore", "browse history (list, ls, versions) and restore files (get)"},
    {"seal", "encrypt a bundle to the server and sign it (--open: verify, decrypt); keygen"},
    {"ship", "push the sealed bundles in the outbox to the server (file://, sftp://, https://)"},
    {"assemble", "server: verify, open and apply the inbox's bundles into the store; catalog them"},
    {"convert", "server: build a bootable qcow2 of a snapshot (P2V overlays, --explain)"},
    {"boot-test", "boot an image in qemu (no route out) and run the host's CMDB checks"},
    {"promote", "server: make a boot-tested image the host's good one, or open a ticket; --list"},
};

static void usage(FILE* f) {
  std::fprintf(f, "usage: planb STAGE [ARGS...]\n       planb --help | --version\n\nStages:\n");
  for (auto& s : kStages) std::fprintf(f, "  %-10s %s\n", s[0], s[1]);
  std::fprintf(f, "\n`planb STAGE --help` shows a stage's options.\n\n%s", planb::exit_codes_help().c_str());
}

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return planb::kExitUsage;
  }
  std::string stage = argv[1];
  if (stage == "--help" || stage == "-h" || stage == "help") {
    usage(stdout);
    return 0;
  }
  if (stage == "--version") {
    std::printf("planb %s\n", PLANB_VERSION);
    return 0;
  }
  if (stage.empty() || stage[0] == '-' || stage.find('/') != std::string::npos) {
    std::fprintf(stderr, "planb: error: failed to run stage '%s': not a stage name\n", stage.c_str());
    return planb::kExitUsage;
  }
  std::string name = "planb-" + stage;
  argv[1] = const_cast<char*>(name.c_str());
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = 0;
    std::string dir(self);
    dir.resize(dir.find_last_of('/') + 1);
    std::string beside = dir + name;
    if (::access(beside.c_str(), X_OK) == 0) ::execv(beside.c_str(), argv + 1);
  }
  ::execvp(name.c_str(), argv + 1);
  std::fprintf(stderr, "planb: error: failed to run stage '%s': %s not found\n", stage.c_str(), name.c_str());
  return planb::kExitUsage;
}
