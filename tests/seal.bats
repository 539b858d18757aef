#!/usr/bin/env bats
# planb-seal: keys, sealing and opening bundles, and every way opening must fail
# (exit code, the damaged part named, no plaintext left behind).

load 'helpers/common'

setup_file() {
  local d="$BATS_FILE_TMPDIR/keys"
  mkdir -p "$d"
  planb-seal keygen --type server --out "$d/srv" >/dev/null
  planb-seal keygen --type server --out "$d/other-srv" >/dev/null
  planb-seal keygen --type appliance --out "$d/app" >/dev/null
  planb-seal keygen --type appliance --out "$d/stranger" >/dev/null
  planb-seal enroll --signers "$d/signers" "$d/app.pub" >/dev/null
  # A 3.5-chunk input sealed once; each test damages a copy.
  head -c 3670016 /dev/urandom >"$BATS_FILE_TMPDIR/plain"
  planb-seal --to "$d/srv.pub" --sign "$d/app.key" --host web1 --sequence 7 --parent "" \
    -o "$BATS_FILE_TMPDIR/sealed" "$BATS_FILE_TMPDIR/plain" >/dev/null
}

setup() {
  common_setup
  K="$WORK/keys"
  cp -a "$BATS_FILE_TMPDIR/keys" "$K"
  cp "$BATS_FILE_TMPDIR/plain" "$WORK/plain"
  cp "$BATS_FILE_TMPDIR/sealed" "$WORK/sealed"
}

seal_to() { planb-seal --to "$K/srv.pub" --sign "$K/app.key" --host web1 --sequence 7 --parent "" "$@"; }
open_as() { planb-seal --open --key "$K/srv.key" --signers "$K/signers" "$@"; }

# Offsets of the parts of a sealed file: header key chunk1 ... chunkN end-marker
# trailer signature size (one per line, "name offset").
parts() {
  python3 - "$1" <<'EOF2'
import struct, sys
b = open(sys.argv[1], 'rb').read()
hlen = struct.unpack_from('<I', b, 5)[0]
off = 9 + hlen
print('header 0')
print('key', off)
off += 104
n = 0
while True:
    l = struct.unpack_from('<I', b, off)[0]
    if l == 0:
        break
    n += 1
    print('chunk%d %d' % (n, off))
    off += 4 + l
print('end', off)
print('trailer', off + 4)
print('signature', len(b) - 64)
print('size', len(b))
EOF2
}
part() { parts "${2:-$WORK/sealed}" | awk -v p="$1" '$1 == p { print $2 }'; }

# Runs open on $WORK/sealed into $WORK/out; expects exit $1 and $2 in stderr,
# and no output file.
open_fails() {
  local code=$1 msg=$2
  run --separate-stderr open_as -o "$WORK/out" "$WORK/sealed"
  [ "$status" -eq "$code" ] || fail "exit $status, expected $code; stderr: $stderr"
  [[ "$stderr" == *"planb-seal: error: failed to open sealed bundle"* ]] || fail "stderr: $stderr"
  [[ "$stderr" == *"$msg"* ]] || fail "stderr does not say '$msg': $stderr"
  [ ! -e "$WORK/out" ] || fail "plaintext output left behind"
  [ -z "$(ls -A "$WORK" | grep '^\.')" ] || fail "temp files left: $(ls -A "$WORK")"
}

@test "keygen: secret keys 0600, public 0644, key ids, text format" {
  run -0 planb-seal keygen --type appliance --out "$WORK/a" --json
  [ "$(stat -c %a "$WORK/a.key")" = 600 ]
  [ "$(stat -c %a "$WORK/a.pub")" = 644 ]
  [ "$(stat -c %a "$K/srv.key")" = 600 ]
  id=$(json_field id)
  [ "${#id}" -eq 16 ]
  [ "$(head -1 "$WORK/a.key")" = "planb-key 1" ]
  grep -qx "type=appliance-secret" "$WORK/a.key"
  grep -qx "type=appliance-public" "$WORK/a.pub"
  grep -qx "id=$id" "$WORK/a.pub"
  grep -qx "type=server-secret" "$K/srv.key"
  run -6 planb-seal keygen --type appliance --out "$WORK/a"
  run -2 planb-seal keygen --type bogus --out "$WORK/b"
}

