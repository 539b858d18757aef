# Shared setup for the Plan B end-to-end tests (bats).
# Each test gets: $SRC (a tree to protect), $STORE (the store), $HOST, $WORK
# (scratch), all under $BATS_TEST_TMPDIR, which bats removes after the test.

bats_require_minimum_version 1.5.0
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

HELPERS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TREEDUMP="$HELPERS/treedump"

# The system python: a `python3` shim (pyenv) on PATH can cost a second a call.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
python3() { "$PY" "$@"; }

# scripts/test puts the build dir on PATH; running bats by hand works too.
if ! command -v planb-capture >/dev/null 2>&1; then
  PATH="${PLANB_BIN:-$HELPERS/../../build}:$PATH"
fi

# The end-to-end tests create devices, set owners and use setpriv: root only.
require_root() {
  [ "$(id -u)" -eq 0 ] || skip "needs root (mknod, chown, setpriv)"
}

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

treedump() { "$PY" "$TREEDUMP" "$@"; }

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
  "$PY" - "$1" <<'EOF'
import hashlib, os, sys
top = sys.argv[1]
out = []
for d, dirs, files in os.walk(top):
    for n in files:
        if n == "lock":
            continue
        p = os.path.join(d, n)
        st = os.lstat(p)
        h = hashlib.sha256(open(p, "rb").read()).hexdigest() if os.path.isfile(p) else "-"
        out.append("%s %o %d %s" % (os.path.relpath(p, top), st.st_mode, st.st_size, h))
print("\n".join(sorted(out)))
EOF
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

# 200-character directory name used to build a path longer than 1000 bytes.
LONGNAME=$(printf 'L%.0s' $(seq 1 200))

# Builds, under $1, a tree with every entry type and metadata planb must keep.
make_full_tree() {
  local t=$1
  mkdir -p "$t"
  (
    set -e
    cd "$t"
    # Regular files: empty, small, chunked (>= 1 MiB), medium.
    : >empty
    printf 'hello world\n' >small
    random_file big 3145728
    random_file medium 200000
    printf 'unchanged content\n' >stable
    printf 'to be deleted\n' >doomed
    printf 'to be renamed\n' >oldname
    printf 'mode changes\n' >chmodme
    printf 'owner changes\n' >chownme
    printf 'only mtime changes\n' >touchme
    printf 'same size edit!\n' >samesize
    printf 'becomes a dir\n' >becomesdir
    # Directories.
    mkdir -p dir/sub/deeper emptydir
    printf 'nested\n' >dir/sub/deeper/file
    printf 'in dir\n' >dir/file
    # Symlinks: relative, absolute, dangling, to a directory.
    ln -s small rel-link
    ln -s /etc/passwd abs-link
    ln -s does/not/exist dangling-link
    ln -s dir/sub dir-link
    # Hard links: one inode, three names in different directories.
    printf 'linked content\n' >hl-a
    ln hl-a dir/hl-b
    ln hl-a hl-c
    # Hard links of a chunked file.
    random_file bighl-1 1200000
    ln bighl-1 bighl-2
    # Specials.
    mkfifo fifo
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' sock
    mknod chardev c 1 3
    mknod blockdev b 7 0
    # Sparse files: 100M with a few bytes in the middle; a chunked one with two
    # data regions; one with no data at all; one ending in a hole.
    truncate -s 100M sparse-100m
    printf 'middle' | dd of=sparse-100m bs=1 seek=52428800 conv=notrunc status=none
    truncate -s 3M sparse-chunked
    head -c 65536 /dev/urandom | dd of=sparse-chunked conv=notrunc status=none
    head -c 100000 /dev/urandom | dd of=sparse-chunked bs=4096 seek=512 conv=notrunc status=none
    truncate -s 5M all-hole
    printf 'head' >tail-hole
    truncate -s 1M tail-hole
    # Special modes.
    printf '#!/bin/sh\n' >setuid && chmod 4755 setuid
    printf '#!/bin/sh\n' >setgid && chmod 2755 setgid
    mkdir setgid-dir && chmod 2775 setgid-dir
    mkdir sticky && chmod 1777 sticky
    printf 'private\n' >private && chmod 0600 private
    printf 'nothing\n' >mode000 && chmod 0000 mode000
    # Owners without names.
    printf 'odd owner\n' >odd-owner && chown 1234:5678 odd-owner
    mkdir odd-dir && chown 4321:8765 odd-dir
    ln -s small odd-link && chown -h 2345:6789 odd-link
    # Extended attributes and ACLs.
    printf 'xattrs\n' >xattr-file
    setfattr -n user.foo -v bar xattr-file
    setfattr -n user.bin -v 0x00ff10 xattr-file
    setfattr -n trusted.planb -v secret xattr-file
    setfattr -n user.dirattr -v yes dir
    printf 'acl\n' >acl-file
    setfacl -m u:1234:rw,g:5678:r acl-file
    mkdir acl-dir
    setfacl -m u:1234:rwx acl-dir
    setfacl -d -m u:1234:rwx,g:5678:rx acl-dir
    # Odd names.
    printf 'space\n' >'with space'
    printf 'newline\n' >$'new\nline'
    printf 'bytes\n' >$'\xff\xfe'
    printf 'utf8\n' >'ünïcödé'
    mkdir -p "$LONGNAME/$LONGNAME/$LONGNAME/$LONGNAME/$LONGNAME/$LONGNAME"
    printf 'deep\n' >"$LONGNAME/$LONGNAME/$LONGNAME/$LONGNAME/$LONGNAME/$LONGNAME/deep-file"
    # Times with nanoseconds, set last so nothing above changes them.
    touch -d '2001-02-03 04:05:06.123456789' small stable
    touch -h -d '2002-03-04 05:06:07.987654321' rel-link
    touch -d '1999-12-31 23:59:59.000000001' dir/sub/deeper
    touch -d '2003-01-01 00:00:00.5' .
  )
}

# Changes a tree made by make_full_tree in every way a capture must notice.
mutate_tree() {
  local t=$1
  (
    set -e
    cd "$t"
    local old
    printf 'edited content, longer than before\n' >small           # edit
    printf 'appended\n' >>big                                     # append (chunked)
    truncate -s 1000 medium                                       # truncate
    rm doomed                                                     # delete
    mv oldname newname                                            # rename
    chmod 0640 chmodme                                            # chmod
    chown 4321:8765 chownme                                       # chown
    touch -d '2010-10-10 10:10:10.101010101' touchme              # touch only
    old=$(stat -c %y samesize)                                    # same size and
    printf 'SAME SIZE EDIT?\n' >samesize                          # mtime: only
    touch -d "$old" samesize                                      # ctime changes
    ln stable stable-hardlink                                     # new hard link
    setfattr -n user.new -v added stable                          # new xattr
    setfattr -x user.foo xattr-file                               # removed xattr
    rm rel-link && ln -s stable rel-link                          # new link target
    rm becomesdir && mkdir becomesdir && printf 'x\n' >becomesdir/x  # type change
    rm hl-c                                                       # fewer links
    printf 'new file\n' >dir/sub/new-file                         # new file
    printf 'Z' | dd of=sparse-100m bs=1 seek=1000 conv=notrunc status=none  # sparse edit
  )
}
