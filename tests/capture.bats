#!/usr/bin/env bats
# planb-capture: incremental reads, deduplication, excludes, files changing or
# unreadable during capture, retention, and crash safety (kill -9).

load 'helpers/common'

setup() {
  require_root
  common_setup
  BG_PIDS=()
}

teardown() {
  local p
  for p in "${BG_PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ -n "${UNPRIV_DIR:-}" ]; then rm -rf "$UNPRIV_DIR"; fi
  if [ -n "${MOUNTED:-}" ]; then umount "$MOUNTED" 2>/dev/null || true; fi
}

# Paths in the latest (or --snapshot N) snapshot, one a line, from ls -R --json.
snapshot_paths() {
  rst --json ls -R "$@" / | python3 -c '
import json, sys
for e in json.load(sys.stdin)["entries"]:
    print(e["path"])'
}

# --- incremental --------------------------------------------------------------

@test "second capture of an unchanged tree reads nothing and stores nothing" {
  mkdir -p "$SRC/d"
  for i in 1 2 3 4 5; do random_file "$SRC/d/f$i" 50000; done
  random_file "$SRC/big" 2000000
  run -0 cap --json "$SRC"
  assert_equal "$(json_field files_read)" 6
  [ "$(json_field bytes_new)" -gt 2000000 ]
  run -0 cap --json "$SRC"
  assert_equal "$(json_field sequence)" 2
  assert_equal "$(json_field files_read)" 0
  assert_equal "$(json_field bytes_read)" 0
  assert_equal "$(json_field bytes_new)" 0
  assert_equal "$(json_field files_unchanged)" 6
}

@test "after modifying one file only that file is read" {
  mkdir -p "$SRC/d"
  for i in 1 2 3 4 5; do random_file "$SRC/d/f$i" 50000; done
  run -0 cap "$SRC"
  printf 'more\n' >>"$SRC/d/f3"
  run -0 cap --json "$SRC"
  assert_equal "$(json_field files_read)" 1
  assert_equal "$(json_field bytes_read)" 50005
  [ "$(json_field bytes_new)" -gt 0 ]
  assert_equal "$(json_field files_unchanged)" 4
  # a metadata-only change (chmod) needs no new content
  chmod 600 "$SRC/d/f1"
  run -0 cap --json "$SRC"
  assert_equal "$(json_field bytes_new)" 0
}

@test "unchanged files are not re-read when names sort around '/' (a, 'a b', a-b, a.c, a/x)" {
  mkdir -p "$SRC/a/x" "$SRC/a-dir"
  for f in 'a b' a-b a.c a0 a/x/f a/y a-dir/z 'a b.d'; do printf '%s\n' "$f" >"$SRC/$f"; done
  setfattr -n user.k -v v "$SRC/a.c"
  run -0 cap --json "$SRC"
  assert_equal "$(json_field files_read)" 8
  run -0 cap --json "$SRC"
  assert_equal "$(json_field files_read)" 0
  assert_equal "$(json_field files_unchanged)" 8
  run -0 rst get / --to "$WORK/r"
  assert_equal "$(getfattr --only-values -n user.k "$WORK/r/a.c")" v
}

@test "plain output ends with the snapshot sequence number" {
  printf 'x\n' >"$SRC/x"
  run -0 cap "$SRC"
  assert_equal "${lines[-1]}" 1
  run -0 cap "$SRC"
  assert_equal "${lines[-1]}" 2
}

# --- deduplication ------------------------------------------------------------

@test "two identical files are stored once" {
  random_file "$SRC/a" 500000
  cp "$SRC/a" "$SRC/b"
  mkdir "$SRC/d" && cp "$SRC/a" "$SRC/d/c"
  run -0 cap --json "$SRC"
  local new; new=$(json_field bytes_new)
  [ "$new" -ge 500000 ] && [ "$new" -lt 510000 ] || fail "bytes_new=$new for 3 copies of a 500000-byte file"
  [ "$(objects_bytes "$STORE")" -lt 510000 ]
}

@test "a second host with the same content adds no new bytes" {
  mkdir -p "$SRC/etc"
  random_file "$SRC/etc/a" 300000
  random_file "$SRC/big" 3000000
  run -0 cap --json "$SRC"
  local size; size=$(objects_bytes "$STORE")
  cp -a "$SRC" "$WORK/src2"
  run -0 planb-capture --store "$STORE" --host web2 --json "$WORK/src2"
  assert_equal "$(json_field sequence)" 1
  assert_equal "$(json_field bytes_new)" 0
  assert_equal "$(objects_bytes "$STORE")" "$size"
  run -0 planb-restore --store "$STORE" --host web2 list
  assert_line --regexp '^1 '
}

