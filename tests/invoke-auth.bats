#!/usr/bin/env bats
# planb-invoke authorisation: keys, requests, approvals, every refusal of
# authorise (the gate start/drill pass), executive set changes, the audit log.
# No VMs: `planb-invoke authorise` runs the same check as start.

load 'helpers/common'

setup() {
  common_setup
  SRV="$WORK/server"
  mkdir -p "$SRV/cmdb" "$WORK/exec"
  export PLANB_SERVER="$SRV"
  # Alice: planb-invoke keygen (CMDB: OpenSSH line). Bob: an OpenSSH key
  # (CMDB: hex). Carol: keygen (CMDB: base64). Mallory: not an executive.
  planb-invoke keygen --out "$WORK/exec/alice.key" >/dev/null 2>&1
  planb-invoke keygen --out "$WORK/exec/carol.key" >/dev/null 2>&1
  planb-invoke keygen --out "$WORK/exec/mallory.key" >/dev/null 2>&1
  ssh-keygen -q -t ed25519 -N '' -C bob@acme -f "$WORK/exec/bob_ed25519"
  ALICE_PUB=$(cat "$WORK/exec/alice.key.pub")
  BOB_HEX=$(ssh_to_hex "$WORK/exec/bob_ed25519.pub")
  CAROL_B64=$(ssh_to_b64 "$WORK/exec/carol.key.pub")
  write_cmdb 2 alice bob
}

ssh_to_raw_py='import base64,sys; b=base64.b64decode(open(sys.argv[1]).read().split()[1]); print(%s)'
ssh_to_hex() { python3 -c "${ssh_to_raw_py/\%s/b[-32:].hex()}" "$1"; }
ssh_to_b64() { python3 -c "${ssh_to_raw_py/\%s/base64.b64encode(b[-32:]).decode()}" "$1"; }

key_of() {
  case $1 in
    alice) echo "$WORK/exec/alice.key" ;;
    bob) echo "$WORK/exec/bob_ed25519" ;;
    carol) echo "$WORK/exec/carol.key" ;;
    mallory) echo "$WORK/exec/mallory.key" ;;
  esac
}

# write_cmdb QUORUM NAME... : acme's CMDB with those executives (alice2 = Alice's key in hex).
write_cmdb() {
  local quorum=$1; shift
  {
    echo 'customer = "acme"'
    echo '[authorisation]'
    echo "quorum = $quorum"
    for e in "$@"; do
      echo '[[authorisation.executive]]'
      case $e in
        alice) echo 'name = "Alice"'; echo 'email = "alice@acme.example"'; echo "key = \"$ALICE_PUB\"" ;;
        alice2) echo 'name = "Alice (hex)"'; echo 'email = "alice@acme.example"'
                echo "key = \"ed25519:$(ssh_to_hex "$WORK/exec/alice.key.pub")\"" ;;
        bob) echo 'name = "Bob"'; echo 'email = "bob@acme.example"'; echo "key = \"$BOB_HEX\"" ;;
        carol) echo 'name = "Carol"'; echo 'email = "carol@acme.example"'; echo "key = \"$CAROL_B64\"" ;;
      esac
    done
    for h in db app web; do
      echo '[[host]]'
      echo "name = \"$h\""
    done
  } >"$SRV/cmdb/acme.toml"
}

enrol() { planb-invoke executives --customer acme --enrol >/dev/null; }

# new_request [options...] : prints the id.
new_request() {
  local out
  out=$(planb-invoke request --customer acme --reason "test" --json "$@") || return 1
  json_field id "$out"
}

# approve WHO ID [options...] : writes $WORK/WHO-ID.approval
approve() {
  local who=$1 id=$2; shift 2
  planb-invoke approve --key "$(key_of "$who")" "$SRV/invocations/$id/request" -o "$WORK/$who-$id.approval" "$@" 2>/dev/null
}

submit() { planb-invoke submit "$@" >/dev/null; }

# A drill request of host db approved (and submitted) by the given executives.
approved_drill() {
  local id who
  id=$(new_request --host db --mode drill) || return 1
  for who in "$@"; do
    approve "$who" "$id" || return 1
    submit "$WORK/$who-$id.approval" || return 1
  done
  echo "$id"
}

