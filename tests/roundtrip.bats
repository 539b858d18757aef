#!/usr/bin/env bats
# Capture → change → capture → restore: what comes back must be the tree as it
# was at each capture, with all metadata (see helpers/treedump for the list).
#
# setup_file builds one tree with every entry type (helpers/common.bash:
# make_full_tree), captures it (snapshot 1), changes it in every way
# (mutate_tree) and captures again (snapshot 2), saving treedump at each
# capture. Tests only read that store; tests that write restore elsewhere or
# build their own tree and store.
#
# The top directory's line is compared too: `get / --to DIR` gives DIR the
# snapshot root's mode, owner, xattrs and mtime.

load 'helpers/common'

setup_file() {
  require_root
  export FT="$BATS_FILE_TMPDIR"
  export FSRC="$FT/src" FSTORE="$FT/store"
  make_full_tree "$FSRC"
  treedump "$FSRC" >"$FT/dump1"
  planb-capture --store "$FSTORE" --host web1 --json "$FSRC" >"$FT/cap1.json" 2>"$FT/cap1.err"
  echo $? >"$FT/cap1.rc"
  mutate_tree "$FSRC"
  treedump "$FSRC" >"$FT/dump2"
  planb-capture --store "$FSTORE" --host web1 --json "$FSRC" >"$FT/cap2.json" 2>"$FT/cap2.err"
  echo $? >"$FT/cap2.rc"
}

setup() {
  require_root
  common_setup
  STORE=$FSTORE
}

# The line of treedump FILE for relative path REL.
dump_line() {
  python3 - "$1" "$2" <<'PY'
import os, sys
prefix = repr(os.fsencode(sys.argv[2])) + " type="
for line in open(sys.argv[1], encoding="utf-8", errors="surrogateescape"):
    if line.startswith(prefix):
        print(line, end="")
PY
}

@test "the tree with every entry type is captured twice, exit 0, sequences 1 and 2" {
  [ "$(cat "$FT/cap1.rc")" -eq 0 ] || fail "capture 1 exit $(cat "$FT/cap1.rc"): $(cat "$FT/cap1.err")"
  [ "$(cat "$FT/cap2.rc")" -eq 0 ] || fail "capture 2 exit $(cat "$FT/cap2.rc"): $(cat "$FT/cap2.err")"
  assert_equal "$(json_field sequence "$(cat "$FT/cap1.json")")" 1
  assert_equal "$(json_field sequence "$(cat "$FT/cap2.json")")" 2
  # the dumps really differ, and hold what the tests rely on
  ! cmp -s "$FT/dump1" "$FT/dump2"
  grep -q "type=socket" "$FT/dump1"
  grep -q "type=blk .* rdev=7:0" "$FT/dump1"
  grep -q "xattr:system.posix_acl_default=" "$FT/dump1"
  grep -q "link=" "$FT/dump1"
  grep -q "'sparse-100m' .* data=52428800+4096" "$FT/dump1"
  grep -q "'all-hole' .* data=all-hole" "$FT/dump1"
  [ "$(awk '{print length($1)}' "$FT/dump1" | sort -n | tail -1)" -gt 1000 ]
}

@test "get --snapshot 1 / recreates the first tree exactly (all types and metadata)" {
  run -0 rst get --snapshot 1 / --to "$WORK/r1"
  treedump "$WORK/r1" >"$WORK/r1.dump"
  assert_same_dump "$FT/dump1" "$WORK/r1.dump"
}

@test "get --snapshot 2 / recreates the changed tree exactly" {
  run -0 rst get --snapshot 2 / --to "$WORK/r2"
  treedump "$WORK/r2" >"$WORK/r2.dump"
  assert_same_dump "$FT/dump2" "$WORK/r2.dump"
}

@test "get without --snapshot restores the latest snapshot" {
  run -0 rst get / --to "$WORK/r"
  treedump "$WORK/r" >"$WORK/r.dump"
  assert_same_dump "$FT/dump2" "$WORK/r.dump"
}