@test "round trip: empty, 1 byte, 1 MiB-1, 1 MiB, 1 MiB+1, 2 MiB" {
  for n in 0 1 1048575 1048576 1048577 2097152; do
    head -c "$n" /dev/urandom >"$WORK/in.$n"
    seal_to -o "$WORK/s.$n" "$WORK/in.$n" >/dev/null || fail "seal $n"
    open_as -o "$WORK/o.$n" "$WORK/s.$n" >/dev/null || fail "open $n"
    cmp "$WORK/in.$n" "$WORK/o.$n" || fail "round trip of $n bytes differs"
  done
  [ "$(stat -c %a "$WORK/o.1")" = 600 ]
}

@test "round trip through pipes (stdin to stdout both ways)" {
  seal_to <"$WORK/plain" | open_as >"$WORK/out"
  cmp "$WORK/plain" "$WORK/out"
}

@test "300 MiB stream: round trip in constant memory (peak RSS < 64 MiB)" {
  head -c 314572800 /dev/urandom >"$WORK/big"
  /usr/bin/time -f %M -o "$WORK/rss.seal" planb-seal --to "$K/srv.pub" --sign "$K/app.key" --host web1 \
    --sequence 1 --parent "" -o "$WORK/big.sealed" "$WORK/big" >/dev/null
  /usr/bin/time -f %M -o "$WORK/rss.open" planb-seal --open --key "$K/srv.key" --signers "$K/signers" \
    -o "$WORK/big.out" "$WORK/big.sealed" >/dev/null
  cmp "$WORK/big" "$WORK/big.out"
  # Through pipes too (open spools stdin to a temp file).
  /usr/bin/time -f %M -o "$WORK/rss.pipe" sh -c 'planb-seal --open --key "$1/srv.key" --signers "$1/signers" <"$2" | cmp - "$3"' \
    sh "$K" "$WORK/big.sealed" "$WORK/big"
  echo "peak RSS KiB: seal $(tail -1 "$WORK/rss.seal") open $(tail -1 "$WORK/rss.open")" >&3
  [ "$(tail -1 "$WORK/rss.seal")" -lt 65536 ]
  [ "$(tail -1 "$WORK/rss.open")" -lt 65536 ]
}

@test "a Plan B bundle: host, sequence and parent come from its PLANB-BUNDLE entry" {
  printf 'one\n' >"$SRC/a"
  cap "$SRC" >/dev/null
  printf 'two\n' >"$SRC/a"
  cap "$SRC" >/dev/null
  planb-diff --store "$STORE" --host "$HOST" -o "$WORK/b.bundle"
  run -0 --separate-stderr planb-seal --to "$K/srv.pub" --sign "$K/app.key" --json -o "$WORK/b.sealed" "$WORK/b.bundle"
  [ "$(json_field host)" = web1 ]
  [ "$(json_field sequence)" = 2 ]
  [ "$(json_field from_bundle)" = true ]
  parent=$(json_field parent)
  [ "${#parent}" -eq 64 ]
  run -0 --separate-stderr open_as --json -o "$WORK/b.out" "$WORK/b.sealed"
  [ "$(json_field sequence)" = 2 ]
  [ "$(json_field parent)" = "$parent" ]
  cmp "$WORK/b.bundle" "$WORK/b.out"
  # Options override the bundle's header.
  run -0 --separate-stderr planb-seal --to "$K/srv.pub" --sign "$K/app.key" --sequence 9 --json -o "$WORK/c.sealed" "$WORK/b.bundle"
  [ "$(json_field sequence)" = 9 ]
}

@test "not a bundle: --host, --sequence and --parent are required" {
  run -2 --separate-stderr planb-seal --to "$K/srv.pub" --sign "$K/app.key" -o "$WORK/x" "$WORK/plain"
  [[ "$stderr" == *"not a Plan B bundle"* ]]
  [ ! -e "$WORK/x" ]
}

@test "tamper: header byte -> exit 5, names the header" {
  flip_byte "$WORK/sealed" 20
  open_fails 5 "header"
}

@test "tamper: version byte -> exit 5, unsupported version" {
  flip_byte "$WORK/sealed" 4
  open_fails 5 "unsupported sealed-bundle version 3"
}

@test "version 1 (BLAKE2b chunk hashes) is refused: exit 5, unsupported version" {
  printf '\x01' | dd of="$WORK/sealed" bs=1 seek=4 conv=notrunc status=none
  open_fails 5 "unsupported sealed-bundle version 1 (this is version 2)"
}

@test "tamper: magic -> exit 5, not a sealed bundle" {
  flip_byte "$WORK/sealed" 0
  open_fails 5 "not a sealed bundle"
  run -5 --separate-stderr open_as -o "$WORK/out" "$WORK/plain"
}