@test "inserting bytes at the start of a big file stores only a few new chunks" {
  random_file "$SRC/big" 8000000
  run -0 cap "$SRC"
  { printf 'inserted'; cat "$SRC/big"; } >"$WORK/big.new" && mv "$WORK/big.new" "$SRC/big"
  run -0 cap --json "$SRC"
  local new; new=$(json_field bytes_new)
  [ "$new" -lt 1000000 ] || fail "bytes_new=$new after inserting 8 bytes into an 8 MB file"
  run -0 rst get /big --to "$WORK/r"
  cmp "$SRC/big" "$WORK/r/big"
}

# --- excludes -------------------------------------------------------------------

make_system_tree() {
  mkdir -p "$SRC"/{proc/1,sys/kernel,dev,run/lock,tmp,etc,var/tmp}
  printf 'x\n' >"$SRC/proc/x"
  printf 'x\n' >"$SRC/proc/1/status"
  printf 'z\n' >"$SRC/sys/kernel/z"
  printf 'd\n' >"$SRC/dev/d"
  printf 'r\n' >"$SRC/run/lock/r"
  printf 'y\n' >"$SRC/tmp/y"
  printf 'e\n' >"$SRC/etc/hosts"
  printf 'v\n' >"$SRC/var/tmp/keep"
}

@test "default excludes: contents of /proc /sys /dev /run /tmp are skipped, the dirs kept" {
  make_system_tree
  run -0 cap "$SRC"
  run -0 snapshot_paths
  for d in /proc /sys /dev /run /tmp /etc /etc/hosts /var/tmp /var/tmp/keep; do
    assert_line "$d"
  done
  for p in /proc/x /proc/1 /proc/1/status /sys/kernel /dev/d /run/lock /tmp/y; do
    refute_line "$p"
  done
  # the kept directories restore as empty directories with their metadata
  run -0 rst get / --to "$WORK/r"
  [ -d "$WORK/r/proc" ] && [ -z "$(ls -A "$WORK/r/proc")" ]
  assert_equal "$(stat -c %a "$WORK/r/tmp")" "$(stat -c %a "$SRC/tmp")"
}

@test "default excludes also skip hidden entries such as /tmp/.X11-unix and /run/.lock" {
  make_system_tree
  mkdir "$SRC/tmp/.X11-unix"
  printf 's\n' >"$SRC/tmp/.X11-unix/X0"
  printf 'h\n' >"$SRC/run/.hidden"
  run -0 cap "$SRC"
  run -0 snapshot_paths
  refute_line "/tmp/.X11-unix"
  refute_line "/tmp/.X11-unix/X0"
  refute_line "/run/.hidden"
}

@test "--no-default-excludes captures /proc /tmp ... too" {
  make_system_tree
  run -0 cap --no-default-excludes "$SRC"
  run -0 snapshot_paths
  for p in /proc/x /proc/1/status /sys/kernel/z /dev/d /run/lock/r /tmp/y; do
    assert_line "$p"
  done
}

@test "--exclude: name globs match anywhere, patterns with / are anchored at SOURCE" {
  mkdir -p "$SRC"/{app/logs,app/node_modules/pkg,var/cache/apt,other/var/cache,srv}
  printf '1\n' >"$SRC/app/a.log"
  printf '2\n' >"$SRC/app/logs/b.log"
  printf '3\n' >"$SRC/app/keep.txt"
  printf '4\n' >"$SRC/app/node_modules/pkg/index.js"
  printf '5\n' >"$SRC/var/cache/apt/pkgcache.bin"
  printf '6\n' >"$SRC/other/var/cache/kept"
  printf '7\n' >"$SRC/srv/data"
  run -0 cap "$SRC" --exclude '*.log' --exclude node_modules --exclude /var/cache
  run -0 snapshot_paths
  refute_line /app/a.log
  refute_line /app/logs/b.log
  assert_line /app/logs
  assert_line /app/keep.txt
  refute_line /app/node_modules
  refute_line /app/node_modules/pkg/index.js
  refute_line /var/cache
  refute_line /var/cache/apt/pkgcache.bin
  assert_line /var
  assert_line /other/var/cache/kept
  assert_line /srv/data
  # the excludes apply to this capture only
  run -0 cap "$SRC"
  run -0 snapshot_paths
  assert_line /app/a.log
  assert_line /var/cache/apt/pkgcache.bin
}

