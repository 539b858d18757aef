#include "convert_cmd.hpp"

#include <unistd.h>

#include <cstdio>

#include "cli.hpp"
#include "progress.hpp"

namespace planb {

Status convert_main(ConvertCmdOptions& o) {
  auto& c = o.convert;
  if (c.server.empty()) {
    const char* e = std::getenv("PLANB_SERVER");
    c.server = e && *e ? e : "/var/lib/planb-server";
  }
  if (c.host.empty()) return make_error(kExitUsage, "failed to convert: --host is required");
  c.overlay_dirs.clear();
  if (!o.no_builtin) c.overlay_dirs.push_back(o.overlays.empty() ? builtin_overlay_dir() : o.overlays);
  c.overlay_dirs.push_back(c.server + "/cmdb/overlays");
  c.progress = c.progress && ::isatty(2);
  PB_ASSIGN(ConvertResult r, convert_snapshot(c));
  for (auto& w : r.warnings) print_warning("planb-convert", w);
  if (o.explain) std::fputs(explain_text(r).c_str(), stdout);
  if (o.json) {
    std::printf("%s\n", explain_json(r).c_str());
  } else {
    std::string steps;
    for (auto& [k, v] : r.timings) {
      char b[64];
      std::snprintf(b, sizeof b, "%s%s %.1fs", steps.empty() ? "" : ", ", k.c_str(), v);
      steps += b;
    }
    size_t applied = 0;
    for (auto& ov : r.overlays) applied += ov.applied;
    std::printf("converted %s snapshot %llu to %s (%s, %zu of %zu overlays applied) in %.1fs (%s)\n", r.host.c_str(),
                (unsigned long long)r.sequence, r.image.c_str(), human_bytes(r.image_bytes).c_str(), applied,
                r.overlays.size(), r.seconds, steps.c_str());
  }
  return {};
}

}  // namespace planb
