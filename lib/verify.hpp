// Store check: every manifest decodes and matches its refs, every referenced
// object exists, and every object re-hashes to its id.
#pragma once
#include <string>
#include <vector>

#include "store.hpp"

namespace planb {

struct VerifyResult {
  uint64_t manifests = 0, objects = 0, bytes = 0;
  std::vector<std::string> damage;  // one line per problem
  double seconds = 0;
};

Result<VerifyResult> verify_store(Store& store, const std::string& only_host);

}  // namespace planb
