#!/usr/bin/env bats
# `cmake --install` puts the commands, the main job's scripts, their systemd
# units (pointing at the installed scripts), overlays and man pages in place.

load 'helpers/common'

TOP="$(cd "$(dirname "$BATS_TEST_FILENAME")/.." && pwd)"

setup() {
  common_setup
  BUILD=${PLANB_BIN:-$(dirname "$(command -v planb-capture)")}
  [ -f "$BUILD/CMakeCache.txt" ] || skip "no CMake build dir at $BUILD"
}

@test "cmake --install: binaries, scripts, units, overlays and man pages" {
  DESTDIR=$WORK/root cmake --install "$BUILD" --prefix /usr/local >/dev/null
  local r=$WORK/root/usr/local b
  for b in planb planb-capture planb-diff planb-restore planb-seal planb-ship planb-assemble planb-convert \
    planb-boot-test planb-promote; do
    [ -x "$r/bin/$b" ] || fail "missing bin/$b"
    [ -f "$r/share/man/man1/$b.1" ] || fail "missing man page $b.1"
  done
  [ -x "$r/libexec/planb/appliance-nightly" ]
  [ -x "$r/libexec/planb/server-process" ]
  for u in planb-appliance-nightly.service planb-appliance-nightly.timer planb-server-process.service \
    planb-server-process.path planb-server-process.timer; do
    [ -f "$r/lib/systemd/system/$u" ] || fail "missing unit $u"
  done
  grep -q '^ExecStart=/usr/local/libexec/planb/appliance-nightly ' "$r/lib/systemd/system/planb-appliance-nightly.service"
  grep -q '^ExecStart=/usr/local/libexec/planb/server-process$' "$r/lib/systemd/system/planb-server-process.service"
  ls "$r"/share/planb/overlays/*/*.toml >/dev/null 2>&1 || ls "$r"/share/planb/overlays/*.toml >/dev/null
  [ -f "$r/share/planb/examples/appliance.conf" ]
}

@test "the systemd units are valid (systemd-analyze verify)" {
  command -v systemd-analyze >/dev/null || skip "systemd-analyze not installed"
  DESTDIR=$WORK/root cmake --install "$BUILD" --prefix /usr/local >/dev/null
  local u=$WORK/root/usr/local/lib/systemd/system
  # ExecStart must exist for verify: point it at the staged copies.
  mkdir -p "$WORK/units"
  for f in "$u"/planb-*; do
    sed "s|/usr/local/libexec|$WORK/root/usr/local/libexec|" "$f" >"$WORK/units/$(basename "$f")"
  done
  run systemd-analyze verify --man=no "$WORK"/units/*.service "$WORK"/units/*.timer "$WORK"/units/*.path
  # Only problems in our units count (verify also reads system units it cannot load here).
  refute_output --partial "planb-"
}
