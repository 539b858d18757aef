#!/usr/bin/env bats
# The main job end to end, as the README's first command runs it (scripts/demo):
# the sample server through capture → diff → seal → ship → assemble → convert →
# boot-test (qemu) → promote for two nights, a restore of yesterday's file, and a
# night with a bad fstab edit that fails its boot test, opens a ticket and leaves
# `good` on the previous image. One run (about 5 minutes under TCG, plus the
# sample server's first build); each test below checks one thing a user would.

load 'helpers/common'

TOP="$(cd "$(dirname "$BATS_TEST_FILENAME")/.." && pwd)"

setup_file() {
  require_root
  DEMO=$BATS_FILE_TMPDIR/demo
  export DEMO
  # The demo builds what it needs (idempotent) and keeps its work dir for us.
  "$TOP/scripts/demo" --keep "$DEMO" >"$BATS_FILE_TMPDIR/demo.log" 2>&1 || {
    tail -60 "$BATS_FILE_TMPDIR/demo.log" >&3
    return 1
  }
}

setup() {
  require_root
  S=$DEMO/server
}

report() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$S/reports/web1/$1/report.json" "$2"; }

@test "nights 1 and 2 pass every boot-test check and night 2 is the good image" {
  assert_equal "$(report 1 'r["passed"]')" True
  assert_equal "$(report 2 'r["passed"]')" True
  assert_equal "$(report 2 'sorted(c["type"] for c in r["checks"] if c["passed"])')" "['http', 'ssh', 'systemd', 'tcp']"
  assert_equal "$(sed -n 's/^sequence=//p' "$S/repository/web1/good")" 2
  assert_equal "$(cut -d' ' -f1 "$S/store/hosts/web1/refs/good")" 2
}

@test "the promoted image is byte for byte the one that was boot-tested" {
  local h
  h=$(report 2 'r["image"]["hash"]')
  run -0 python3 -c 'import hashlib,sys; print(hashlib.blake2b(open(sys.argv[1],"rb").read(), digest_size=32).hexdigest())' \
    "$S/repository/web1/2.qcow2"
  assert_output "$h"
  grep -q "^hash=$h$" "$S/repository/web1/good"
}

@test "night 2's image carries the day's changes (the new record, seen over ssh in the VM)" {
  run report 2 '[c["detail"] for c in r["checks"] if c["type"] == "ssh"][0]'
  assert_output --partial "order-1002"
}

@test "the P2V image boots: the serial console shows the login prompt of the converted server" {
  grep -a -q "web1 login:" "$S/reports/web1/2/serial.log"
  # The screenshot is a PNG.
  assert_equal "$(head -c 8 "$S/reports/web1/2/screen.png" | od -An -tx1 | tr -d ' \n')" 89504e470d0a1a0a
}

@test "the broken night fails its boot test, opens a ticket, notifies, and good stays on night 2" {
  assert_equal "$(report 3 'r["passed"]')" False
  assert_equal "$(report 3 'r["outcome"]')" boot_failed
  grep -a -q "emergency mode" "$S/reports/web1/3/serial.log"
  [ ! -e "$S/repository/web1/3.qcow2" ]
  run -0 planb-promote --server "$S" --list --json
  python3 -c 'import json,sys; h=json.loads(sys.argv[1])[0]; assert h["good"]["sequence"] == 2 and h["candidate"] == 3, h; assert len(h["open_tickets"]) == 1 and "boot_test_failed 3" in h["open_tickets"][0], h' "$output"
  grep -q "snapshot 3" "$S/last-notification"
}

@test "yesterday's version of a file came back from the appliance's history" {
  local n1 n2
  n1=$(wc -l <"$DEMO/restored/data/records.csv")
  n2=$(wc -l <"$DEMO/web1-live/data/records.csv")
  assert_equal "$((n1 + 1))" "$n2"
  run -1 grep -q order-1002 "$DEMO/restored/data/records.csv"
}

@test "every bundle was delivered once and assembled; nothing is left in transit" {
  assert_equal "$(ls "$S/inbox/done" | wc -l)" 3
  assert_equal "$(ls -A "$S/inbox" | grep -v -E '^(done|refused|\.requests)$' | wc -l)" 0
  # No full bundle was asked for: every night's parent was the server's head.
  assert_equal "$(ls -A "$S/inbox/.requests" 2>/dev/null | wc -l)" 0
  assert_equal "$(ls "$DEMO/appliance/outbox/sent" | wc -l)" 3
}
