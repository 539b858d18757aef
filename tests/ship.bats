#!/usr/bin/env bats
# planb-ship against real servers started on loopback: a local inbox (file://),
# OpenSSH's sftp subsystem (sftp://) and nginx WebDAV over TLS (https://).
# Every bundle must arrive exactly once and intact, in sequence order, and
# nothing partial may ever carry a bundle's name in the inbox.

load 'helpers/common'
load 'helpers/servers'

setup_file() {
  require_root
  local d=$BATS_FILE_TMPDIR
  start_sshd "$d/sshd"
  start_nginx "$d/nginx" on
  mkdir -p "$d/keys"
  planb-seal keygen --type server --out "$d/keys/srv" >/dev/null
  planb-seal keygen --type appliance --out "$d/keys/app" >/dev/null
  planb-seal enroll --signers "$d/keys/signers" "$d/keys/app.pub" >/dev/null
}

teardown_file() {
  stop_sshd "$BATS_FILE_TMPDIR/sshd"
  stop_nginx "$BATS_FILE_TMPDIR/nginx"
}

setup() {
  require_root
  common_setup
  K=$BATS_FILE_TMPDIR/keys
  PKI=$BATS_FILE_TMPDIR/nginx/pki
  OUTBOX=$WORK/outbox
  ORIG=$WORK/orig
  mkdir -p "$OUTBOX" "$ORIG"
  # Each test gets its own inbox on every server.
  INBOX=$WORK/inbox
  mkdir -p "$INBOX"
  SFTP_INBOX=$WORK/sftp-inbox
  mkdir -p "$SFTP_INBOX"
  HTTPS_DIR=t$RANDOM$RANDOM
  mkdir -p "$HTTPS_INBOX/$HTTPS_DIR"
  export OUTBOX
}

teardown() {
  [ -n "${HTTPS_DIR:-}" ] && rm -rf "${HTTPS_INBOX:?}/$HTTPS_DIR"
  return 0
}

file_dest() { echo "file://$INBOX/"; }
sftp_dest() { echo "sftp://root@127.0.0.1:$SSH_PORT$SFTP_INBOX/"; }
https_dest() { echo "https://127.0.0.1:$HTTPS_PORT/inbox/$HTTPS_DIR/"; }
inbox_of() {
  case $1 in file) echo "$INBOX" ;; sftp) echo "$SFTP_INBOX" ;; https) echo "$HTTPS_INBOX/$HTTPS_DIR" ;; esac
}

# ship TRANSPORT [ARGS...]: planb-ship with the transport's credentials.
ship() {
  local t=$1
  shift
  case $t in
    file) planb-ship --outbox "$OUTBOX" --retry-delay 0.1 "$@" "$(file_dest)" ;;
    sftp) planb-ship --outbox "$OUTBOX" --retry-delay 0.1 --identity "$SSH_KEY" --known-hosts "$SSH_KNOWN" "$@" "$(sftp_dest)" ;;
    https) planb-ship --outbox "$OUTBOX" --retry-delay 0.1 --cacert "$PKI/ca.crt" --cert "$PKI/client.crt" \
      --cert-key "$PKI/client.key" "$@" "$(https_dest)" ;;
  esac
}

# mk_bundles HOST FIRST LAST BYTES: sealed bundles HOST-SEQ.sealed in the outbox, copies in $ORIG.
mk_bundles() {
  local host=$1 first=$2 last=$3 bytes=$4 i
  for i in $(seq "$first" "$last"); do
    head -c "$bytes" /dev/urandom >"$WORK/plain"
    planb-seal --to "$K/srv.pub" --sign "$K/app.key" --host "$host" --sequence "$i" --parent "" \
      -o "$ORIG/$host-$i.sealed" "$WORK/plain" >/dev/null
    cp "$ORIG/$host-$i.sealed" "$OUTBOX/"
  done
}