@test "the second capture noticed each kind of change (JSON counters)" {
  local j; j=$(cat "$FT/cap2.json")
  # read again (planb-capture(1), Stat cache): new or renamed paths, and
  # files whose size, mtime, ctime, mode, uid or gid changed -- small big
  # medium newname chmodme chownme touchme samesize stable (new link, new
  # xattr) becomesdir/x dir/sub/new-file sparse-100m dir/hl-b (link removed)
  local read unchanged files
  read=$(json_field files_read "$j")
  unchanged=$(json_field files_unchanged "$j")
  files=$(json_field files "$j")
  [ "$read" -ge 13 ] || fail "files_read=$read: some changed files were not read again"
  [ "$unchanged" -ge 10 ] || fail "files_unchanged=$unchanged: the stat cache was not used"
  assert_equal "$((read + unchanged))" "$files"
  assert_equal "$(json_field unreadable "$j")" 0
}

@test "single-file get of a file from snapshot 1 after it changed gives the old version" {
  run -0 rst get --snapshot 1 /small --to "$WORK/one"
  assert_equal "$(cat "$WORK/one/small")" "hello world"
  treedump --no-root "$WORK/one" >"$WORK/one.dump"
  assert_equal "$(cat "$WORK/one.dump")" "$(dump_line "$FT/dump1" small)"
  # only that file was restored
  assert_equal "$(ls -A "$WORK/one")" "small"
}

@test "get of a same-size edit with the old mtime restores the old content (ctime-based change detection)" {
  run -0 rst get --snapshot 1 /samesize --to "$WORK/s1"
  run -0 rst get --snapshot 2 /samesize --to "$WORK/s2"
  assert_equal "$(cat "$WORK/s1/samesize")" "same size edit!"
  assert_equal "$(cat "$WORK/s2/samesize")" "SAME SIZE EDIT?"
}

@test "get /dir/sub/deeper/file --to DIR creates DIR/dir/sub/deeper/file with the parents' metadata" {
  run -0 rst get --snapshot 1 /dir/sub/deeper/file --to "$WORK/nested"
  [ -f "$WORK/nested/dir/sub/deeper/file" ]
  treedump --no-root "$WORK/nested" >"$WORK/nested.dump"
  for p in dir dir/sub dir/sub/deeper dir/sub/deeper/file; do
    assert_equal "$(dump_line "$WORK/nested.dump" "$p")" "$(dump_line "$FT/dump1" "$p")"
  done
}

@test "get of a whole subdirectory restores just that subtree" {
  run -0 rst get --snapshot 2 /dir --to "$WORK/sub"
  treedump --no-root "$WORK/sub" >"$WORK/sub.dump"
  # dir/hl-b's other name (hl-a) is outside the subtree: no link group there
  grep -e "^b'dir' " -e "^b'dir/" "$FT/dump2" | sed "/^b'dir\/hl-b' /s/ link=[0-9]*//" >"$WORK/sub.expected"
  assert_same_dump "$WORK/sub.expected" "$WORK/sub.dump"
}

@test "get of a hard link whose first name is not restored still gives its content" {
  run -0 rst get --snapshot 1 /dir/hl-b --to "$WORK/hl"
  assert_equal "$(cat "$WORK/hl/dir/hl-b")" "linked content"
}

@test "get of odd names: newline, non-UTF-8 bytes, >1000-byte path" {
  run -0 rst get --snapshot 1 $'/new\nline' $'/\xff\xfe' "/$LONGNAME/$LONGNAME/$LONGNAME/$LONGNAME/$LONGNAME/$LONGNAME/deep-file" --to "$WORK/odd"
  assert_equal "$(cat "$WORK/odd/"$'new\nline')" "newline"
  assert_equal "$(cat "$WORK/odd/"$'\xff\xfe')" "bytes"
  assert_equal "$(cat "$WORK/odd/$LONGNAME/$LONGNAME/$LONGNAME/$LONGNAME/$LONGNAME/$LONGNAME/deep-file")" "deep"
}

