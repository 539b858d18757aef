#!/usr/bin/env bats
# planb-assemble: real bundles from the appliance side (capture, diff, seal)
# dropped into a server's inbox, applied into its store in sequence order;
# every hostile or out-of-place bundle refused with the right state, nothing
# written outside the store, earlier snapshots and refs untouched; kill -9
# during assemble, then a re-run completes.

load 'helpers/common'

setup_file() {
  require_root
  local d=$BATS_FILE_TMPDIR
  export FT=$d
  mkdir -p "$d/keys" "$d/sealed"
  planb-seal keygen --type server --out "$d/keys/server" >/dev/null
  planb-seal keygen --type appliance --out "$d/keys/app" >/dev/null
  planb-seal keygen --type appliance --out "$d/keys/stranger" >/dev/null
  planb-seal keygen --type server --out "$d/keys/other-server" >/dev/null
  planb-seal enroll --signers "$d/keys/signers" "$d/keys/app.pub" >/dev/null
  # Three nights of a tree with every entry type: full, then every kind of
  # change (deltas included), then a small edit.
  local src=$d/src n
  make_full_tree "$src"
  for n in 1 2 3; do
    [ "$n" -eq 2 ] && mutate_tree "$src"
    [ "$n" -eq 3 ] && printf 'night three\n' >>"$src/small"
    planb-capture --store "$d/app-store" --host web1 "$src" >/dev/null
    treedump "$src" >"$d/dump$n"
    planb-diff --store "$d/app-store" --host web1 -o "$d/night$n.bundle" >/dev/null 2>&1
    planb-seal --to "$d/keys/server.pub" --sign "$d/keys/app.key" -o "$d/sealed/web1-$n.sealed" "$d/night$n.bundle" >/dev/null
  done
}

setup() {
  require_root
  common_setup
  S=$WORK/server
  mkdir -p "$S/inbox" "$S/keys"
  cp "$FT/keys/server.key" "$FT/keys/server.pub" "$S/keys/"
  cp -a "$FT/keys/signers" "$S/signers"
  K=$FT/keys
}

asm() { planb-assemble --server "$S" "$@"; }
deliver() { local n; for n in "$@"; do cp "$FT/sealed/web1-$n.sealed" "$S/inbox/"; done; }
ref() { cat "$S/store/hosts/web1/refs/$1" 2>/dev/null | cut -d' ' -f1; }
# A SQL query on the catalog; rows as lines of |-separated values.
sql() {
  python3 - "$S/catalog.db" "$1" <<'EOF'
import sqlite3, sys
for row in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]):
    print("|".join(str(v) for v in row))
EOF
}
# The field FIELD of bundle NAME in the JSON output.
bundle_field() {
  printf '%s\n' "$output" | grep '^{' | tail -n 1 | python3 -c '
import json, sys
d = json.load(sys.stdin)
print([b for b in d["bundles"] if b["name"] == sys.argv[1]][0].get(sys.argv[2]))' "$1" "$2"
}
seal_as() {  # seal_as KEY IN OUT [seal options]
  local key=$1 in=$2 out=$3
  shift 3
  planb-seal --to "$K/server.pub" --sign "$key" -o "$out" "$@" "$in" >/dev/null
}

# rebuild_bundle IN OUT PYTHON: decompress bundle IN, run PYTHON over its
# entries (a list `entries` of (TarInfo, bytes), edited in place; `tarfile`
# imported), and write them as an uncompressed pax archive OUT.
rebuild_bundle() {
  zstd -q -d -c "$1" >"$WORK/plain.tar"
  python3 - "$WORK/plain.tar" "$2" "$3" <<'EOF'
import io, sys, tarfile
src, out, code = sys.argv[1:4]
entries = []
with tarfile.open(src) as t:
    for m in t.getmembers():
        entries.append((m, t.extractfile(m).read() if m.isfile() else b""))
exec(code)
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    for m, data in entries:
        if m.isfile():
            m.size = len(data)
            t.addfile(m, io.BytesIO(data))
        else:
            t.addfile(m)
EOF
}