@test "--exclude PAT before SOURCE (the usage synopsis) takes one pattern; -- SOURCE works too" {
  mkdir -p "$SRC/app"
  printf '1\n' >"$SRC/app/a.log"
  printf '2\n' >"$SRC/app/keep"
  run -0 cap --exclude '*.log' "$SRC"
  run -0 snapshot_paths
  refute_line /app/a.log
  assert_line /app/keep
  run -0 cap --exclude keep --exclude '*.log' -- "$SRC"
  run -0 snapshot_paths
  refute_line /app/a.log
  refute_line /app/keep
  assert_line /app
}

@test "other file systems are recorded but not entered, unless --cross-file-systems" {
  mkdir -p "$SRC/mnt" "$SRC/etc"
  printf 'e\n' >"$SRC/etc/e"
  mount -t tmpfs -o size=4m planb-test "$SRC/mnt" || skip "cannot mount a tmpfs here"
  MOUNTED="$SRC/mnt"
  printf 'on tmpfs\n' >"$SRC/mnt/inner"
  run -0 cap "$SRC"
  run -0 snapshot_paths
  assert_line /mnt
  assert_line /etc/e
  refute_line /mnt/inner
  run -0 cap --cross-file-systems "$SRC"
  run -0 snapshot_paths
  assert_line /mnt/inner
}

# --- files changing or unreadable during capture ---------------------------------

@test "a file appended to during capture: warning 'changed while being read', exit 0, restorable" {
  printf 'steady\n' >"$SRC/steady"
  random_file "$SRC/growing" 20971520
  cp "$SRC/growing" "$WORK/growing.orig"
  ( while :; do head -c 65536 /dev/urandom >>"$SRC/growing"; done ) &
  BG_PIDS+=($!)
  sleep 0.2
  run --separate-stderr cap --json "$SRC"
  kill "${BG_PIDS[0]}"; wait "${BG_PIDS[0]}" 2>/dev/null || true
  assert_equal "$status" 0
  [[ "$stderr" == *"changed while being read"* ]] || fail "no 'changed while being read' warning; stderr: $stderr"
  [[ "$stderr" == *growing* ]] || fail "the warning does not name the file: $stderr"
  assert_equal "$(json_field changing)" 1
  assert_equal "$(json_field sequence)" 1
  # the snapshot restores: the other file exactly, the growing one as a
  # prefix of what the file became, at least as long as it was
  run -0 rst get /steady --to "$WORK/r1"
  assert_equal "$(cat "$WORK/r1/steady")" steady
  # restored with a warning, hence exit 3 (planb-restore(1))
  run rst get /growing --to "$WORK/r2"
  assert_equal "$status" 3
  assert_output --partial "growing"
  local n; n=$(stat -c %s "$WORK/r2/growing")
  [ "$n" -ge 20971520 ] || fail "restored size $n < original 20971520"
  cmp -n "$n" "$WORK/r2/growing" "$SRC/growing" || fail "restored content is not a prefix of the file"
  run -0 planb-capture --store "$STORE" --verify
}

unpriv() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }

@test "unreadable file as an unprivileged user: exit 3 naming it, snapshot exists, the rest restores" {
  UNPRIV_DIR=$(mktemp -d /var/tmp/planb-unpriv.XXXXXX)
  chmod 755 "$UNPRIV_DIR"
  local src="$UNPRIV_DIR/src" store="$UNPRIV_DIR/store"
  mkdir -p "$src/dir" "$store"
  printf 'readable\n' >"$src/ok"
  printf 'secret\n' >"$src/dir/secret"
  printf 'also fine\n' >"$src/dir/fine"
  chown -R 65534:65534 "$src" "$store"
  chmod 000 "$src/dir/secret"
  unpriv test -x "$(command -v planb-capture)" || skip "planb-capture not executable by uid 65534"
  treedump --exclude dir/secret "$src" >"$WORK/expected.dump"

  run --separate-stderr unpriv planb-capture --store "$store" --host web1 --json "$src"
  assert_equal "$status" 3
  [[ "$stderr" == *"$src/dir/secret"* ]] || fail "no warning naming the unreadable file; stderr: $stderr"
  [[ "$stderr" == *"error: failed to"* ]] || fail "no error line; stderr: $stderr"
  assert_equal "$(json_field unreadable)" 1
  assert_equal "$(json_field partial)" true

  run -0 planb-restore --store "$store" --host web1 list
  assert_line --regexp '^1 '
  run -0 planb-restore --store "$store" --host web1 get /ok /dir/fine --to "$WORK/r"
  assert_equal "$(cat "$WORK/r/ok")" readable
  assert_equal "$(cat "$WORK/r/dir/fine")" "also fine"
  # the whole snapshot: everything else exactly, the unreadable file reported
  run planb-restore --store "$store" --host web1 get / --to "$WORK/all"
  assert_equal "$status" 3
  assert_output --partial "dir/secret"
  treedump --exclude dir/secret "$WORK/all" >"$WORK/all.dump"
  # dir's mtime and the root's are the same; only dir/secret is left out
  assert_same_dump "$WORK/expected.dump" "$WORK/all.dump"
}

