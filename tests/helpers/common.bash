# Shared setup for the Plan B end-to-end tests (bats).
# Each test gets: $SRC (a tree to protect), $STORE (the store), $HOST, $WORK
# (scratch), all under $BATS_TEST_TMPDIR, which bats removes after the test.

bats_require_minimum_version 1.5.0
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

HELPERS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TREEDUMP="$HELPERS/treedump"

# scripts/test puts the build dir on PATH; running bats by hand works too.
if ! command -v planb-capture >/dev/null 2>&1; then
  PATH="${PLANB_BIN:-$HELPERS/../../build}:$PATH"
fi

common_setup() {
  WORK="$BATS_TEST_TMPDIR"
  SRC="$WORK/src"
  STORE="$WORK/store"
  HOST=web1
  mkdir -p "$SRC"
  export WORK SRC STORE HOST
}

# planb-capture / planb-restore against $STORE and $HOST.
cap() { planb-capture --store "$STORE" --host "$HOST" "$@"; }
rst() { planb-restore --store "$STORE" --host "$HOST" "$@"; }

# A field of the JSON object on the last line of $output (or of $1 if given).
# Prints "null" for a missing key.
json_field() {
  local field=$1 text=${2-$output}
  printf '%s\n' "$text" | tail -n 1 |
    python3 -c 'import json,sys; v=json.loads(sys.stdin.read()).get(sys.argv[1]); print(json.dumps(v) if isinstance(v,(list,dict,bool)) or v is None else v)' "$field"
}

treedump() { "$TREEDUMP" "$@"; }

# Fails (with a diff) unless the two dumps are identical.
assert_same_dump() {
  local expected=$1 actual=$2
  if ! diff -u "$expected" "$actual" >"$WORK/dump.diff"; then
    echo "tree differs from the captured tree (- captured, + restored):" >&2
    head -c 6000 "$WORK/dump.diff" >&2
    return 1
  fi
}

# Checksum listing of every file in a store (path, mode, size, sha256), minus
# the lock files planb (re)creates to take locks.
store_listing() {
  local s=$1
  (cd "$s" && find . \( -type f -o -type l \) ! -name lock -printf '%p %m %s\n' | LC_ALL=C sort |
    while read -r p m sz; do echo "$p $m $sz $(sha256sum <"$p" | cut -c1-64)"; done)
}

# Total bytes of object files in a store.
objects_bytes() {
  find "$1/objects" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}'
}

# Snapshot sequence numbers listed by `planb-restore list --json`, space separated.
list_seqs() {
  rst --json list | python3 -c 'import json,sys; print(" ".join(str(s["sequence"]) for s in json.load(sys.stdin)))'
}

# Writes N bytes of random data to FILE.
random_file() {
  head -c "$2" /dev/urandom >"$1"
}

# Flips one bit of the byte at OFFSET (default: the middle) of FILE in place.
flip_byte() {
  local f=$1 off=${2:-}
  [ -n "$off" ] || off=$(( $(stat -c %s "$f") / 2 ))
  python3 - "$f" "$off" <<'EOF'
import sys
p, off = sys.argv[1], int(sys.argv[2])
with open(p, 'r+b') as f:
    f.seek(off)
    b = f.read(1)
    f.seek(off)
    f.write(bytes([b[0] ^ 0x01]))
EOF
}

# Waits up to $2 seconds (default 10) for process $1 to exit.
wait_gone() {
  local pid=$1 t=${2:-10} i=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 0.1
    i=$((i + 1))
    [ $i -lt $((t * 10)) ] || return 1
  done
}