@test "nights 1..3 delivered out of order in one run are applied in sequence order; restore from the server store gives each tree" {
  # Names that sort against the sequence: order must come from the sealed headers.
  cp "$FT/sealed/web1-3.sealed" "$S/inbox/a-night.sealed"
  cp "$FT/sealed/web1-1.sealed" "$S/inbox/c-night.sealed"
  cp "$FT/sealed/web1-2.sealed" "$S/inbox/b-night.sealed"
  : >"$S/inbox/.d-night.sealed.part"  # in transit: skipped
  run -0 asm --json
  assert_equal "$(json_field applied)" 3
  assert_equal "$(printf '%s\n' "$output" | tail -1 | python3 -c 'import json,sys; print(" ".join(str(b["sequence"]) for b in json.load(sys.stdin)["bundles"]))')" "1 2 3"
  assert_equal "$(ref candidate)" 3
  assert_equal "$(ref latest)" 3
  assert_equal "$(ls "$S/inbox/done" | sort | tr '\n' ' ')" "a-night.sealed b-night.sealed c-night.sealed "
  [ -e "$S/inbox/.d-night.sealed.part" ]
  assert_equal "$(sql 'select sequence, bundle, state from snapshots order by sequence' | tr '\n' ' ')" \
    "1|c-night.sealed|applied 2|b-night.sealed|applied 3|a-night.sealed|applied "
  assert_equal "$(sql 'select count(*) from tickets')" 0
  # No decrypted bundle left behind.
  assert_equal "$(find "$S/tmp" -type f | wc -l)" 0
  run -0 planb-capture --store "$S/store" --verify
  local n
  for n in 1 2 3; do
    planb-restore --store "$S/store" --host web1 get --snapshot "$n" / --to "$WORK/r$n" >/dev/null
    treedump "$WORK/r$n" >"$WORK/r$n.dump"
    assert_same_dump "$FT/dump$n" "$WORK/r$n.dump"
  done
  # Nothing more to do: exit 0.
  run -0 asm
  assert_output --partial "nothing to assemble"
}

@test "one night per run moves candidate each time; the text output names what was applied" {
  deliver 1
  run -0 asm
  assert_output --partial "applied web1-1.sealed (web1 snapshot 1, full"
  assert_equal "$(ref candidate)" 1
  deliver 2
  run -0 asm --host web1
  assert_output --partial "incremental"
  assert_equal "$(ref candidate)" 2
}

@test "replay: an applied bundle delivered again (same name or another) is refused, exit 8, ticket, refs untouched" {
  deliver 1 2
  run -0 asm
  cp "$FT/sealed/web1-1.sealed" "$S/inbox/old-again.sealed"
  deliver 2
  run -8 asm --json
  assert_equal "$(bundle_field old-again.sealed state)" refused
  assert_equal "$(bundle_field old-again.sealed kind)" replay
  assert_equal "$(bundle_field web1-2.sealed kind)" replay
  [ -f "$S/inbox/refused/old-again.sealed" ]
  grep -q '^kind=replay' "$S/inbox/refused/old-again.sealed.reason"
  grep -q 'replay' "$S/inbox/refused/web1-2.sealed.reason"
  assert_equal "$(ref candidate)" 2
  assert_equal "$(sql "select count(*) from tickets where kind='replay' and status='open'")" 2
  assert_equal "$(sql "select json_extract(details, '$.bundle') from tickets where sequence=1")" old-again.sealed
  # done/ still holds the original.
  cmp "$S/inbox/done/web1-2.sealed" "$FT/sealed/web1-2.sealed"
  # A third copy under a name already in refused/ does not replace the evidence.
  deliver 2
  run -8 asm
  [ -f "$S/inbox/refused/web1-2.sealed.1" ] && [ -f "$S/inbox/refused/web1-2.sealed.1.reason" ]
  [ -f "$S/inbox/refused/web1-2.sealed" ]
  assert_equal "$(sql "select count(*) from tickets where kind='replay' and sequence=2")" 2
}

@test "gap: night 3 without night 2 is refused (exit 8), a full bundle is requested" {
  deliver 1
  run -0 asm
  deliver 3
  run -8 asm --json
  assert_equal "$(bundle_field web1-3.sealed kind)" gap
  assert_equal "$(ref candidate)" 1
  [ -f "$S/inbox/.requests/web1.full-bundle-needed" ]
  grep -q '^head-sequence=1$' "$S/inbox/.requests/web1.full-bundle-needed"
  # As if killed after the ticket and the reason file, before the move: the
  # re-run refuses it again without a second ticket.
  mv "$S/inbox/refused/web1-3.sealed" "$S/inbox/"
  run -8 asm
  assert_equal "$(sql "select count(*) from tickets where kind='gap'")" 1
  [ -f "$S/inbox/refused/web1-3.sealed" ] && [ ! -e "$S/inbox/refused/web1-3.sealed.1" ]
}