@test "an unreadable file keeps its last good content in the next snapshot (stale)" {
  UNPRIV_DIR=$(mktemp -d /var/tmp/planb-unpriv.XXXXXX)
  chmod 755 "$UNPRIV_DIR"
  local src="$UNPRIV_DIR/src" store="$UNPRIV_DIR/store"
  mkdir -p "$src" "$store"
  printf 'version 1\n' >"$src/f"
  chown -R 65534:65534 "$src" "$store"
  unpriv test -x "$(command -v planb-capture)" || skip "planb-capture not executable by uid 65534"
  run -0 unpriv planb-capture --store "$store" --host web1 "$src"
  printf 'version 2\n' >"$src/f"
  chmod 000 "$src/f"
  run unpriv planb-capture --store "$store" --host web1 "$src"
  assert_equal "$status" 3
  run planb-restore --store "$store" --host web1 get --snapshot 2 /f --to "$WORK/r"
  assert_equal "$status" 3
  assert_output --partial "earlier snapshot"
  assert_equal "$(cat "$WORK/r/f")" "version 1"
}

@test "an unreadable directory as an unprivileged user: exit 3 naming it, recorded without contents" {
  UNPRIV_DIR=$(mktemp -d /var/tmp/planb-unpriv.XXXXXX)
  chmod 755 "$UNPRIV_DIR"
  local src="$UNPRIV_DIR/src" store="$UNPRIV_DIR/store"
  mkdir -p "$src/locked" "$store"
  printf 'inside\n' >"$src/locked/f"
  printf 'outside\n' >"$src/ok"
  chown -R 65534:65534 "$src" "$store"
  chmod 000 "$src/locked"
  unpriv test -x "$(command -v planb-capture)" || skip "planb-capture not executable by uid 65534"
  run --separate-stderr unpriv planb-capture --store "$store" --host web1 "$src"
  assert_equal "$status" 3
  [[ "$stderr" == *"$src/locked"* ]] || fail "no warning naming the directory; stderr: $stderr"
  run -0 planb-restore --store "$store" --host web1 ls /
  assert_line --regexp '^d--------- .* locked$'
  assert_line --regexp ' ok$'
  run -0 planb-restore --store "$store" --host web1 ls /locked
  assert_output ""
}

# --- retention ------------------------------------------------------------------

# Four captures, each with a new 200 kB file and the previous one deleted.
# (No loop variable named i around `run -N`: bats's version check clobbers it.)
four_captures() {
  local gen
  for gen in 1 2 3 4; do
    rm -f "$SRC"/gen-*
    random_file "$SRC/gen-$gen" 200000
    run -0 cap "$@" "$SRC"
    assert_equal "${lines[-1]}" "$gen"
  done
}

@test "--prune --keep-last 2 after 4 captures leaves snapshots 3 and 4, store intact" {
  printf 'common\n' >"$SRC/common"
  four_captures
  local before; before=$(objects_bytes "$STORE")
  run -0 planb-capture --store "$STORE" --prune --keep-last 2
  run -0 rst list
  assert_equal "$(list_seqs)" "3 4"
  [ "$(objects_bytes "$STORE")" -lt "$before" ] || fail "store did not shrink"
  run -0 planb-capture --store "$STORE" --verify
  run -0 rst get --snapshot 3 / --to "$WORK/r3"
  [ -f "$WORK/r3/gen-3" ] && [ -f "$WORK/r3/common" ]
  # the store still works for the next capture
  run -0 cap "$SRC"
  assert_equal "${lines[-1]}" 5
}

