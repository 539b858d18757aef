#!/usr/bin/env bats
# planb-boot-test against small real images (tests/fixtures/build-boot-test-image): Debian's
# kernel with a busybox initramfs booted from the image's own disk by extlinux, in qemu (TCG
# here), on loopback-only forwards. Checks that must pass pass, checks that must fail fail with
# exit 11, an image that never comes up hits the time limit (exit 12), the image is never
# changed, and no qemu outlives a run, also when planb-boot-test is killed.

load 'helpers/common'

setup_file() {
  [ "$(id -u)" -eq 0 ] || return 0
  FIXTURE=$("$BATS_TEST_DIRNAME/fixtures/build-boot-test-image")
  export FIXTURE
}

setup() {
  require_root
  common_setup
  command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86 missing (scripts/deps test)"
  SERVER=$WORK/server
  mkdir -p "$SERVER/keys" "$SERVER/cmdb" "$SERVER/images/fixture/1"
  install -m 0600 "$FIXTURE/test-agent" "$SERVER/keys/test-agent"
  install -m 0644 "$FIXTURE/test-agent.pub" "$SERVER/keys/test-agent.pub"
  cp "$FIXTURE/good.qcow2" "$SERVER/images/fixture/1/disk.qcow2"
  cp "$FIXTURE/hang.qcow2" "$WORK/hang.qcow2"
  REPORT=$SERVER/reports/fixture/1
  export SERVER REPORT
}

teardown() {
  # A failed test must not leave a VM behind either (only ours: our work dir is on its argv).
  local p
  for p in $(pgrep -f "qemu-system-x86_64.*$WORK" || true); do kill -9 "$p" 2>/dev/null || true; done
  return 0
}

bt() { planb-boot-test --server "$SERVER" --host fixture "$@"; }

# No qemu started for this test's work dir is running.
assert_no_qemu() {
  if pgrep -af "qemu-system-x86_64.*$WORK"; then
    fail "a qemu process is still running"
  fi
}

# A field of $REPORT/report.json (python expression on r).
report() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$REPORT/report.json" "$1"; }

write_cmdb() { cat >"$SERVER/cmdb/test.toml"; }

good_cmdb() {
  cat >"$SERVER/cmdb/probe.sh" <<'EOF'
#!/bin/sh
# A custom check: fetch the page through the forwarded port the harness tells us about.
exec curl -sf --max-time 5 "http://$PLANB_GUEST_ADDR:$PLANB_GUEST_HTTP_PORT/" | grep -q 'Plan B boot-test fixture'
EOF
  chmod +x "$SERVER/cmdb/probe.sh"
  write_cmdb <<'EOF'
customer = "test"
[[host]]
name = "fixture"
cpus = 1
memory_mb = 256
  [[host.check]]
  type = "tcp"
  port = 7
  [[host.check]]
  type = "http"
  port = 80
  path = "/"
  status = 200
  body = "Plan B boot-test fixture"
  [[host.check]]
  type = "ssh"
  command = "cat /www/index.html"
  output = "boot-test fixture"
  [[host.check]]
  type = "systemd"
  [[host.check]]
  type = "script"
  run = "./probe.sh"
EOF
}