@test "wrong parent: full_bundle_needed state, request file; a full bundle then applies, closes the ticket and removes the request" {
  deliver 1
  run -0 asm
  # Another history for web1: its night 2's parent is not the server's head.
  mkdir -p "$WORK/other"
  echo other >"$WORK/other/f"
  planb-capture --store "$WORK/other-store" --host web1 "$WORK/other" >/dev/null
  echo more >>"$WORK/other/f"
  planb-capture --store "$WORK/other-store" --host web1 "$WORK/other" >/dev/null
  planb-diff --store "$WORK/other-store" --host web1 -o "$WORK/o2.bundle" 2>/dev/null
  seal_as "$K/app.key" "$WORK/o2.bundle" "$S/inbox/o2.sealed"
  run -8 asm --json
  assert_equal "$(bundle_field o2.sealed state)" full_bundle_needed
  assert_equal "$(bundle_field o2.sealed kind)" full_bundle_needed
  [ -f "$S/inbox/.requests/web1.full-bundle-needed" ]
  grep -q '^request=full-bundle$' "$S/inbox/.requests/web1.full-bundle-needed"
  assert_equal "$(sql "select status from tickets where kind='full_bundle_needed'")" open
  assert_equal "$(ref candidate)" 1
  # The appliance answers with a full bundle of its snapshot 2.
  planb-diff --store "$WORK/other-store" --host web1 --full -o "$WORK/o2full.bundle" 2>/dev/null
  seal_as "$K/app.key" "$WORK/o2full.bundle" "$S/inbox/o2full.sealed"
  run -0 asm
  assert_equal "$(ref candidate)" 2
  [ ! -e "$S/inbox/.requests/web1.full-bundle-needed" ]
  assert_equal "$(sql "select status from tickets where kind='full_bundle_needed'")" closed
}

@test "an incremental bundle for a host the server has never seen asks for a full bundle" {
  deliver 2
  run -8 asm --json
  assert_equal "$(bundle_field web1-2.sealed state)" full_bundle_needed
  [ -f "$S/inbox/.requests/web1.full-bundle-needed" ]
  [ ! -e "$S/store/hosts/web1/refs/latest" ]
}

@test "bad signature, unknown signer, damaged and truncated sealed files are refused and never applied" {
  deliver 1
  run -0 asm
  seal_as "$K/stranger.key" "$FT/night2.bundle" "$S/inbox/stranger.sealed"
  cp "$FT/sealed/web1-2.sealed" "$S/inbox/badsig.sealed"
  flip_byte "$S/inbox/badsig.sealed" $(( $(stat -c %s "$S/inbox/badsig.sealed") - 10 ))
  cp "$FT/sealed/web1-2.sealed" "$S/inbox/damaged.sealed"
  flip_byte "$S/inbox/damaged.sealed" 300
  head -c 400 "$FT/sealed/web1-2.sealed" >"$S/inbox/truncated.sealed"
  echo "not a sealed bundle" >"$S/inbox/junk.sealed"
  planb-seal --to "$K/other-server.pub" --sign "$K/app.key" -o "$S/inbox/elsewhere.sealed" "$FT/night2.bundle" >/dev/null
  local before
  before=$(store_listing "$S/store")
  run -8 asm --json
  assert_equal "$(bundle_field stranger.sealed kind)" bad_signature
  assert_equal "$(bundle_field stranger.sealed exit_code)" 9
  assert_equal "$(bundle_field badsig.sealed kind)" bad_signature
  assert_equal "$(bundle_field damaged.sealed state)" refused
  assert_equal "$(bundle_field truncated.sealed kind)" corrupt
  assert_equal "$(bundle_field junk.sealed kind)" corrupt
  assert_equal "$(bundle_field elsewhere.sealed kind)" wrong_recipient
  for f in stranger badsig damaged truncated junk elsewhere; do
    [ -f "$S/inbox/refused/$f.sealed" ] && [ -f "$S/inbox/refused/$f.sealed.reason" ]
  done
  assert_equal "$(store_listing "$S/store")" "$before"
  assert_equal "$(ref candidate)" 1
  # A revoked signer likewise.
  planb-seal revoke --signers "$S/signers" "$(sed -n 's/^id=//p' "$K/app.pub")" >/dev/null
  deliver 2
  run -8 asm --json
  assert_equal "$(bundle_field web1-2.sealed kind)" bad_signature
}

