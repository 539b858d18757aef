#!/usr/bin/env bats
# Documented exit codes of every command, error messages of the form
# "planb-<cmd>: error: failed to ...", and damage detection: a failing command
# must not change anything in the store.

load 'helpers/common'

# One store with two snapshots, made once; each test works on a copy.
setup_file() {
  local src="$BATS_FILE_TMPDIR/src" store="$BATS_FILE_TMPDIR/store"
  mkdir -p "$src/dir"
  printf 'small file\n' >"$src/small"
  printf 'other file\n' >"$src/other"
  head -c 100000 /dev/urandom >"$src/random"                  # stored raw
  yes 'compressible line of text' | head -c 50000 >"$src/text" # stored zstd
  head -c 2000000 /dev/urandom >"$src/big"                     # chunked
  printf 'in dir\n' >"$src/dir/file"
  planb-capture --store "$store" --host web1 "$src" >/dev/null
  planb-capture --store "$store" --host web1 "$src" >/dev/null
}

setup() {
  common_setup
  rmdir "$SRC"
  cp -a "$BATS_FILE_TMPDIR/src" "$SRC"
  cp -a "$BATS_FILE_TMPDIR/store" "$STORE"
  [ "$(list_seqs)" = "1 2" ] || fail "setup: the store does not hold snapshots 1 and 2"
}

teardown() {
  if [ -n "${LOCKER:-}" ]; then kill "$LOCKER" 2>/dev/null || true; wait "$LOCKER" 2>/dev/null || true; fi
}

