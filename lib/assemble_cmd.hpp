// The planb-assemble command: options → assemble() → text or JSON.
#pragma once
#include "assemble.hpp"

namespace planb {

struct AssembleCmdOptions {
  AssembleOptions assemble;
  bool json = false;
};

Status assemble_main(AssembleCmdOptions& o);

}  // namespace planb