@test "versions lists 2 versions of a changed file and 1 of an unchanged one" {
  run -0 rst --json versions /small
  run -0 python3 -c '
import json,sys
v=json.loads(sys.argv[1])
print(len(v), [x["snapshots"] for x in v], v[0]["entry"]["size"], v[1]["entry"]["size"])' "$output"
  assert_output "2 [[1], [2]] 12 35"
  run -0 rst versions /small
  assert_line --regexp '^version 1 .*snapshots 1$'
  assert_line --regexp '^version 2 .*snapshots 2$'
  run -0 rst versions /dir/file
  assert_line --regexp '^version 1 .*snapshots 1-2$'
  refute_line --regexp '^version 2'
}

@test "versions of a path only in snapshot 1 lists it once; unknown path is exit 4" {
  run -0 rst versions /doomed
  assert_line --regexp '^version 1 .*snapshots 1$'
  run -4 rst versions /never-existed
  assert_output --partial "error: failed to"
}

@test "ls shows the top level of a snapshot with types, links and escaped odd names" {
  run -0 rst ls --snapshot 1 /
  assert_line --regexp '^-rw-r--r-- .* small$'
  assert_line --regexp '^d.* dir$'
  assert_line --regexp '^l.* rel-link -> small$'
  assert_line --regexp '^l.* dangling-link -> does/not/exist$'
  assert_line --regexp '^p.* fifo$'
  assert_line --regexp '^s.* sock$'
  assert_line --regexp '^c.* chardev$'
  assert_line --regexp '^b.* blockdev$'
  assert_line --regexp '^-rwsr-xr-x .* setuid$'
  assert_line --regexp '^drwxrwxrwt .* sticky$'
  assert_line --regexp '^-[-rwx]{9} +1234 +5678 .* odd-owner$'
  assert_line --partial 'new\nline'
  assert_line --partial '\xff\xfe'
  # not recursive: nothing from inside dir/
  refute_line --partial 'deeper'
  # snapshot 1 has doomed, not newname; snapshot 2 the other way round
  assert_line --regexp ' doomed$'
  refute_line --regexp ' newname$'
  run -0 rst ls --snapshot 2 /
  assert_line --regexp ' newname$'
  refute_line --regexp ' doomed$'
}

@test "ls -R lists the whole tree with full paths; ls of a file shows that file" {
  run -0 rst ls -R --snapshot 1 /dir
  assert_line --regexp ' /dir/sub/deeper/file$'
  assert_line --regexp ' /dir/file$'
  run -0 rst ls --snapshot 1 /dir/sub/deeper/file
  assert_equal "${#lines[@]}" 1
  assert_output --regexp ' 7 .*/dir/sub/deeper/file$'
  run -0 rst --json ls --snapshot 1 /
  run -0 python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["snapshot"], sorted(e["path"] for e in d["entries"] if e["path"] in ("/small","/dir","/big")))' "$output"
  assert_output "1 ['/big', '/dir', '/small']"
}

@test "ls shows a hard-linked file once with its content, its other names as => links (planb-restore(1))" {
  # dir/hl-b sorts first, so it holds the content; hl-a and hl-c link to it
  run -0 rst ls --snapshot 1 /dir/hl-b
  assert_output --regexp '^-rw-r--r-- +root +root +15 .* /dir/hl-b$'
  run -0 rst ls --snapshot 1 /hl-a /hl-c
  assert_line --regexp '^h.* /hl-a => /dir/hl-b$'
  assert_line --regexp '^h.* /hl-c => /dir/hl-b$'
  run -0 rst versions /hl-c
  assert_output --regexp 'root +root +15 '
}

@test "list shows both snapshots" {
  run -0 rst list
  assert_line --regexp '^1 '
  assert_line --regexp '^2 '
  assert_equal "$(list_seqs)" "1 2"
}

@test "--at now picks the latest snapshot; --at yesterday finds none (exit 4)" {
  run -0 rst get --at now /small --to "$WORK/now"
  assert_equal "$(cat "$WORK/now/small")" "edited content, longer than before"
  run -0 rst ls --at now /newname
  run -4 rst get --at yesterday /small --to "$WORK/yest"
  assert_output --partial "error: failed to"
  [ ! -e "$WORK/yest/small" ]
  run -4 rst ls --at yesterday /
}

