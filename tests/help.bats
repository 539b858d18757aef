#!/usr/bin/env bats
# Every command answers --help: exit 0, the usage and the exit codes on stdout,
# nothing on stderr.

load 'helpers/common'

setup() {
  common_setup
  BUILD=${PLANB_BIN:-$(dirname "$(command -v planb-capture)")}
}

# Checks one binary's --help; prints what is wrong and fails.
check_help() {
  local bin=$1
  local out="$WORK/help.out" err="$WORK/help.err" rc=0
  "$bin" --help >"$out" 2>"$err" || rc=$?
  local bad=""
  [ "$rc" -eq 0 ] || bad+=" exit status $rc (expected 0);"
  [ -s "$out" ] || bad+=" nothing on stdout;"
  grep -q "Exit codes" "$out" || bad+=" stdout does not mention 'Exit codes';"
  for code in 0 1 2 3 4 5 6 7; do
    grep -Eq "^ *$code +[a-z]" "$out" || bad+=" exit code $code not listed;"
  done
  [ ! -s "$err" ] || bad+=" stderr not empty: $(head -c 200 "$err");"
  if [ -n "$bad" ]; then
    echo "$(basename "$bin") --help:$bad" >&2
    return 1
  fi
}

@test "the build dir has the planb-capture, planb-restore and planb-diff binaries" {
  for b in planb-capture planb-restore planb-diff; do
    [ -x "$BUILD/$b" ] || fail "missing $BUILD/$b"
  done
}

@test "planb-capture --help: exit 0, exit codes on stdout, empty stderr" {
  check_help "$BUILD/planb-capture"
}

@test "planb-restore --help: exit 0, exit codes on stdout, empty stderr" {
  check_help "$BUILD/planb-restore"
}

@test "planb-diff --help: exit 0, exit codes on stdout, empty stderr" {
  check_help "$BUILD/planb-diff"
}

@test "every planb-* binary in the build dir answers --help properly" {
  # planb-unit is the gtest runner, not a command (not installed).
  local failed=0 n=0
  for bin in "$BUILD"/planb-*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    [ "$(basename "$bin")" != planb-unit ] || continue
    n=$((n + 1))
    check_help "$bin" || failed=1
  done
  [ "$n" -ge 3 ] || fail "only $n planb-* binaries found in $BUILD"
  [ "$failed" -eq 0 ]
}

@test "planb (the front command) --help: exit 0, exit codes on stdout, empty stderr" {
  check_help "$BUILD/planb"
}

@test "planb-restore ACTION --help: exit 0, usage on stdout, empty stderr" {
  local a
  for a in list ls versions get; do
    "$BUILD/planb-restore" "$a" --help >"$WORK/out" 2>"$WORK/err" || fail "planb-restore $a --help: exit $?"
    [ -s "$WORK/out" ] || fail "planb-restore $a --help: nothing on stdout"
    [ ! -s "$WORK/err" ] || fail "planb-restore $a --help: stderr: $(cat "$WORK/err")"
  done
  grep -q -- '--in-place' "$WORK/out"
}

@test "--version prints the version on stdout with exit 0" {
  run -0 --separate-stderr "$BUILD/planb-capture" --version
  assert_output --regexp '^[0-9]+\.[0-9]+\.[0-9]+'
  assert_equal "$stderr" ""
  run -0 --separate-stderr "$BUILD/planb-restore" --version
  assert_output --regexp '^[0-9]+\.[0-9]+\.[0-9]+'
}

@test "--help does not need a store or touch one" {
  run -0 env PLANB_STORE="$WORK/nostore" planb-capture --help
  run -0 env PLANB_STORE="$WORK/nostore" planb-restore --help
  [ ! -e "$WORK/nostore" ]
}