# Path of the object holding the content of PATH in the latest snapshot.
object_of() {
  local hex
  hex=$(rst --json ls "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["entries"][0]["content"])')
  echo "$STORE/objects/${hex:0:2}/${hex:2}"
}

# Asserts the last run failed with exit $1 and an error line naming the command.
assert_error() {
  local code=$1 cmd=$2
  assert_equal "$status" "$code"
  assert_line --regexp "^$cmd: error: failed to "
}

# --- not found (4) --------------------------------------------------------

@test "missing store: exit 4 for every restore action, --verify and --prune" {
  local s="$WORK/no-such-store"
  for action in list "ls /" "versions /small" "get / --to $WORK/out"; do
    # shellcheck disable=SC2086
    run planb-restore --store "$s" --host web1 $action
    assert_error 4 planb-restore
  done
  run planb-capture --store "$s" --verify
  assert_error 4 planb-capture
  run planb-capture --store "$s" --prune --keep-last 1
  assert_error 4 planb-capture
  [ ! -e "$s" ]
  [ ! -e "$WORK/out" ]
}

@test "a directory that is not a store: exit 4" {
  mkdir "$WORK/notastore"
  printf 'x\n' >"$WORK/notastore/somefile"
  run planb-restore --store "$WORK/notastore" --host web1 list
  assert_error 4 planb-restore
  run planb-capture --store "$WORK/notastore" --verify
  assert_error 4 planb-capture
}

@test "unknown host: exit 4 for list, ls, versions, get and --verify --host" {
  for action in list "ls /" "versions /small" "get / --to $WORK/out"; do
    # shellcheck disable=SC2086
    run planb-restore --store "$STORE" --host nosuchhost $action
    assert_error 4 planb-restore
  done
  run planb-capture --store "$STORE" --verify --host nosuchhost
  assert_error 4 planb-capture
  [ ! -e "$WORK/out" ]
}

@test "nonexistent snapshot: exit 4 for ls and get" {
  run rst ls --snapshot 9 /
  assert_error 4 planb-restore
  run rst get --snapshot 9 / --to "$WORK/out"
  assert_error 4 planb-restore
  [ ! -e "$WORK/out" ]
}

@test "path not in the snapshot: exit 4 for ls, versions and get" {
  run rst ls /nope
  assert_error 4 planb-restore
  run rst versions /nope
  assert_error 4 planb-restore
  run rst get /nope --to "$WORK/out"
  assert_error 4 planb-restore
  run rst get /small /nope --to "$WORK/out"
  assert_error 4 planb-restore
  [ ! -e "$WORK/out/small" ]
}

@test "capture of a missing source: exit 4, no snapshot added" {
  run cap "$WORK/no-such-source"
  assert_error 4 planb-capture
  assert_equal "$(list_seqs)" "1 2"
}

# --- usage (2) --------------------------------------------------------------

# Runs a command; records a problem unless it exits with $1 and prints a
# "planb-<cmd>: error: failed to" line. Call check_problems at the end.
PROBLEMS=""
expect_usage() {
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" -eq 2 ] || PROBLEMS+=$'\n'"exit $rc (expected 2): $*: $(head -c 150 <<<"$out")"
  grep -Eq '^planb-[a-z]+: error: failed to ' <<<"$out" ||
    PROBLEMS+=$'\n'"no 'planb-<cmd>: error: failed to' line: $*: $(head -c 150 <<<"$out")"
}
check_problems() {
  [ -z "$PROBLEMS" ] || fail "usage errors not reported as documented:$PROBLEMS"
}

@test "bad options and arguments: exit 2 and an error line" {
  expect_usage planb-capture --bogus-option
  expect_usage planb-capture --store "$STORE" --host web1 --bogus-option "$SRC"
  expect_usage planb-capture --store "$STORE" --host web1 "$SRC" extra-arg
  expect_usage planb-restore --bogus-option list
  expect_usage planb-restore --store "$STORE" --host web1 list --bogus-option
  expect_usage planb-restore --store "$STORE" --host web1 frobnicate
  expect_usage planb-restore --store "$STORE" --host web1
  expect_usage planb-restore --store "$STORE" --host web1 versions
  expect_usage planb-restore --store "$STORE" --host web1 ls --snapshot notanumber /
  check_problems
  assert_equal "$(list_seqs)" "1 2"
}

@test "capture usage errors: exit 2 with an error message" {
  run planb-capture --store "$STORE" "$SRC"
  assert_error 2 planb-capture                       # no --host
  run planb-capture --store "$STORE" --host web1
  assert_error 2 planb-capture                       # no SOURCE
  run planb-capture --store "$STORE" --host 'bad/host' "$SRC"
  assert_error 2 planb-capture
  run planb-capture --store "$STORE" --host -dash "$SRC"
  assert_equal "$status" 2
  run cap "$SRC/small"
  assert_error 2 planb-capture                       # SOURCE not a directory
  run cap --keep-last 0 "$SRC"
  assert_error 2 planb-capture
  run cap --max-size 12X "$SRC"
  assert_error 2 planb-capture
  run cap --keep-within 3fortnights "$SRC"
  assert_error 2 planb-capture
  run planb-capture --store "$STORE" --verify --prune
  assert_error 2 planb-capture
  assert_equal "$(list_seqs)" "1 2"
}

@test "restore usage errors: exit 2 with an error message" {
  run planb-restore --store "$STORE" list
  assert_error 2 planb-restore                       # no --host
  run rst get /small
  assert_error 2 planb-restore                       # neither --to nor --in-place
  run rst get /small --to "$WORK/out" --in-place
  assert_error 2 planb-restore
  run rst get --at now --snapshot 1 /small --to "$WORK/out"
  assert_error 2 planb-restore
  run rst get --at 'the day after tomorrow-ish' /small --to "$WORK/out"
  assert_error 2 planb-restore
  run rst get /../etc/passwd --to "$WORK/out"
  assert_error 2 planb-restore
  [ ! -e "$WORK/out" ]
}

# --- destination exists (6) and failure (1) --------------------------------

@test "get onto an existing file: exit 6 naming it; --force replaces" {
  mkdir -p "$WORK/out/dir"
  printf 'mine\n' >"$WORK/out/dir/file"
  run rst get /dir/file --to "$WORK/out"
  assert_error 6 planb-restore
  assert_output --partial "$WORK/out/dir/file"
  assert_equal "$(cat "$WORK/out/dir/file")" "mine"
  run -0 rst get /dir/file --to "$WORK/out" --force
  assert_equal "$(cat "$WORK/out/dir/file")" "in dir"
}

@test "get --force where the target has a directory and the snapshot a file: warning, exit 3" {
  mkdir -p "$WORK/out/small"
  run rst get /small /other --to "$WORK/out" --force
  assert_equal "$status" 3
  assert_line --regexp '^planb-restore: warning: .*small'
  [ -d "$WORK/out/small" ]
  assert_equal "$(cat "$WORK/out/other")" "other file"
}

@test "get of a directory onto an existing non-directory: exit 6 without --force, replaced with it" {
  mkdir -p "$WORK/out"
  printf 'file where a dir was\n' >"$WORK/out/dir"
  run rst get /dir --to "$WORK/out"
  assert_error 6 planb-restore
  [ -f "$WORK/out/dir" ]
  run -0 rst get /dir --to "$WORK/out" --force
  assert_equal "$(cat "$WORK/out/dir/file")" "in dir"
}

@test "capture into a store path below a regular file: exit 1" {
  printf 'x\n' >"$WORK/afile"
  run planb-capture --store "$WORK/afile/store" --host web1 "$SRC"
  assert_error 1 planb-capture
}

@test "get to a destination under a regular file: exit 1" {
  printf 'x\n' >"$WORK/afile"
  run rst get /small --to "$WORK/afile/sub"
  assert_error 1 planb-restore
}

# --- corrupt (5) --------------------------------------------------------------

# Flips a byte in the payload of the object holding PATH's content, then checks:
# restoring PATH exits 5 naming the object, writes nothing, changes nothing in
# the store; --verify exits 5 naming the object; other files still restore.
check_corrupt_object() {
  local path=$1 obj hex
  obj=$(object_of "$path")
  [ -f "$obj" ] || fail "no object file for $path"
  hex=$(basename "$(dirname "$obj")")$(basename "$obj")
  chmod u+w "$obj"
  flip_byte "$obj" $(( 16 + ($(stat -c %s "$obj") - 16) / 2 ))
  chmod 0444 "$obj"
  local before; before=$(store_listing "$STORE")

  run rst get "$path" --to "$WORK/out"
  assert_error 5 planb-restore
  assert_output --partial "$hex"
  [ ! -e "$WORK/out$path" ] || fail "a damaged $path was restored"
  run find "$WORK/out" -name '*planb-restore*'
  assert_output ""

  run planb-capture --store "$STORE" --verify
  assert_error 5 planb-capture
  assert_line --regexp "warning: damage: .*$hex"

  run planb-capture --store "$STORE" --verify --host "$HOST"
  assert_equal "$status" 5

  assert_equal "$(store_listing "$STORE")" "$before"

  run -0 rst get /other --to "$WORK/ok"
  assert_equal "$(cat "$WORK/ok/other")" "other file"
}

@test "corrupt raw object: restore of that file exits 5, --verify exits 5 naming the object" {
  check_corrupt_object /random
}

@test "corrupt small raw object: same" {
  check_corrupt_object /small
}

@test "corrupt zstd-compressed object: same" {
  check_corrupt_object /text
}

@test "corrupt chunk index of a big file: same" {
  check_corrupt_object /big
}

@test "--verify --host checks only that host's objects" {
  mkdir "$WORK/src2"
  printf 'only on web2\n' >"$WORK/src2/w2"
  run -0 planb-capture --store "$STORE" --host web2 "$WORK/src2"
  local hex obj
  hex=$(planb-restore --store "$STORE" --host web2 --json ls /w2 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["entries"][0]["content"])')
  obj="$STORE/objects/${hex:0:2}/${hex:2}"
  chmod u+w "$obj" && flip_byte "$obj" 17 && chmod 0444 "$obj"
  run -0 planb-capture --store "$STORE" --verify --host web1
  run planb-capture --store "$STORE" --verify --host web2
  assert_error 5 planb-capture
  assert_output --partial "$hex"
  run planb-capture --store "$STORE" --verify
  assert_error 5 planb-capture
}

@test "a missing object: restore exits 5, --verify exits 5 naming it" {
  local obj; obj=$(object_of /other)
  rm -f "$obj"
  run rst get /other --to "$WORK/out"
  assert_error 5 planb-restore
  run planb-capture --store "$STORE" --verify
  assert_error 5 planb-capture
  assert_output --partial "$(basename "$obj")"
}

@test "an intact store verifies with exit 0" {
  run -0 planb-capture --store "$STORE" --verify
  assert_output --partial "no damage"
  run -0 planb-capture --store "$STORE" --verify --json
  assert_equal "$(json_field damage)" "[]"
  assert_equal "$(json_field manifests)" 2
}

@test "corrupt manifest: ls/get of that snapshot exit 5 naming the manifest; --verify exits 5" {
  local m="$STORE/hosts/$HOST/manifests/0000000001.pbm"
  chmod u+w "$m"
  flip_byte "$m"
  local before; before=$(store_listing "$STORE")
  run rst ls --snapshot 1 /
  assert_error 5 planb-restore
  assert_output --partial "0000000001.pbm"
  run rst get --snapshot 1 / --to "$WORK/out"
  assert_error 5 planb-restore
  assert_output --partial "0000000001.pbm"
  [ ! -e "$WORK/out/small" ]
  run rst versions /small
  assert_error 5 planb-restore
  run planb-capture --store "$STORE" --verify
  assert_error 5 planb-capture
  assert_output --partial "0000000001.pbm"
  assert_equal "$(store_listing "$STORE")" "$before"
  # the intact snapshot still restores
  run -0 rst get --snapshot 2 /small --to "$WORK/ok"
}

@test "corrupt checksum trailer of a manifest: exit 5" {
  local m="$STORE/hosts/$HOST/manifests/0000000002.pbm"
  chmod u+w "$m"
  flip_byte "$m" $(( $(stat -c %s "$m") - 1 ))
  run rst ls --snapshot 2 /
  assert_error 5 planb-restore
  assert_output --partial "0000000002.pbm"
}

@test "corrupt latest manifest: the next capture exits 5 and adds no snapshot" {
  local m="$STORE/hosts/$HOST/manifests/0000000002.pbm"
  chmod u+w "$m"
  flip_byte "$m"
  local before; before=$(store_listing "$STORE")
  printf 'new\n' >"$SRC/new"
  run cap "$SRC"
  assert_error 5 planb-capture
  assert_equal "$(store_listing "$STORE")" "$before"
}

@test "corrupt store marker: exit 5" {
  chmod u+w "$STORE/planb-store"
  printf 'planb-store 99\n' >"$STORE/planb-store"
  run rst list
  assert_error 5 planb-restore
  run cap "$SRC"
  assert_error 5 planb-capture
}

# --- locked (7) --------------------------------------------------------------

# Holds an flock(2) on FILE (exclusive) in the background until teardown.
hold_lock() {
  local file=$1
  "$PY" -c '
import fcntl, os, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
open(sys.argv[2], "w").close()
time.sleep(60)' "$file" "$WORK/locked" &
  LOCKER=$!
  local i=0
  until [ -e "$WORK/locked" ]; do sleep 0.05; i=$((i + 1)); [ $i -lt 200 ] || fail "could not take $file"; done
}

@test "capture while another process holds the host: exit 7, no snapshot added" {
  hold_lock "$STORE/hosts/$HOST/lock"
  printf 'new\n' >"$SRC/new"
  run cap "$SRC"
  assert_error 7 planb-capture
  kill "$LOCKER"; wait "$LOCKER" 2>/dev/null || true; LOCKER=
  assert_equal "$(list_seqs)" "1 2"
  run -0 cap "$SRC"
  assert_equal "$(list_seqs)" "1 2 3"
}

@test "a restore waits for a store-wide lock (e.g. a running prune) instead of failing" {
  hold_lock "$STORE/lock"
  rst list >"$WORK/list.out" 2>&1 &
  local pid=$!
  sleep 1
  kill -0 "$pid" || fail "restore did not wait for the lock: $(cat "$WORK/list.out")"
  kill "$LOCKER"; wait "$LOCKER" 2>/dev/null || true; LOCKER=
  wait "$pid"
  grep -q '^2 ' "$WORK/list.out"
}