@test "get onto an existing file: exit 6 and unchanged without --force; replaced with --force" {
  mkdir -p "$WORK/dest"
  printf 'precious\n' >"$WORK/dest/small"
  touch -d '2020-01-01' "$WORK/dest/small"
  local before; before=$(treedump "$WORK/dest")
  run -6 rst get --snapshot 1 /small --to "$WORK/dest"
  assert_output --partial "error: failed to"
  assert_equal "$(treedump "$WORK/dest")" "$before"
  run -0 rst get --snapshot 1 /small --force --to "$WORK/dest"
  assert_equal "$(cat "$WORK/dest/small")" "hello world"
  assert_equal "$(treedump --no-root "$WORK/dest")" "$(dump_line "$FT/dump1" small)"
}

@test "get / onto an existing tree without --force is refused before anything is written" {
  run -0 rst get --snapshot 2 / --to "$WORK/t"
  printf 'local edit\n' >"$WORK/t/stable"
  rm "$WORK/t/small"
  local before; before=$(treedump "$WORK/t")
  run -6 rst get --snapshot 1 / --to "$WORK/t"
  assert_equal "$(treedump "$WORK/t")" "$before"
  [ ! -e "$WORK/t/small" ]
  # a directory where snapshot 1 has a file is not replaced (a warning, exit 3)
  rm -r "$WORK/t/becomesdir"
  run -0 rst get --snapshot 1 / --to "$WORK/t" --force
  # --force replaces what exists; files that snapshot 1 lacks stay
  treedump "$WORK/t" | grep -v -e "^b'newname' " -e "^b'stable-hardlink' " -e "^b'dir/sub/new-file' " \
    >"$WORK/t.dump"
  assert_same_dump "$FT/dump1" "$WORK/t.dump"
}

@test "merging into an existing directory sets its metadata to the snapshot's (foreign xattrs and ACLs go)" {
  mkdir -p "$WORK/dest/dir"
  setfattr -n user.foreign -v 1 "$WORK/dest/dir"
  setfacl -m u:4242:rwx "$WORK/dest/dir"
  setfacl -d -m u:4242:rwx "$WORK/dest/dir"
  chmod 0700 "$WORK/dest/dir"
  run -0 rst get --snapshot 1 /dir --to "$WORK/dest"
  treedump --no-root "$WORK/dest" >"$WORK/dest.dump"
  # planb-restore(1): existing directories are merged into, "and their
  # metadata is set to the snapshot's" -- xattrs and POSIX ACLs included
  assert_equal "$(dump_line "$WORK/dest.dump" dir)" "$(dump_line "$FT/dump1" dir)"
}

@test "get never writes through a symlink that stands where the snapshot has a directory" {
  mkdir -p "$WORK/dest" "$WORK/outside"
  ln -s "$WORK/outside" "$WORK/dest/dir"
  run rst get --snapshot 1 /dir/file --to "$WORK/dest"
  # either refused (the destination of a directory exists as a non-directory)
  # or the link replaced by a real directory; never a file outside DEST
  [ -z "$(ls -A "$WORK/outside")" ] ||
    fail "restore wrote outside the destination, through the symlink dest/dir: $(ls -A "$WORK/outside") (exit $status)"
  if [ "$status" -eq 0 ]; then
    [ -d "$WORK/dest/dir" ] && [ ! -L "$WORK/dest/dir" ] && [ -f "$WORK/dest/dir/file" ]
  else
    assert_equal "$status" 6
  fi
}

@test "get --in-place never writes through a symlink planted in the source tree" {
  mkdir -p "$SRC/etc" "$WORK/outside"
  printf 'config\n' >"$SRC/etc/app.conf"
  STORE="$WORK/store"
  run -0 cap "$SRC"
  rm -r "$SRC/etc"
  ln -s "$WORK/outside" "$SRC/etc"
  run rst get --in-place /etc/app.conf
  [ -z "$(ls -A "$WORK/outside")" ] ||
    fail "restore wrote outside the source tree, through the symlink etc: $(ls -A "$WORK/outside") (exit $status)"
}