@test "a good image passes every check; report, summary, serial log and PNG screenshot written; image unchanged; no qemu left" {
  good_cmdb
  local before after
  before=$(sha256sum <"$SERVER/images/fixture/1/disk.qcow2")
  run -0 --separate-stderr bt --sequence 1 --timeout 400 --json
  after=$(sha256sum <"$SERVER/images/fixture/1/disk.qcow2")
  assert_equal "$after" "$before"
  assert_no_qemu
  # --json prints the report; it is report.json.
  assert_equal "$(json_field passed)" "true"
  assert_equal "$(json_field outcome)" "passed"
  assert_equal "$(report 'r["passed"]')" "True"
  assert_equal "$(report 'r["host"]')" "fixture"
  assert_equal "$(report 'r["sequence"]')" "1"
  assert_equal "$(report 'r["exit_code"]')" "0"
  assert_equal "$(report 'len(r["checks"])')" "5"
  assert_equal "$(report 'all(c["passed"] and c["attempts"] >= 1 and c["seconds"] is not None for c in r["checks"])')" "True"
  assert_equal "$(report '[c["type"] for c in r["checks"]]')" "['tcp', 'http', 'ssh', 'systemd', 'script']"
  assert_equal "$(report 'r["image"]["path"]')" "$SERVER/images/fixture/1/disk.qcow2"
  assert_equal "$(report 'r["accel"] in ("tcg", "kvm")')" "True"
  [ -n "$(report 'r["image"]["hash"]')" ]
  # The serial console has the guest's output.
  grep -q 'planb-fixture: services up' "$REPORT/serial.log"
  assert_equal "$(report 'r["serial_log"]')" "$REPORT/serial.log"
  # The screenshot is a PNG.
  assert_equal "$(report 'r["screenshot"]')" "$REPORT/screen.png"
  assert_equal "$(head -c 8 "$REPORT/screen.png" | od -An -tx1 | tr -d ' \n')" "89504e470d0a1a0a"
  file "$REPORT/screen.png" | grep -q 'PNG image data'
  grep -q '^Boot test of fixture snapshot 1: PASSED' "$REPORT/summary.txt"
  # The overlay and temp area are gone; nothing else in the report dir.
  run -0 ls -A "$REPORT"
  assert_output $'report.json\nscreen.png\nserial.log\nsummary.txt'
  [ -z "$(ls -A /tmp | grep "^planb-boot-test-" | while read -r d; do [ -O "/tmp/$d" ] && find "/tmp/$d" -newer "$REPORT/report.json" -print; done)" ]
}

@test "checks that must fail fail: wrong http body and a closed port give exit 11 and say so; the passing one passes" {
  write_cmdb <<'EOF'
customer = "test"
[[host]]
name = "fixture"
memory_mb = 256
  [[host.check]]
  type = "tcp"
  port = 7
  [[host.check]]
  type = "http"
  port = 80
  body = "this text is not on the page"
  [[host.check]]
  type = "tcp"
  port = 8081
EOF
  local before
  before=$(sha256sum <"$SERVER/images/fixture/1/disk.qcow2")
  run -11 --separate-stderr bt --sequence 1 --timeout 400 --grace 8
  assert_no_qemu
  assert_equal "$(sha256sum <"$SERVER/images/fixture/1/disk.qcow2")" "$before"
  [[ "$stderr" == *"planb-boot-test: error: failed to boot-test fixture: 2 of 3 checks failed"* ]] || fail "stderr: $stderr"
  assert_equal "$(report 'r["passed"]')" "False"
  assert_equal "$(report 'r["outcome"]')" "checks_failed"
  assert_equal "$(report 'r["exit_code"]')" "11"
  assert_equal "$(report '[c["passed"] for c in r["checks"]]')" "[True, False, False]"
  [[ "$(report 'r["checks"][1]["detail"]')" == *"body lacks 'this text is not on the page'"* ]] || fail "$(report 'r["checks"][1]')"
  [[ "$(report 'r["checks"][2]["detail"]')" == *"port 8081"* ]] || fail "$(report 'r["checks"][2]')"
  [ "$(report 'r["checks"][1]["attempts"]')" -ge 2 ]
  grep -q 'FAILED (checks_failed)' "$REPORT/summary.txt"
  grep -q '\[FAIL\] http' "$REPORT/summary.txt"
}

@test "an image that never comes up: killed at the time limit, exit 12, no qemu left, serial log kept" {
  write_cmdb <<'EOF'
customer = "test"
[[host]]
name = "fixture"
memory_mb = 256
  [[host.check]]
  type = "http"
EOF
  local t0 t1
  t0=$(date +%s)
  run -12 --separate-stderr bt --image "$WORK/hang.qcow2" --report-dir "$REPORT" --timeout 25
  t1=$(date +%s)
  assert_no_qemu
  # Within the limit plus a generous margin (screenshot, quit, writing the report).
  [ $((t1 - t0)) -lt $((25 + 60)) ] || fail "took $((t1 - t0)) s with --timeout 25"
  [[ "$stderr" == *"time limit of 25 s hit and no check passed"* ]] || fail "stderr: $stderr"
  assert_equal "$(report 'r["outcome"]')" "time_limit"
  assert_equal "$(report 'r["sequence"]')" "None"
  assert_equal "$(report 'r["boot_seconds"]')" "None"
  file "$REPORT/screen.png" | grep -q 'PNG image data'
  grep -q 'hang image, sleeping forever' "$REPORT/serial.log"
}