@test "keygen writes a 0600 secret key and prints the public line; subcommands have --help on stdout" {
  run --separate-stderr planb-invoke keygen --out "$WORK/k"
  assert_success
  assert_output --regexp '^ssh-ed25519 AAAA[A-Za-z0-9+/=]+ planb-executive-[0-9a-f]{16}$'
  [ "$(stat -c %a "$WORK/k")" = 600 ]
  [ "$(cat "$WORK/k.pub")" = "$output" ]
  run planb-invoke keygen --out "$WORK/k"
  assert_failure 6
  for sub in keygen request approve submit executives authorise audit; do
    run --separate-stderr planb-invoke "$sub" --help
    assert_success
    [ -z "$stderr" ]
    assert_output --partial "--json"
  done
}

@test "approve refuses key material on the command line and encrypted OpenSSH keys" {
  enrol
  id=$(new_request --host db --mode drill)
  run planb-invoke approve --key "$(cat "$WORK/exec/alice.key")" "$SRV/invocations/$id/request"
  assert_failure 2
  assert_output --partial "key material on the command line is refused"
  ssh-keygen -q -t ed25519 -N 'secret' -f "$WORK/enc"
  run planb-invoke approve --key "$WORK/enc" "$SRV/invocations/$id/request"
  assert_failure
  assert_output --partial "encrypted"
}

@test "a quorum of enrolled executives authorises; dry run does not use the request; the audit log records it" {
  enrol
  id=$(approved_drill alice bob)
  run --separate-stderr planb-invoke authorise "$id" --mode drill --dry-run --json
  assert_success
  [ "$(json_field mode)" = drill ]
  [ "$(json_field hosts)" = '["db"]' ]
  run planb-invoke authorise "$id" --mode drill --json
  assert_success
  assert_output --partial '"name":"Alice"'
  assert_output --partial '"name":"Bob"'
  [ "$(json_field used)" = true ]
  run --separate-stderr planb-invoke audit --invocation "$id" --json
  assert_success
  [ "$(json_field intact)" = true ]
  events=$(printf '%s' "$output" | python3 -c 'import json,sys; print(" ".join(r["event"] for r in json.load(sys.stdin)["rows"]))')
  [ "$events" = "request approval approval start" ]
}

@test "the approver's ssh-keygen OpenSSH private key and an --all request work" {
  enrol
  id=$(new_request --all --mode real)
  approve bob "$id"
  approve alice "$id"
  submit "$WORK/bob-$id.approval" "$WORK/alice-$id.approval"
  run --separate-stderr planb-invoke authorise "$id" --mode real --json
  assert_success
  [ "$(json_field hosts)" = '["db", "app", "web"]' ]
}

@test "refused: too few approvals" {
  enrol
  id=$(approved_drill alice)
  run planb-invoke authorise "$id" --mode drill
  assert_failure 10
  assert_output --partial "not enough approvals"
  assert_output --partial "1 of 2 required approvals"
}

@test "refused: the same key twice, in two encodings, counts once" {
  write_cmdb 2 alice alice2 bob   # Alice listed twice (OpenSSH line and hex): two distinct keys only
  enrol
  run planb-invoke executives --customer acme --json
  assert_output --partial '"state":"match"'
  [ "$(printf '%s' "$output" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["enrolled"]["executives"]))')" = 2 ]
  id=$(new_request --host db --mode drill)
  approve alice "$id"
  cp "$WORK/alice-$id.approval" "$WORK/first.approval"
  approve alice "$id" --signed-at "@$(( $(date +%s) + 5 ))"
  submit "$WORK/first.approval" "$WORK/alice-$id.approval"
  # Also placed beside it under another name: still Alice once.
  cp "$WORK/first.approval" "$SRV/invocations/$id/approvals/copy.approval"
  run planb-invoke authorise "$id" --mode drill --dry-run
  assert_failure 10
  assert_output --partial "1 of 2 required approvals"
  assert_output --partial "already counted"
}

@test "refused: an approval by a key that is not an enrolled executive" {
  enrol
  id=$(approved_drill alice)
  approve mallory "$id"
  run planb-invoke submit "$WORK/mallory-$id.approval"
  assert_failure 10
  assert_output --partial "is not an enrolled executive of acme"
  [ "$(ls "$SRV/invocations/$id/approvals" | wc -l)" = 1 ]
  cp "$WORK/mallory-$id.approval" "$SRV/invocations/$id/approvals/mallory.approval"
  run planb-invoke authorise "$id" --mode drill
  assert_failure 10
  assert_output --partial "mallory.approval: key"
  assert_output --partial "not an enrolled executive"
}

@test "refused: approvals of another request do not count" {
  enrol
  id=$(approved_drill alice)
  other=$(approved_drill bob)
  cp "$SRV/invocations/$other/approvals/"*.approval "$SRV/invocations/$id/approvals/bob-other.approval"
  run planb-invoke authorise "$id" --mode drill
  assert_failure 10
  assert_output --partial "an approval of another request ($other)"
  # The approval names its request, so submit files it under the other one.
  run planb-invoke authorise "$other" --mode drill --dry-run
  assert_failure 10
  assert_output --partial "1 of 2"
}