@test "tamper: sealed key -> exit 5, names the sealed key" {
  flip_byte "$WORK/sealed" $(( $(part key) + 10 ))
  open_fails 5 "sealed key: damaged"
}

@test "tamper: secretstream header (in the key section) -> exit 5, names the sealed key" {
  flip_byte "$WORK/sealed" $(( $(part key) + 90 ))
  open_fails 5 "sealed key: damaged"
}

@test "tamper: a byte in chunk 1, 2, 4 -> exit 5, names the chunk" {
  for c in 1 2 4; do
    cp "$BATS_FILE_TMPDIR/sealed" "$WORK/sealed"
    flip_byte "$WORK/sealed" $(( $(part chunk$c) + 5000 ))
    open_fails 5 "chunk $c: damaged"
  done
}

@test "tamper: a chunk's length field -> exit 5, names the chunk" {
  flip_byte "$WORK/sealed" $(( $(part chunk2) + 2 ))
  open_fails 5 "chunk 2: bad length field"
  cp "$BATS_FILE_TMPDIR/sealed" "$WORK/sealed"
  flip_byte "$WORK/sealed" "$(part chunk4)"
  open_fails 5 "chunk 4: bad length field"
}

@test "tamper: trailer hashes or signature -> exit 9, names the trailer/signature" {
  flip_byte "$WORK/sealed" $(( $(part signature) + 3 ))
  open_fails 9 "trailer/signature: bad signature"
  cp "$BATS_FILE_TMPDIR/sealed" "$WORK/sealed"
  flip_byte "$WORK/sealed" $(( $(part trailer) + 4 + 64 + 8 + 32 + 1 ))   # chunk 2's hash
  open_fails 9 "trailer/signature: bad signature"
  cp "$BATS_FILE_TMPDIR/sealed" "$WORK/sealed"
  flip_byte "$WORK/sealed" $(( $(part trailer) + 10 ))                    # header hash
  open_fails 9 "trailer/signature"
  cp "$BATS_FILE_TMPDIR/sealed" "$WORK/sealed"
  flip_byte "$WORK/sealed" $(( $(part trailer) + 1 ))                     # trailer magic
  open_fails 5 "trailer: bad magic"
}

@test "tamper: every byte position class, sampled, fails and leaves nothing" {
  size=$(part size)
  for off in 5 9 30 $(( size / 3 )) $(( size / 2 )) $(( size - 200 )) $(( size - 1 )); do
    cp "$BATS_FILE_TMPDIR/sealed" "$WORK/sealed"
    flip_byte "$WORK/sealed" "$off"
    run --separate-stderr open_as -o "$WORK/out" "$WORK/sealed"
    [ "$status" -eq 5 ] || [ "$status" -eq 9 ] || fail "flip at $off: exit $status: $stderr"
    [ ! -e "$WORK/out" ] || fail "flip at $off: output left"
  done
}

@test "truncation at several points -> exit 5 truncated, no output" {
  local size points p
  size=$(part size)
  points="3 12 $(( $(part key) + 50 )) $(part chunk2) $(( $(part chunk2) + 2 )) $(( $(part chunk3) + 999 ))
          $(part end) $(( $(part end) + 2 )) $(part trailer) $(( $(part trailer) + 40 )) $(part signature) $(( size - 1 ))"
  for p in $points; do
    head -c "$p" "$BATS_FILE_TMPDIR/sealed" >"$WORK/sealed"
    run --separate-stderr open_as -o "$WORK/out" "$WORK/sealed"
    [ "$status" -eq 5 ] || fail "cut at $p: exit $status: $stderr"
    if [ "$p" -gt 12 ]; then
      [[ "$stderr" == *"truncated"* ]] || fail "cut at $p: $stderr"
    fi
    [ ! -e "$WORK/out" ] || fail "cut at $p: output left"
  done
  head -c "$(part chunk3)" "$BATS_FILE_TMPDIR/sealed" >"$WORK/sealed"
  open_fails 5 "stream ended before the final chunk"
}

@test "trailing garbage -> exit 5" {
  printf 'x' >>"$WORK/sealed"
  open_fails 5 "trailing garbage: 1 bytes after the trailer"
  cp "$BATS_FILE_TMPDIR/sealed" "$WORK/sealed"
  head -c 5000 /dev/urandom >>"$WORK/sealed"
  open_fails 5 "trailing garbage"
}