# Every visible (non-dot) file in the inbox is a complete, intact bundle.
assert_inbox_intact() {
  local dir=$1 f
  for f in "$dir"/*; do
    [ -e "$f" ] || continue
    cmp -s "$f" "$ORIG/$(basename "$f")" || fail "partial or damaged $(basename "$f") visible in the inbox"
  done
}

# The inbox holds exactly the bundles in $ORIG, intact, and no temp files.
assert_all_delivered() {
  local dir=$1
  assert_inbox_intact "$dir"
  assert_equal "$(cd "$dir" && ls -A | sort)" "$(cd "$ORIG" && ls -A | sort)"
  assert_equal "$(ls -A "$OUTBOX" | grep -v '^\.lock$' | grep -v '^sent$' || true)" ""
}

@test "file://: bundles arrive intact, the outbox keeps them in sent/, a re-run has nothing to do" {
  mk_bundles web1 1 3 300000
  run -0 ship file
  assert_output --partial "3 sent, 0 already there, 0 not delivered"
  assert_all_delivered "$INBOX"
  [ -f "$OUTBOX/sent/web1-3.sealed" ]
  run -0 ship file
  assert_output --partial "nothing to ship"
}

@test "bundles go in sequence order per host, whatever their file names" {
  mk_bundles web1 1 3 10000
  mk_bundles db1 1 2 10000
  # Names that sort against the sequence order.
  mv "$OUTBOX/web1-3.sealed" "$OUTBOX/a-web1-3.sealed"
  mv "$ORIG/web1-3.sealed" "$ORIG/a-web1-3.sealed"
  mv "$OUTBOX/web1-1.sealed" "$OUTBOX/z-web1-1.sealed"
  mv "$ORIG/web1-1.sealed" "$ORIG/z-web1-1.sealed"
  run -0 --separate-stderr ship file --json
  run -0 python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(" ".join("%s:%d" % (i["host"], i["sequence"]) for i in d["items"]))' "$output"
  assert_output "db1:1 db1:2 web1:1 web1:2 web1:3"
  assert_all_delivered "$INBOX"
}

@test "--json reports bundles, bytes, seconds and throughput" {
  mk_bundles web1 1 2 200000
  run -0 --separate-stderr ship file --json
  local total=$(( $(stat -c %s "$ORIG/web1-1.sealed") + $(stat -c %s "$ORIG/web1-2.sealed") ))
  assert_equal "$(json_field bundles)" 2
  assert_equal "$(json_field failed)" 0
  assert_equal "$(json_field bytes)" "$total"
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["seconds"] >= 0 and d["throughput_mbps"] >= 0 and d["destination"].startswith("file://")' "$output"
}

@test "a bundle already in the inbox (delivered before a crash) is not sent again" {
  mk_bundles web1 1 2 200000
  cp "$ORIG/web1-1.sealed" "$INBOX/"
  touch -d '2000-01-01' "$INBOX/web1-1.sealed"
  run -0 --separate-stderr ship file --json
  assert_equal "$(json_field bundles)" 1
  assert_equal "$(json_field already_there)" 1
  # Not rewritten: the old timestamp is still there.
  assert_equal "$(stat -c %Y "$INBOX/web1-1.sealed")" "$(date -d 2000-01-01 +%s)"
  assert_all_delivered "$INBOX"
}

@test "a different file under the bundle's name in the inbox is a conflict: nothing overwritten" {
  mk_bundles web1 1 2 100000
  echo "someone else's" >"$INBOX/web1-1.sealed"
  run -1 ship file
  assert_output --partial "already holds a different web1-1.sealed"
  assert_output --partial "held back web1-2.sealed"
  assert_equal "$(cat "$INBOX/web1-1.sealed")" "someone else's"
  [ ! -e "$INBOX/web1-2.sealed" ]
  [ -f "$OUTBOX/web1-1.sealed" ]
  [ -f "$OUTBOX/web1-2.sealed" ]
}

@test "a file in the outbox that is not a sealed bundle is reported, the others still go (exit 3)" {
  mk_bundles web1 1 1 1000
  echo junk >"$OUTBOX/notes.txt"
  run -3 ship file
  assert_output --partial "notes.txt: not a sealed bundle"
  [ -f "$INBOX/web1-1.sealed" ]
  [ -f "$OUTBOX/notes.txt" ]
  [ ! -e "$INBOX/notes.txt" ]
}

@test "--keep-sent 0 deletes delivered bundles; --keep-sent N keeps the newest N" {
  mk_bundles web1 1 3 1000
  run -0 ship file --keep-sent 2
  assert_equal "$(ls "$OUTBOX/sent" | wc -l)" 2
  mk_bundles web1 4 4 1000
  run -0 ship file --keep-sent 0
  [ ! -e "$OUTBOX/web1-4.sealed" ]
  [ ! -e "$OUTBOX/sent/web1-4.sealed" ]
  cmp "$INBOX/web1-4.sealed" "$ORIG/web1-4.sealed"
}

@test "a second planb-ship on the same outbox is refused while one runs (exit 7)" {
  mk_bundles web1 1 1 1000
  flock "$OUTBOX/.lock" sleep 5 &
  local p=$!
  sleep 0.3
  run -7 ship file
  assert_output --partial "in use by another planb process"
  kill "$p"
  wait "$p" || true
  [ ! -e "$INBOX/web1-1.sealed" ]
}

@test "bad usage: unknown scheme, plain http, missing outbox (exit 2, 2, 4)" {
  run -2 planb-ship --outbox "$OUTBOX" ftp://example.invalid/x/
  assert_output --partial "expected file:///dir/"
  run -2 planb-ship --outbox "$OUTBOX" http://127.0.0.1:1/inbox/
  assert_output --partial "plain http:// is refused"
  run -4 planb-ship --outbox "$WORK/none" "$(file_dest)"
  assert_output --partial "no such directory"
  run -2 planb-ship --outbox "$OUTBOX" --limit-rate fast "$(file_dest)"
  assert_output --partial "--limit-rate"
}

@test "disk full on the server is a clear, immediate failure, not an endless retry" {
  mkdir -p "$WORK/small"
  mount -t tmpfs -o size=1m tmpfs "$WORK/small" || skip "cannot mount tmpfs"
  mk_bundles web1 1 1 3000000
  INBOX=$WORK/small run -1 --separate-stderr ship file --json
  umount "$WORK/small"
  assert_equal "$(json_field failed)" 1
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); i=d["items"][0]; assert i["attempts"] == 1, i; assert "disk full" in i["error"], i' "$output"
  [ -f "$OUTBOX/web1-1.sealed" ]
  # The same through sftp: the server's free space comes from statvfs@openssh.com.
  mount -t tmpfs -o size=1m tmpfs "$SFTP_INBOX"
  run -1 --separate-stderr ship sftp --json
  umount "$SFTP_INBOX"
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); i=d["items"][0]; assert i["attempts"] == 1, i; assert "disk full on the server" in i["error"], i' "$output"
  [ -f "$OUTBOX/web1-1.sealed" ]
}

@test "sftp://: bundles arrive intact through OpenSSH's sftp server" {
  mk_bundles web1 1 3 2000000
  run -0 ship sftp
  assert_output --partial "3 sent"
  assert_all_delivered "$SFTP_INBOX"
}

@test "sftp://: a host key not in known_hosts is refused at once; nothing is sent" {
  mk_bundles web1 1 1 1000
  ssh-keygen -q -t ed25519 -N '' -f "$WORK/other"
  echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$WORK/other.pub")" >"$WORK/known"
  run -1 --separate-stderr planb-ship --outbox "$OUTBOX" --identity "$SSH_KEY" --known-hosts "$WORK/known" --json "$(sftp_dest)"
  python3 -c 'import json,sys; i=json.loads(sys.argv[1])["items"][0]; assert i["attempts"] == 1 and "server identity not verified" in i["error"], i' "$output"
  : >"$WORK/empty-known"
  run -1 planb-ship --outbox "$OUTBOX" --identity "$SSH_KEY" --known-hosts "$WORK/empty-known" "$(sftp_dest)"
  assert_output --partial "server identity not verified"
  run -2 planb-ship --outbox "$OUTBOX" --identity "$SSH_KEY" --known-hosts "$WORK/absent" "$(sftp_dest)"
  assert_output --partial "unknown hosts are never trusted"
  [ -z "$(ls -A "$SFTP_INBOX")" ]
}

@test "sftp://: a key the server does not accept is refused at once (auth refused)" {
  mk_bundles web1 1 1 1000
  ssh-keygen -q -t ed25519 -N '' -f "$WORK/stranger"
  run -1 --separate-stderr planb-ship --outbox "$OUTBOX" --identity "$WORK/stranger" --known-hosts "$SSH_KNOWN" --json "$(sftp_dest)"
  python3 -c 'import json,sys; i=json.loads(sys.argv[1])["items"][0]; assert i["attempts"] == 1 and "authentication refused" in i["error"], i' "$output"
  [ -z "$(ls -A "$SFTP_INBOX")" ]
}

@test "sftp://: a missing inbox directory is named" {
  mk_bundles web1 1 1 1000
  run -1 planb-ship --outbox "$OUTBOX" --identity "$SSH_KEY" --known-hosts "$SSH_KNOWN" \
    "sftp://root@127.0.0.1:$SSH_PORT$WORK/no-such-inbox/"
  assert_output --partial "no such directory"
}

@test "https://: WebDAV PUT over verified TLS with a client certificate" {
  mk_bundles web1 1 3 2000000
  run -0 ship https
  assert_output --partial "3 sent"
  assert_all_delivered "$(inbox_of https)"
  # Each bundle was moved into place exactly once.
  assert_equal "$(grep -c "MOVE /inbox/$HTTPS_DIR/\.web1-[0-9]*\.sealed\.part HTTP/1.1\" 20[14]" "$BATS_FILE_TMPDIR/nginx/access.log")" 3
}

@test "https://: no client certificate, or a server certificate from an unknown CA, is refused at once" {
  mk_bundles web1 1 1 1000
  run -1 --separate-stderr planb-ship --outbox "$OUTBOX" --cacert "$PKI/ca.crt" --json "$(https_dest)"
  python3 -c 'import json,sys; i=json.loads(sys.argv[1])["items"][0]; assert i["attempts"] == 1 and "HTTP 403" in i["error"], i' "$output"
  run -1 planb-ship --outbox "$OUTBOX" --cacert "$PKI/other-ca.crt" --cert "$PKI/client.crt" --cert-key "$PKI/client.key" "$(https_dest)"
  assert_output --partial "server identity not verified"
  [ -z "$(ls -A "$(inbox_of https)")" ]
}

@test "an unreachable server is retried with back-off, then exit 10; a server that comes back is used" {
  mk_bundles web1 1 2 1000
  local port
  port=$(free_port)
  run -10 --separate-stderr planb-ship --outbox "$OUTBOX" --retries 2 --retry-delay 0.1 --json \
    --cacert "$PKI/ca.crt" "https://127.0.0.1:$port/inbox/"
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); i=d["items"]; assert i[0]["attempts"] == 3 and i[0]["state"] == "failed", i; assert i[1]["state"] == "held-back", i' "$output"
  # Now a server that starts only while planb-ship is backing off.
  (
    prepare_sshd "$WORK/late"
    echo "$SSH_PORT" >"$WORK/late/port"
  )
  local lp
  lp=$(cat "$WORK/late/port")
  (sleep 1.5 && launch_sshd "$WORK/late") &
  run -0 --separate-stderr planb-ship --outbox "$OUTBOX" --retries 8 --retry-delay 0.2 --json \
    --identity "$WORK/late/client_key" --known-hosts "$WORK/late/known_hosts" "sftp://root@127.0.0.1:$lp$SFTP_INBOX/"
  wait
  stop_sshd "$WORK/late"
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); i=d["items"]; assert i[0]["attempts"] > 1 and i[0]["state"] == "sent", i; assert d["bundles"] == 2' "$output"
  assert_all_delivered "$SFTP_INBOX"
}

@test "--limit-rate caps the upload rate" {
  mk_bundles web1 1 1 2097152
  run -0 --separate-stderr ship file --limit-rate 1M --json
  # 2 MiB at 1 MiB/s cannot take less than about two seconds.
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["seconds"] >= 1.8, d' "$output"
  run -0 --separate-stderr ship sftp --limit-rate 1M --json
  assert_output --partial '"bundles":0'
}

# kill_loop TRANSPORT: kill -9 planb-ship mid-upload many times, checking after
# each kill that nothing partial carries a bundle's name; then a clean run must
# deliver every bundle exactly once and intact.
kill_loop() {
  local t=$1 dir i p
  dir=$(inbox_of "$t")
  mk_bundles web1 1 4 1500000
  for i in $(seq 1 8); do
    ship "$t" --limit-rate 4M >/dev/null 2>&1 &
    p=$!
    sleep "0.$((RANDOM % 9 + 1))"
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    assert_inbox_intact "$dir"
  done
  run -0 ship "$t"
  assert_all_delivered "$dir"
  # Nothing was delivered twice: every bundle is either in the inbox once and in sent/.
  assert_equal "$(ls "$OUTBOX/sent" | sort)" "$(cd "$ORIG" && ls | sort)"
}

@test "file://: kill -9 mid-upload, many times: every bundle arrives exactly once and intact" {
  kill_loop file
}

@test "sftp://: kill -9 mid-upload, many times: every bundle arrives exactly once and intact (resumed)" {
  kill_loop sftp
}

@test "https://: kill -9 mid-upload, many times: every bundle arrives exactly once and intact" {
  kill_loop https
  assert_equal "$(grep -c "MOVE /inbox/$HTTPS_DIR/\.web1-[0-9]*\.sealed\.part HTTP/1.1\" 20[14]" "$BATS_FILE_TMPDIR/nginx/access.log")" 4
}

@test "appliance round trip: capture, diff, seal, ship over sftp, open on the server: byte-identical bundle" {
  mkdir -p "$SRC/etc" "$SRC/srv"
  echo "hello" >"$SRC/etc/motd"
  head -c 3000000 /dev/urandom >"$SRC/srv/data.bin"
  run -0 cap "$SRC"
  planb-diff --store "$STORE" --host "$HOST" -o "$WORK/night1.bundle"
  echo "changed" >>"$SRC/etc/motd"
  run -0 cap "$SRC"
  planb-diff --store "$STORE" --host "$HOST" -o "$WORK/night2.bundle"
  local n
  for n in 1 2; do
    planb-seal --to "$K/srv.pub" --sign "$K/app.key" -o "$OUTBOX/$HOST-$n.sealed" "$WORK/night$n.bundle" >/dev/null
  done
  run -0 ship sftp
  assert_output --partial "2 sent"
  for n in 1 2; do
    planb-seal --open --key "$K/srv.key" --signers "$K/signers" -o "$WORK/server-night$n.bundle" \
      "$SFTP_INBOX/$HOST-$n.sealed" >/dev/null
    cmp "$WORK/night$n.bundle" "$WORK/server-night$n.bundle"
  done
  # And the server can apply them into its own store.
  run -0 planb-diff --store "$WORK/server-store" --apply "$WORK/server-night1.bundle"
  run -0 planb-diff --store "$WORK/server-store" --apply "$WORK/server-night2.bundle"
}

@test "a full-bundle request in the inbox (after a gap) comes back to OUTBOX/requests/" {
  mk_bundles web1 1 1 1000
  mkdir -p "$INBOX/.requests" "$(inbox_of https)/.requests"
  printf 'planb-request 1\nhost=web1\nrequest=full-bundle\n' >"$INBOX/.requests/web1.full-bundle-needed"
  run -0 --separate-stderr ship file --json
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["full_bundle_requested"] == ["web1"], d' "$output"
  grep -q '^request=full-bundle$' "$OUTBOX/requests/web1.full-bundle-needed"
  # Known from sent/ even when nothing is waiting; over https too.
  rm -r "$OUTBOX/requests"
  cp "$INBOX/.requests/web1.full-bundle-needed" "$(inbox_of https)/.requests/"
  run -0 ship https
  assert_output --partial "the server asks for a full bundle of web1"
  [ -f "$OUTBOX/requests/web1.full-bundle-needed" ]
  # No request, no marker.
  rm -r "$OUTBOX/requests"
  run -0 --separate-stderr ship sftp --json
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["full_bundle_requested"] == [], d' "$output"
  [ ! -e "$OUTBOX/requests" ]
}
