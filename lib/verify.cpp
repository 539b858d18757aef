#include "verify.hpp"

#include <dirent.h>

#include <chrono>
#include <cstring>
#include <unordered_set>

#include "chunker.hpp"
#include "progress.hpp"

namespace planb {

Result<VerifyResult> verify_store(Store& store, const std::string& only_host) {
  auto t0 = std::chrono::steady_clock::now();
  PB_ASSIGN(FileLock lock, store.lock_store(false));
  VerifyResult res;
  std::unordered_set<Hash, HashHasher> referenced, checked_index;
  for (auto& host : store.hosts()) {
    if (!only_host.empty() && host != only_host) continue;
    PB_ASSIGN(auto latest, store.read_ref(host, "latest"));
    PB_ASSIGN(auto seqs, store.sequences(host));
    for (uint64_t s : seqs) {
      ++res.manifests;
      auto data = store.read_manifest_bytes(host, s);
      if (!data.ok()) {
        res.damage.push_back(data.error().message);
        continue;
      }
      auto m = decode_manifest(*data, store.manifest_path(host, s));
      if (!m.ok()) {
        res.damage.push_back(m.error().message);
        continue;
      }
      if (latest && s == latest->sequence && manifest_id(*data) != latest->manifest)
        res.damage.push_back("snapshot " + std::to_string(s) + " of host " + host + ": manifest does not match the latest ref");
      for (const Entry& e : m->entries) {
        if (!e.has_content()) continue;
        referenced.insert(e.content);
        if (e.size >= kChunkThreshold && checked_index.insert(e.content).second) {
          auto chunks = store.objects().expand(e.content, e.size);
          if (!chunks.ok()) {
            res.damage.push_back(chunks.error().message + " (file " + e.path + " of " + host + " snapshot " + std::to_string(s) + ")");
            continue;
          }
          for (auto& c : *chunks) referenced.insert(c.id);
        }
      }
    }
  }
  Progress prog("verify");
  std::unordered_set<Hash, HashHasher> present;
  std::vector<Hash> ids;
  PB_TRY(store.objects().scan([&](const std::optional<Hash>& h, const std::string& path, uint64_t) {
    if (!h) {
      res.damage.push_back("stray file in object store: " + path);
      return;
    }
    present.insert(*h);
    if (only_host.empty() || referenced.count(*h)) ids.push_back(*h);
  }));
  for (auto& h : ids) {
    auto data = store.objects().get(h, true);
    ++res.objects;
    if (!data.ok()) res.damage.push_back(data.error().message);
    else res.bytes += data->size();
    prog.update(res.objects, res.bytes);
  }
  prog.done();
  for (auto& h : referenced)
    if (!present.count(h)) res.damage.push_back("failed to read object " + h.hex() + ": missing from store (referenced by a snapshot)");
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace planb