@test "sealed header and bundle header must agree (host, sequence): a mismatch is refused" {
  deliver 1
  run -0 asm
  seal_as "$K/app.key" "$FT/night2.bundle" "$S/inbox/seq.sealed" --sequence 5
  seal_as "$K/app.key" "$FT/night2.bundle" "$S/inbox/host.sealed" --host web9
  run -8 asm --json
  assert_equal "$(bundle_field seq.sealed kind)" header_mismatch
  assert_equal "$(bundle_field host.sealed kind)" header_mismatch
  assert_equal "$(ref candidate)" 1
  [ ! -e "$S/store/hosts/web9/refs/latest" ]
}

@test "hostile bundles: traversal, absolute path, symlink, device, hard link entries are refused; nothing written outside the store" {
  local kinds="dotdot absolute nested symlink device hardlink" k
  for k in $kinds; do
    rebuild_bundle "$FT/night1.bundle" "$WORK/$k.bundle" "
head = entries[:2]
def ti(name, type=tarfile.REGTYPE, **kw):
    m = tarfile.TarInfo(name); m.type = type
    for a, v in kw.items(): setattr(m, a, v)
    return m
bad = {
  'dotdot':   (ti('../x-$k'), b'escaped'),
  'absolute': (ti('$WORK/abs-x-$k'), b'escaped'),
  'nested':   (ti('objects/../../x-$k'), b'escaped'),
  'symlink':  (ti('objects/1', tarfile.SYMTYPE, linkname='$WORK'), b''),
  'device':   (ti('objects/1', tarfile.CHRTYPE, devmajor=1, devminor=3), b''),
  'hardlink': (ti('objects/1', tarfile.LNKTYPE, linkname='/etc/passwd'), b''),
}['$k']
entries[:] = head + [bad] + entries[2:]
"
    seal_as "$K/app.key" "$WORK/$k.bundle" "$S/inbox/$k.sealed"
  done
  run -8 asm --json
  for k in $kinds; do
    assert_equal "$(bundle_field "$k.sealed" kind)" corrupt
    assert_equal "$(bundle_field "$k.sealed" exit_code)" 5
  done
  # Refused for the hostile entry itself, not for something before it.
  bundle_field dotdot.sealed reason | grep -q "unexpected entry '../x-dotdot'"
  bundle_field absolute.sealed reason | grep -q "unexpected entry '.*abs-x-absolute'"
  bundle_field nested.sealed reason | grep -q "unexpected entry 'objects/../../x-nested'"
  for k in symlink device hardlink; do
    bundle_field "$k.sealed" reason | grep -q "objects/1 is not a regular file"
  done
  # Nothing anywhere outside the store: not beside the inbox, the server or the work dir.
  run find "$WORK" "$S" "$S/inbox" "$S/store" -maxdepth 1 -name '*x-*'
  assert_output ""
  [ ! -e "$WORK/abs-x-absolute" ]
  [ ! -e "$S/store/hosts/web1/refs/latest" ]
  assert_equal "$(find "$S/store/objects" -type f | wc -l)" 0
  # And the genuine night 1 still applies afterwards.
  deliver 1
  run -0 asm
  assert_equal "$(ref candidate)" 1
}

@test "corrupt delta: the result hash does not match; refused, store and refs unchanged" {
  deliver 1
  run -0 asm
  cp "$S/store/hosts/web1/refs/candidate" "$S/store/hosts/web1/refs/good"
  rebuild_bundle "$FT/night2.bundle" "$WORK/bad2.bundle" "
deltas = [i for i, (m, d) in enumerate(entries) if m.name.startswith('deltas/')]
assert deltas, 'night 2 has no delta'
m, d = entries[deltas[0]]
d = bytearray(d); d[-2] ^= 0x01
entries[deltas[0]] = (m, bytes(d))
"
  seal_as "$K/app.key" "$WORK/bad2.bundle" "$S/inbox/bad2.sealed"
  local before
  before=$(store_listing "$S/store")
  run -8 asm --json
  assert_equal "$(bundle_field bad2.sealed kind)" corrupt
  assert_output --partial "does not match"
  assert_equal "$(store_listing "$S/store")" "$before"
  assert_equal "$(ref candidate)" 1
  assert_equal "$(ref good)" 1
  # The genuine night 2 then applies.
  deliver 2
  run -0 asm
  assert_equal "$(ref candidate)" 2
}

@test "some applied, some refused: exit 3" {
  deliver 1 2
  seal_as "$K/stranger.key" "$FT/night3.bundle" "$S/inbox/web1-3.sealed"
  run -3 asm
  assert_equal "$(ref candidate)" 2
}