@test "SIGTERM during a run stops qemu and removes the overlay; no report is left" {
  write_cmdb <<'EOF'
customer = "test"
[[host]]
name = "fixture"
memory_mb = 256
  [[host.check]]
  type = "tcp"
  port = 7
EOF
  # Not through bt(): $! must be planb-boot-test itself, not a subshell.
  planb-boot-test --server "$SERVER" --host fixture --image "$WORK/hang.qcow2" --report-dir "$REPORT" --timeout 300 \
    >"$WORK/out" 2>"$WORK/err" &
  local pid=$! i=0
  until pgrep -f "qemu-system-x86_64.*$WORK" >/dev/null; do
    sleep 0.2
    i=$((i + 1))
    [ $i -lt 300 ] || fail "qemu never started: $(cat "$WORK/err")"
  done
  sleep 1
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  [ "$rc" -ne 0 ]
  grep -q "interrupted by signal" "$WORK/err" || fail "rc $rc, stderr: $(cat "$WORK/err")"
  assert_no_qemu
  [ ! -e "$REPORT/report.json" ]
  [ -z "$(ls -A "$REPORT")" ] || fail "left in the report dir: $(ls -A "$REPORT")"
}

@test "--dry-run prints a qemu command with no route out: restrict=on, only 127.0.0.1 forwards, disk boot, no -kernel" {
  good_cmdb
  run -0 --separate-stderr bt --sequence 1 --dry-run --json
  local cmd
  cmd=$(printf '%s\n' "$output" | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["qemu_command"]))')
  printf '%s\n' "$cmd" | grep -qx 'qemu-system-x86_64'
  local netdev
  netdev=$(printf '%s\n' "$cmd" | grep -A1 -x -- '-netdev' | tail -n 1)
  [[ "$netdev" == user,id=net0,restrict=on,* ]] || fail "netdev: $netdev"
  # Exactly the forwards the checks need (7, 80, 22), each bound to loopback.
  local fwds
  fwds=$(printf '%s\n' "$netdev" | tr ',' '\n' | grep '^hostfwd=' | sed -E 's/^hostfwd=tcp:127\.0\.0\.1:[0-9]+-:([0-9]+)$/\1/' | sort -n | tr '\n' ' ')
  assert_equal "$fwds" "7 22 80 "
  [ "$(printf '%s\n' "$cmd" | grep -cx -- '-netdev')" -eq 1 ]
  ! printf '%s\n' "$cmd" | grep -qx -- '-kernel'
  printf '%s\n' "$cmd" | grep -q 'overlay.qcow2,if=none'
  printf '%s\n' "$cmd" | grep -qx -- '-nodefaults'
  # Nothing was booted or written.
  [ ! -e "$REPORT" ]
}

@test "bad CMDB input: exit 2 naming the file, line and problem" {
  write_cmdb <<'EOF'
customer = "test"
[[host]]
name = "fixture"
  [[host.check]]
  type = "http"
  stauts = 200
EOF
  run -2 --separate-stderr bt --sequence 1
  [[ "$stderr" == "planb-boot-test: error: failed to read CMDB $SERVER/cmdb/test.toml:6: unknown key 'stauts' in a http check of host fixture" ]] || fail "stderr: $stderr"
  printf 'customer = "test"\n[[host]\n' >"$SERVER/cmdb/test.toml"
  run -2 --separate-stderr bt --sequence 1
  [[ "$stderr" == *"failed to read CMDB $SERVER/cmdb/test.toml:2:"* ]] || fail "stderr: $stderr"
}

@test "unknown host, missing image, missing key: exit 4" {
  good_cmdb
  run -4 --separate-stderr planb-boot-test --server "$SERVER" --host nosuch --sequence 1
  [[ "$stderr" == *"no host nosuch in the CMDB"* ]] || fail "$stderr"
  run -4 --separate-stderr bt --sequence 2
  [[ "$stderr" == *"no image $SERVER/images/fixture/2/disk.qcow2"* ]] || fail "$stderr"
  rm "$SERVER/keys/test-agent"
  run -4 --separate-stderr bt --sequence 1
  [[ "$stderr" == *"test agent's key"* ]] || fail "$stderr"
  run -2 --separate-stderr planb-boot-test --server "$SERVER"
  assert_no_qemu
}
