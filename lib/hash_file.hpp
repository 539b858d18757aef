// BLAKE2b-256 of a whole file, read sequentially in 1 MiB blocks.
#pragma once
#include <string>

#include "hash.hpp"
#include "result.hpp"

namespace planb {

Result<Hash> hash_file(const std::string& path);

}  // namespace planb