@test "unreferenced objects are deleted by prune: store size drops to about the kept data" {
  four_captures
  local before after
  before=$(objects_bytes "$STORE")
  run -0 planb-capture --store "$STORE" --prune --keep-last 1 --json
  [ "$(json_field objects_removed)" -ge 3 ]
  after=$(objects_bytes "$STORE")
  [ "$after" -lt $((before / 2)) ] || fail "objects: $before bytes before, $after after"
  [ "$after" -ge 200000 ] || fail "the kept snapshot's data is gone ($after bytes)"
  run -0 rst get / --to "$WORK/r"
  cmp "$SRC/gen-4" "$WORK/r/gen-4"
}

@test "the newest snapshot is never pruned, even with --max-size 1" {
  four_captures
  run -0 planb-capture --store "$STORE" --prune --max-size 1
  assert_equal "$(list_seqs)" "4"
  run -0 rst get / --to "$WORK/r"
  cmp "$SRC/gen-4" "$WORK/r/gen-4"
}

@test "--max-size removes the oldest snapshots until the referenced objects fit" {
  four_captures
  # each snapshot references its own 200 kB file: 800 kB in all
  run -0 planb-capture --store "$STORE" --prune --max-size 450K
  assert_equal "$(list_seqs)" "3 4"
  [ "$(objects_bytes "$STORE")" -le $((450 * 1024)) ]
}

@test "--keep-within keeps recent snapshots and never the newest" {
  four_captures
  run -0 planb-capture --store "$STORE" --prune --keep-within 1d
  assert_equal "$(list_seqs)" "1 2 3 4"
  sleep 1.1
  run -0 planb-capture --store "$STORE" --prune --keep-within 1s
  assert_equal "$(list_seqs)" "4"
}

@test "prune applies per host and keeps objects another host still uses" {
  random_file "$SRC/shared" 300000
  cp -a "$SRC" "$WORK/src2"
  run -0 planb-capture --store "$STORE" --host web2 "$WORK/src2"
  four_captures
  # web1 drops snapshots 1-3; web2's only snapshot is its newest and stays
  run -0 planb-capture --store "$STORE" --prune --keep-last 1
  assert_equal "$(list_seqs)" "4"
  run -0 planb-restore --store "$STORE" --host web2 list
  assert_line --regexp '^1 '
  run -0 planb-restore --store "$STORE" --host web2 get / --to "$WORK/r2"
  cmp "$WORK/src2/shared" "$WORK/r2/shared"
  run -0 planb-capture --store "$STORE" --verify
}

@test "--prune --dry-run lists what would go and removes nothing" {
  four_captures
  local before; before=$(store_listing "$STORE")
  run -0 planb-capture --store "$STORE" --prune --keep-last 1 --dry-run
  assert_output --partial "would remove snapshot 1"
  assert_equal "$(store_listing "$STORE")" "$before"
  assert_equal "$(list_seqs)" "1 2 3 4"
}

@test "retention from STORE/config runs after each capture" {
  printf 'x\n' >"$SRC/x"
  run -0 cap "$SRC"
  printf '# retention\nkeep-last = 2\n' >"$STORE/config"
  local gen
  for gen in 2 3 4 5; do
    random_file "$SRC/gen-$gen" 100000
    run -0 cap "$SRC"
    assert_equal "${lines[-1]}" "$gen"
  done
  assert_equal "$(list_seqs)" "4 5"
  [ -f "$STORE/config" ] || fail "STORE/config is gone"
  run -0 planb-capture --store "$STORE" --verify
}

@test "retention options on a capture apply after it" {
  four_captures --keep-last 2
  assert_equal "$(list_seqs)" "3 4"
  run -0 planb-capture --store "$STORE" --verify
}

# --- crash safety ---------------------------------------------------------------

# Replaces SRC/round with N MB of new random files (5 MB each).
fresh_round() {
  local mb=$1 k
  rm -rf "$SRC/round" && mkdir -p "$SRC/round"
  for k in $(seq 1 $((mb / 5))); do random_file "$SRC/round/f$k" 5000000; done
}

# Milliseconds since the epoch.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