@test "wrong recipient key -> exit 1" {
  run --separate-stderr planb-seal --open --key "$K/other-srv.key" --signers "$K/signers" -o "$WORK/out" "$WORK/sealed"
  [ "$status" -eq 1 ]
  [[ "$stderr" == *"wrong recipient key"* ]]
  [ ! -e "$WORK/out" ]
}

@test "unknown signer -> exit 9" {
  planb-seal --to "$K/srv.pub" --sign "$K/stranger.key" --host web1 --sequence 1 --parent "" -o "$WORK/sealed" "$WORK/plain"
  open_fails 9 "unknown signer"
}

@test "revoked signer -> exit 9; re-enrolling lifts it" {
  id=$(sed -n 's/^id=//p' "$K/app.pub")
  run -0 planb-seal revoke --signers "$K/signers" "$id"
  [ -e "$K/signers/$id.revoked" ]
  open_fails 9 "revoked"
  planb-seal enroll --signers "$K/signers" "$K/app.pub"
  open_as -o "$WORK/out" "$WORK/sealed" >/dev/null
  cmp "$WORK/out" "$WORK/plain"
}

@test "the appliance cannot open its own bundles; the server cannot sign one" {
  run --separate-stderr planb-seal --open --key "$K/app.key" --signers "$K/signers" -o "$WORK/out" "$WORK/sealed"
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"appliance cannot open"* ]]
  [ ! -e "$WORK/out" ]
  run -2 --separate-stderr planb-seal --to "$K/srv.pub" --sign "$K/srv.key" --host web1 --sequence 1 --parent "" -o "$WORK/x" "$WORK/plain"
  [[ "$stderr" == *"needs an appliance secret key"* ]]
  [ ! -e "$WORK/x" ]
  # Sealing to an appliance public key is refused too.
  run -2 planb-seal --to "$K/app.pub" --sign "$K/app.key" --host web1 --sequence 1 --parent "" -o "$WORK/x" "$WORK/plain"
}

@test "private keys are never taken from argv; files, PLANB_*_FILE and --key-command work" {
  run -2 --separate-stderr planb-seal --to "$K/srv.pub" --sign "$(cat "$K/app.key")" --host h --sequence 1 --parent "" -o "$WORK/x" "$WORK/plain"
  [[ "$stderr" == *"key material on the command line is refused"* ]]
  b64=$(sed -n 's/^key=//p' "$K/app.key")
  run -2 --separate-stderr planb-seal --to "$K/srv.pub" --sign "$b64" --host h --sequence 1 --parent "" "$WORK/plain"
  [[ "$stderr" == *"refused"* ]]
  b64=$(sed -n 's/^key=//p' "$K/srv.key")
  run -2 --separate-stderr planb-seal --open --key "$b64" --signers "$K/signers" "$WORK/sealed"
  [[ "$stderr" == *"refused"* ]]
  [ ! -e "$WORK/x" ]
  # No option takes key material: every key option names a file or a command.
  run -0 planb-seal --help
  [[ "$output" != *"--secret"* ]]
  PLANB_SIGN_KEY_FILE="$K/app.key" planb-seal --to "$K/srv.pub" --host web1 --sequence 1 --parent "" -o "$WORK/e.sealed" "$WORK/plain" >/dev/null
  PLANB_SERVER_KEY_FILE="$K/srv.key" planb-seal --open --signers "$K/signers" -o "$WORK/e.out" "$WORK/e.sealed" >/dev/null
  cmp "$WORK/plain" "$WORK/e.out"
  planb-seal --open --key-command "cat '$K/srv.key'" --signers "$K/signers" -o "$WORK/c.out" "$WORK/e.sealed" >/dev/null
  cmp "$WORK/plain" "$WORK/c.out"
  run -2 planb-seal --to "$K/srv.pub" --host web1 --sequence 1 --parent "" "$WORK/plain"
}

@test "a failed open from stdin leaves no output and no spool file" {
  flip_byte "$WORK/sealed" $(( $(part chunk2) + 77 ))
  run --separate-stderr sh -c 'planb-seal --open --key "$1/srv.key" --signers "$1/signers" -o "$2/out" <"$2/sealed"' sh "$K" "$WORK"
  [ "$status" -eq 5 ]
  [[ "$stderr" == *"chunk 2: damaged"* ]]
  [ ! -e "$WORK/out" ]
  [ -z "$(ls -A "$WORK" | grep '^\.')" ]
}

@test "missing input -> exit 4; --help lists exit code 9" {
  run -4 open_as -o "$WORK/out" "$WORK/nope"
  run -0 planb-seal --help
  [[ "$output" == *"9  bad signature"* ]]
}