@test "refused: an expired request, and an approval signed outside the window" {
  enrol
  now=$(date +%s)
  id=$(new_request --host db --mode drill --not-before "@$((now - 7200))" --not-after "@$((now - 3600))")
  approve alice "$id" --signed-at "@$((now - 5000))"
  approve bob "$id" --signed-at "@$((now - 5000))"
  submit "$WORK/alice-$id.approval" "$WORK/bob-$id.approval"
  run planb-invoke authorise "$id" --mode drill
  assert_failure 10
  assert_output --partial "expired"

  id=$(new_request --host db --mode drill --valid-for 1h)
  approve alice "$id"
  approve bob "$id" --signed-at "@$((now - 7200))"   # before the window opened
  submit "$WORK/alice-$id.approval"
  run planb-invoke submit "$WORK/bob-$id.approval"
  assert_failure 10
  assert_output --partial "outside the request's window"
  cp "$WORK/bob-$id.approval" "$SRV/invocations/$id/approvals/bob.approval"
  run planb-invoke authorise "$id" --mode drill
  assert_failure 10
  assert_output --partial "outside the request's window"
  # A request not valid yet.
  id=$(new_request --host db --mode drill --not-before "@$((now + 3600))" --valid-for 1h)
  run planb-invoke authorise "$id" --mode drill --dry-run
  assert_failure 10
  assert_output --partial "not valid before"
}

@test "refused: a drill request cannot start a real invocation, nor a real one a drill" {
  enrol
  id=$(approved_drill alice bob)
  run planb-invoke authorise "$id" --mode real
  assert_failure 10
  assert_output --partial "is for a drill, not a real invocation"
  id=$(new_request --host db --mode real)
  approve alice "$id"; approve bob "$id"
  submit "$WORK/alice-$id.approval" "$WORK/bob-$id.approval"
  run planb-invoke authorise "$id" --mode drill
  assert_failure 10
  assert_output --partial "is for a real invocation, not a drill"
  run planb-invoke authorise "$id" --mode real
  assert_success
}

@test "refused: a used request id never starts again" {
  enrol
  id=$(approved_drill alice bob)
  run planb-invoke authorise "$id" --mode drill
  assert_success
  run planb-invoke authorise "$id" --mode drill
  assert_failure 10
  assert_output --partial "already used"
  run planb-invoke authorise "$SRV/invocations/$id/request" --mode drill --dry-run
  assert_failure 10
  assert_output --partial "already used"
  run planb-invoke audit --invocation "$id" --json
  assert_output --partial '"event":"refusal"'
}

@test "refused: a tampered request text, on the server or given as a file" {
  enrol
  id=$(approved_drill alice bob)
  cp "$SRV/invocations/$id/request" "$WORK/orig"
  sed -i 's/^hosts=db$/hosts=app,db/' "$SRV/invocations/$id/request"
  run planb-invoke authorise "$id" --mode drill
  assert_failure 10
  assert_output --partial "differs from the one recorded when it was made (altered)"
  cp "$WORK/orig" "$SRV/invocations/$id/request"
  sed 's/^reason=test$/reason=test!/' "$WORK/orig" >"$WORK/edited"
  run planb-invoke authorise "$WORK/edited" --mode drill
  assert_failure 10
  assert_output --partial "differs from the server's copy"
  # Not canonical (a field moved): refused before any signature is looked at.
  sed -i 's/^mode=drill$/mode=drill /' "$SRV/invocations/$id/request"
  run planb-invoke authorise "$id" --mode drill
  assert_failure 10
  assert_output --partial "malformed or was altered"
  cp "$WORK/orig" "$SRV/invocations/$id/request"
  run planb-invoke authorise "$id" --mode drill --dry-run
  assert_success
}