@test "a host held by another planb-assemble is skipped with exit 7; other hosts go on" {
  deliver 1
  # Another host in the same inbox.
  mkdir -p "$WORK/w2"
  echo two >"$WORK/w2/f"
  planb-capture --store "$WORK/s2" --host web2 "$WORK/w2" >/dev/null
  planb-diff --store "$WORK/s2" --host web2 -o "$WORK/w2.bundle" 2>/dev/null
  seal_as "$K/app.key" "$WORK/w2.bundle" "$S/inbox/web2-1.sealed"
  mkdir -p "$S/locks"
  run -7 flock "$S/locks/assemble-web1" planb-assemble --server "$S"
  assert_output --partial "skipped host web1"
  [ -f "$S/inbox/web1-1.sealed" ]
  [ -f "$S/inbox/done/web2-1.sealed" ]
  run -0 asm --host web1
  assert_equal "$(ref candidate)" 1
}

@test "kill -9 during assemble, many times: good and earlier snapshots untouched, a re-run completes and the store verifies" {
  # Six nights with 6 MB of new data each, so an assemble takes a while.
  local n i p src=$WORK/k
  mkdir -p "$src"
  for n in 1 2 3 4 5 6; do
    head -c 6000000 /dev/urandom >"$src/data$n"
    echo "night $n" >>"$src/log"
    planb-capture --store "$WORK/ka" --host web1 "$src" >/dev/null
    planb-diff --store "$WORK/ka" --host web1 -o "$WORK/k$n.bundle" 2>/dev/null
    seal_as "$K/app.key" "$WORK/k$n.bundle" "$WORK/k$n.sealed"
  done
  treedump "$src" >"$WORK/k.dump"
  cp "$WORK/k1.sealed" "$S/inbox/"
  run -0 asm
  cp "$S/store/hosts/web1/refs/latest" "$S/store/hosts/web1/refs/good"
  local good1 m1
  good1=$(cat "$S/store/hosts/web1/refs/good")
  m1=$(sha256sum <"$S/store/hosts/web1/manifests/0000000001.pbm")
  for n in 2 3 4 5 6; do cp "$WORK/k$n.sealed" "$S/inbox/"; done
  for i in $(seq 1 8); do
    planb-assemble --server "$S" >/dev/null 2>&1 &
    p=$!
    sleep "0.$((RANDOM % 9))$((RANDOM % 10))"
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    assert_equal "$(cat "$S/store/hosts/web1/refs/good")" "$good1"
    assert_equal "$(sha256sum <"$S/store/hosts/web1/manifests/0000000001.pbm")" "$m1"
    # Each bundle is in exactly one place.
    for n in 2 3 4 5 6; do
      [ "$(ls "$S/inbox/k$n.sealed" "$S/inbox/done/k$n.sealed" 2>/dev/null | wc -l)" -eq 1 ] || fail "k$n.sealed in two places or none"
    done
    run -0 planb-capture --store "$S/store" --verify
  done
  run -0 asm --json
  assert_equal "$(ls "$S/inbox/done" | wc -l)" 6
  assert_equal "$(ls "$S/inbox/refused" | wc -l)" 0
  assert_equal "$(ref candidate)" 6
  assert_equal "$(sql 'select group_concat(sequence) from snapshots')" "1,2,3,4,5,6"
  assert_equal "$(sql 'select count(*) from tickets')" 0
  assert_equal "$(find "$S/tmp" -type f | wc -l)" 0
  # Temp objects of the killed runs are gone too.
  assert_equal "$(find "$S/store/tmp" "$S/store/hosts" -name '.*.tmp.*' | wc -l)" 0
  run -0 planb-capture --store "$S/store" --verify
  planb-restore --store "$S/store" --host web1 get / --to "$WORK/kr" >/dev/null
  treedump "$WORK/kr" >"$WORK/kr.dump"
  assert_same_dump "$WORK/k.dump" "$WORK/kr.dump"
}

@test "a run killed after apply but before the catalog row records it as already applied" {
  deliver 1
  # Simulate: the store has snapshot 1 (applied by hand) but neither catalog nor done/ know it.
  planb-seal --open --key "$S/keys/server.key" --signers "$S/signers" -o "$WORK/n1.bundle" "$S/inbox/web1-1.sealed" >/dev/null
  planb-diff --store "$S/store" --apply "$WORK/n1.bundle" >/dev/null
  run -0 asm --json
  assert_equal "$(bundle_field web1-1.sealed state)" already_applied
  assert_equal "$(ref candidate)" 1
  assert_equal "$(sql 'select sequence, bundle from snapshots')" "1|web1-1.sealed"
  [ -f "$S/inbox/done/web1-1.sealed" ]
}
