#!/usr/bin/env bats
# scripts/appliance-nightly: capture → diff → seal → ship for every host in its
# config, each stage's exit code respected; the server's full-bundle requests
# answered; a night that fails after its capture is carried by the next bundle.

load 'helpers/common'

TOP="$(cd "$(dirname "$BATS_TEST_FILENAME")/.." && pwd)"

setup() {
  common_setup
  A=$WORK/appliance
  SV=$WORK/server
  mkdir -p "$A" "$SV/inbox" "$SRC/etc"
  echo one >"$SRC/etc/motd"
  planb-seal keygen --type server --out "$SV/server" >/dev/null
  planb-seal keygen --type appliance --out "$A/appliance" >/dev/null
  planb-seal enroll --signers "$SV/signers" "$A/appliance.pub" >/dev/null
  cat >"$A/conf" <<EOC
STORE=$A/store
OUTBOX=$A/outbox
STATE_DIR=$A/state
LOG_DIR=$A/log
SERVER_PUB=$SV/server.pub
SIGN_KEY=$A/appliance.key
DEST=file://$SV/inbox/
HOSTS="web1"
SOURCE_web1=$SRC
EOC
}

nightly() { "$TOP/scripts/appliance-nightly" --config "$A/conf" "$@"; }
# kind N: full or incremental, from the sealed bundle of night N in the inbox.
kind() {
  planb-seal --open --key "$SV/server.key" --signers "$SV/signers" -o "$WORK/b$1" \
    "$SV/inbox/$(printf 'web1-%010d.sealed' "$1")" >/dev/null
  planb-diff --store "$WORK/probe$1" --apply "$WORK/b$1" --json 2>/dev/null | sed -n 's/.*"kind":"\([a-z]*\)".*/\1/p'
}

@test "two nights: a full then an incremental bundle arrive in the server's inbox, with a log per run" {
  run -0 nightly
  assert_output --partial "1 host(s) sealed, 0 failed; ship exit 0"
  echo two >>"$SRC/etc/motd"
  run -0 nightly
  [ -f "$SV/inbox/web1-0000000001.sealed" ] && [ -f "$SV/inbox/web1-0000000002.sealed" ]
  assert_equal "$(kind 1)" full
  assert_equal "$(ls "$A/log"/nightly-*.log | wc -l)" 2
  grep -q "^stage-time web1 capture" "$A"/log/nightly-*.log
}

@test "the server's request for a full bundle is answered the next night, once" {
  run -0 nightly
  mkdir -p "$SV/inbox/.requests"
  printf 'planb-request 1\nhost=web1\nrequest=full-bundle\n' >"$SV/inbox/.requests/web1.full-bundle-needed"
  echo two >>"$SRC/etc/motd"
  run -0 nightly   # ships night 2 (incremental) and brings the request back
  [ -f "$A/outbox/requests/web1.full-bundle-needed" ]
  rm "$SV/inbox/.requests/web1.full-bundle-needed"   # (the server resolves it on the full bundle)
  echo three >>"$SRC/etc/motd"
  run -0 nightly
  assert_output --partial "the server asked for a full bundle"
  [ ! -e "$A/outbox/requests/web1.full-bundle-needed" ]
  run -0 planb-seal --open --key "$SV/server.key" --signers "$SV/signers" -o "$WORK/b3" "$SV/inbox/web1-0000000003.sealed"
  run -0 planb-diff --store "$WORK/fresh" --apply "$WORK/b3"
  assert_output --partial "full bundle"
}

@test "a night whose seal failed is carried by the next night's bundle (diff from the last sealed snapshot)" {
  run -0 nightly
  echo two >>"$SRC/etc/motd"
  mv "$A/appliance.key" "$A/appliance.key.away"
  run -1 nightly
  assert_output --partial "failed to seal web1"
  mv "$A/appliance.key.away" "$A/appliance.key"
  echo three >>"$SRC/etc/motd"
  run -0 nightly
  assert_output --partial "diff --from 1"
  # The server applies 1 then 3 without a gap.
  local n
  for n in 1 3; do
    planb-seal --open --key "$SV/server.key" --signers "$SV/signers" -o "$WORK/b$n" \
      "$SV/inbox/$(printf 'web1-%010d.sealed' "$n")" >/dev/null
    run -0 planb-diff --store "$WORK/server-store" --apply "$WORK/b$n"
  done
  run -0 planb-restore --store "$WORK/server-store" --host web1 get /etc/motd --to "$WORK/out"
  assert_equal "$(cat "$WORK/out/etc/motd")" "$(printf 'one\ntwo\nthree')"
}

@test "a host whose source is missing fails (exit 1), config errors are exit 2" {
  echo "SOURCE_web1=$WORK/nowhere" >>"$A/conf"
  run -1 nightly
  assert_output --partial "failed to back up web1: planb-capture exit"
  run -2 "$TOP/scripts/appliance-nightly" --config "$WORK/absent.conf"
  assert_output --partial "no such file"
  grep -v '^DEST=' "$A/conf" >"$A/bad.conf"
  run -2 "$TOP/scripts/appliance-nightly" --config "$A/bad.conf"
  assert_output --partial "DEST is not set"
}