@test "executives: enrolled once (trust on first use); a change needs the old quorum" {
  enrol
  run planb-invoke executives --customer acme --enrol
  assert_failure 10
  assert_output --partial "a change needs the enrolled quorum"
  old=$(approved_drill alice bob)
  # The CMDB now names Carol as well and a quorum of 3.
  write_cmdb 3 alice bob carol
  run planb-invoke authorise "$old" --mode drill
  assert_failure 10
  assert_output --partial "the CMDB's executives for acme changed since enrolment; approve the change"
  run planb-invoke executives --customer acme --json
  assert_output --partial '"state":"differs"'
  # The change request, approved by the NEW executive and one old one: not enough.
  run --separate-stderr planb-invoke request --customer acme --executives --reason "add Carol" --json
  assert_success
  chg=$(json_field id)
  approve carol "$chg"
  run planb-invoke submit "$WORK/carol-$chg.approval"
  assert_failure 10
  assert_output --partial "not an enrolled executive"
  cp "$WORK/carol-$chg.approval" "$SRV/invocations/$chg/approvals/carol.approval"
  approve alice "$chg"
  submit "$WORK/alice-$chg.approval"
  run planb-invoke executives --customer acme --apply "$chg"
  assert_failure 10
  assert_output --partial "1 of 2 required approvals"
  # An executives change is not startable.
  run planb-invoke authorise "$chg" --mode drill --dry-run
  assert_failure 10
  assert_output --partial "is an executives change"
  # With the old quorum it is applied.
  approve bob "$chg"
  submit "$WORK/bob-$chg.approval"
  run planb-invoke executives --customer acme --apply "$chg"
  assert_success
  assert_output --partial "enrolled version 2"
  run planb-invoke executives --customer acme --json
  assert_output --partial '"state":"match"'
  run planb-invoke executives --customer acme --apply "$chg"
  assert_failure 10
  assert_output --partial "already used"
  # The request made under the old set is void; a new one needs 3 of the new set.
  run planb-invoke authorise "$old" --mode drill --dry-run
  assert_failure 10
  assert_output --partial "made for another executive set"
  id=$(approved_drill alice bob)
  run planb-invoke authorise "$id" --mode drill --dry-run
  assert_failure 10
  assert_output --partial "2 of 3"
  approve carol "$id"
  submit "$WORK/carol-$id.approval"
  run planb-invoke authorise "$id" --mode drill
  assert_success
  run planb-invoke audit
  assert_success
  assert_output --partial "executives"
}

@test "refused: a CMDB change of the quorum alone, without approval" {
  enrol
  id=$(approved_drill alice)
  write_cmdb 1 alice bob
  run planb-invoke authorise "$id" --mode drill --dry-run
  assert_failure 10
  assert_output --partial "changed since enrolment"
}

@test "audit: a tampered, removed or reordered row is detected and named" {
  enrol
  id=$(approved_drill alice bob)
  planb-invoke authorise "$id" --mode drill >/dev/null
  run planb-invoke audit
  assert_success
  assert_output --partial "hash chain intact"
  cp "$SRV/catalog.db" "$WORK/clean.db"
  [ ! -s "$SRV/catalog.db-wal" ]
  # The schema refuses updates; a determined editor drops the trigger first.
  run sqlite3 "$SRV/catalog.db" "UPDATE audit_log SET actor = 'someone else' WHERE seq = 3"
  assert_failure
  sqlite3 "$SRV/catalog.db" "DROP TRIGGER audit_log_append_only_update; UPDATE audit_log SET detail = '{\"key_id\":\"0\"}' WHERE seq = 3"
  run planb-invoke audit
  assert_failure 5
  assert_output --partial "row 3: its hash does not match its contents"
  run --separate-stderr planb-invoke audit --json
  assert_failure 5
  [ "$(json_field first_bad)" = 3 ]
  [ "$(json_field intact)" = false ]
  cp "$WORK/clean.db" "$SRV/catalog.db"; rm -f "$SRV/catalog.db-wal" "$SRV/catalog.db-shm"
  sqlite3 "$SRV/catalog.db" "DROP TRIGGER audit_log_append_only_delete; DELETE FROM audit_log WHERE seq = 2"
  run planb-invoke audit
  assert_failure 5
  assert_output --partial "row 3: sequence 3 where 2 was expected"
}

@test "refused: two starts of one request at once, only one passes" {
  enrol
  id=$(approved_drill alice bob)
  planb-invoke authorise "$id" --mode drill >"$WORK/one" 2>&1 & p1=$!
  planb-invoke authorise "$id" --mode drill >"$WORK/two" 2>&1 & p2=$!
  rc1=0; rc2=0
  wait "$p1" || rc1=$?
  wait "$p2" || rc2=$?
  [ $(( (rc1 == 0) + (rc2 == 0) )) = 1 ]
  [ $(( rc1 + rc2 )) = 10 ]
  cat "$WORK/one" "$WORK/two" | grep -q "already used"
  run planb-invoke audit --invocation "$id" --json
  [ "$(printf '%s' "$output" | grep -o '"event":"start"' | wc -l)" = 1 ]
}