@test "kill -9 during capture: store verifies, only committed snapshots listed, next capture restores identically" {
  printf 'base\n' >"$SRC/base"
  local problems="" delay pid seqs_before n
  # each round: 100 MB of new content (a capture of it takes about a second),
  # killed at a different point
  for delay in 0.15 0.5 0.9; do
    fresh_round 100
    seqs_before=$(list_seqs 2>/dev/null || true)
    # the binary itself, not a shell function, so that $! is its pid
    planb-capture --store "$STORE" --host "$HOST" "$SRC" >"$WORK/killed.out" 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    grep -q 'files read' "$WORK/killed.out" && echo "# note: capture finished before the kill after ${delay}s" >&3
    # only committed snapshots: those before, plus one if it finished in time
    n=$(list_seqs 2>/dev/null || true)
    if [ "$n" != "$seqs_before" ] && ! grep -qx "${n##* }" "$WORK/killed.out"; then
      problems+=$'\n'"kill after ${delay}s: list shows '$n', before it was '$seqs_before' and the capture did not finish"
    fi
    run planb-capture --store "$STORE" --verify
    [ "$status" -eq 0 ] || problems+=$'\n'"kill after ${delay}s: --verify exit $status: $(tail -c 400 <<<"$output")"
    run cap "$SRC"
    if [ "$status" -ne 0 ]; then
      problems+=$'\n'"kill after ${delay}s: next capture exit $status: $(tail -c 300 <<<"$output")"
      continue
    fi
    treedump "$SRC" >"$WORK/src.dump"
    rm -rf "$WORK/r"
    run rst get / --to "$WORK/r"
    [ "$status" -eq 0 ] || problems+=$'\n'"kill after ${delay}s: restore exit $status: $(tail -c 300 <<<"$output")"
    treedump "$WORK/r" >"$WORK/r.dump"
    cmp -s "$WORK/src.dump" "$WORK/r.dump" ||
      problems+=$'\n'"kill after ${delay}s: restored tree differs: $(diff "$WORK/src.dump" "$WORK/r.dump" | head -5)"
  done
  run planb-capture --store "$STORE" --verify
  [ "$status" -eq 0 ] || problems+=$'\n'"final --verify exit $status: $(tail -c 400 <<<"$output")"
  [ -z "$problems" ] || fail "$problems"
  [ -z "$(ls -A "$STORE/tmp")" ] || fail "stale temp files left in STORE/tmp: $(ls -A "$STORE/tmp" | head -3)"
}

@test "kill -9 during prune: the store stays consistent and prune can run again" {
  local round problems="" delay pid t0 dur
  printf 'base\n' >"$SRC/base"
  for round in 1 2 3 4; do
    fresh_round 30
    run -0 cap "$SRC"
  done
  treedump "$SRC" >"$WORK/latest.dump"
  mv "$STORE" "$WORK/store.orig"
  # how long a whole prune of this store takes, to kill at 20%, 50%, 80% of it
  cp -a "$WORK/store.orig" "$STORE"
  t0=$(now_ms)
  run -0 planb-capture --store "$STORE" --prune --keep-last 1
  dur=$(( $(now_ms) - t0 ))
  for delay in $(awk -v d="$dur" 'BEGIN { printf "%.3f %.3f %.3f", d*0.2/1000, d*0.5/1000, d*0.8/1000 }'); do
    # a fresh copy of the 4-snapshot store for each kill point
    rm -rf "$STORE" && cp -a "$WORK/store.orig" "$STORE"
    planb-capture --store "$STORE" --prune --keep-last 1 >"$WORK/prune.out" 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    run planb-capture --store "$STORE" --verify
    [ "$status" -eq 0 ] || problems+=$'\n'"prune killed after ${delay}s: --verify exit $status: $(tail -c 300 <<<"$output")"
    run list_seqs
    [[ "$output" == *4 ]] || problems+=$'\n'"prune killed after ${delay}s: newest snapshot missing from list: '$(head -c 200 <<<"$output")'"
    run planb-capture --store "$STORE" --prune --keep-last 1
    [ "$status" -eq 0 ] || problems+=$'\n'"prune killed after ${delay}s: prune again: exit $status: $output"
    run list_seqs
    [ "$output" = 4 ] || problems+=$'\n'"prune killed after ${delay}s: after a complete prune list shows '$(head -c 200 <<<"$output")'"
    rm -rf "$WORK/r"
    run rst get / --to "$WORK/r"
    if [ "$status" -ne 0 ]; then
      problems+=$'\n'"prune killed after ${delay}s: restore of the newest snapshot: exit $status: $output"
    else
      treedump "$WORK/r" >"$WORK/r.dump"
      cmp -s "$WORK/latest.dump" "$WORK/r.dump" ||
        problems+=$'\n'"prune killed after ${delay}s: restored newest snapshot differs from the source"
    fi
  done
  [ -z "$problems" ] || fail "$problems"
}