@test "--at @SECONDS between two captures picks the earlier snapshot" {
  STORE="$WORK/store"
  printf 'one\n' >"$SRC/f"
  run -0 cap "$SRC"
  sleep 1.1
  local between; between=$(date +%s)
  sleep 1.1
  printf 'two\n' >"$SRC/f"
  run -0 cap "$SRC"
  run -0 rst get --at "@$between" /f --to "$WORK/r"
  assert_equal "$(cat "$WORK/r/f")" one
  run -0 rst ls --json --at "@$between" /f
  assert_equal "$(json_field snapshot)" 1
  run -0 rst ls --json --at "@$(( between + 2 ))" /f
  assert_equal "$(json_field snapshot)" 2
  run rst ls --at "@$(( between - 5 ))" /f
  assert_equal "$status" 4
}

@test "files around the 1 MiB chunking threshold round-trip" {
  STORE="$WORK/store"
  local n
  for n in 0 1 63 64 65 1048575 1048576 1048577 2097152; do random_file "$SRC/f$n" "$n"; done
  truncate -s 1048576 "$SRC/hole-1m"
  treedump "$SRC" >"$WORK/src.dump"
  run -0 cap "$SRC"
  run -0 rst get / --to "$WORK/r"
  treedump "$WORK/r" >"$WORK/r.dump"
  assert_same_dump "$WORK/src.dump" "$WORK/r.dump"
}

@test "hard links: deleting the name that held the content keeps the others restorable" {
  STORE="$WORK/store"
  printf 'shared\n' >"$SRC/a"
  ln "$SRC/a" "$SRC/b"
  ln "$SRC/a" "$SRC/c"
  run -0 cap "$SRC"
  rm "$SRC/a"
  treedump "$SRC" >"$WORK/src2.dump"
  run -0 cap "$SRC"
  run -0 rst get / --to "$WORK/r"
  treedump "$WORK/r" >"$WORK/r.dump"
  assert_same_dump "$WORK/src2.dump" "$WORK/r.dump"
  run -0 rst get --snapshot 2 /c --to "$WORK/c"
  assert_equal "$(cat "$WORK/c/c")" shared
}

@test "a relative SOURCE is recorded absolute: list shows it and --in-place finds it from anywhere" {
  STORE="$WORK/store"
  printf 'x\n' >"$SRC/x"
  (cd "$WORK" && planb-capture --store "$STORE" --host "$HOST" src/ >/dev/null)
  run -0 rst --json list
  run -0 python3 -c 'import json,sys; print(json.loads(sys.argv[1])[0]["source"])' "$output"
  assert_output "$(realpath "$SRC")"
  rm "$SRC/x"
  (cd / && planb-restore --store "$STORE" --host "$HOST" get --in-place /x >/dev/null)
  assert_equal "$(cat "$SRC/x")" x
}

@test "--in-place restores onto the original source tree" {
  make_full_tree "$SRC"
  treedump "$SRC" >"$WORK/orig.dump"
  STORE="$WORK/store"
  run -0 cap "$SRC"
  # damage the source: delete, edit, chmod, chown, remove an xattr
  rm "$SRC/small" "$SRC/dir/sub/deeper/file" "$SRC/fifo"
  printf 'garbage\n' >"$SRC/stable"
  chmod 0777 "$SRC/setuid"
  chown 1:1 "$SRC/odd-owner"
  setfattr -x user.foo "$SRC/xattr-file"
  # deleted files only: no --force needed for those, but existing ones clash
  run -6 rst get --in-place /stable
  assert_equal "$(cat "$SRC/stable")" "garbage"
  run -0 rst get --in-place /small /dir/sub/deeper/file /fifo
  [ -f "$SRC/small" ] && [ -p "$SRC/fifo" ]
  run -0 rst get --in-place / --force
  treedump "$SRC" >"$WORK/after.dump"
  assert_same_dump "$WORK/orig.dump" "$WORK/after.dump"
}
