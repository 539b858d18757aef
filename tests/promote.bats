#!/usr/bin/env bats
# planb-promote: a passing boot test moves `good` to the tested image (durably,
# exactly that image); a failing one opens one ticket, runs the notify hook and
# leaves `good` where it was; --list shows it all; kill -9 never loses `good`.

load 'helpers/common'

setup() {
  common_setup
  SERVER=$WORK/server
  export PLANB_SERVER=$SERVER
  mkdir -p "$SERVER"
  echo "v1" >"$SRC/file"
}

# night N: capture the tree into the server's store as snapshot N of web1 and
# make it the candidate (as planb-assemble would), plus an "image" for it.
night() {
  local n=$1
  echo "night $n" >"$SRC/file"
  planb-capture --store "$SERVER/store" --host web1 "$SRC" >/dev/null
  cp "$SERVER/store/hosts/web1/refs/latest" "$SERVER/store/hosts/web1/refs/candidate"
  mkdir -p "$SERVER/images/web1/$n"
  head -c 300000 /dev/urandom >"$SERVER/images/web1/$n/disk.qcow2"
}

# report N PASSED [failed-check-detail]: a boot-test report for image N.
report() {
  local n=$1 passed=$2 detail=${3:-}
  local d=$SERVER/reports/web1/$n img=$SERVER/images/web1/$n/disk.qcow2
  mkdir -p "$d"
  echo "serial console of night $n" >"$d/serial.log"
  printf '\x89PNG\r\n\x1a\n' >"$d/screen.png"
  python3 - "$d" "$img" "$n" "$passed" "$detail" <<'PY'
import json, sys, hashlib
d, img, n, passed, detail = sys.argv[1:]
h = hashlib.blake2b(open(img, 'rb').read(), digest_size=32).hexdigest()
checks = [{"type": "tcp", "target": ":22", "passed": True, "seconds": 1.0},
          {"type": "http", "target": ":80/", "passed": passed == "true", "seconds": 2.0, "detail": detail}]
json.dump({"host": "web1", "sequence": int(n), "image": {"path": img, "hash": h, "hash_algorithm": "blake2b-256"},
           "passed": passed == "true", "checks": checks, "serial_log": d + "/serial.log",
           "screenshot": d + "/screen.png", "seconds": 42.0, "started_at": 1764000000}, open(d + "/report.json", "w"))
open(d + "/summary.txt", "w").write("web1 night %s: %s\n" % (n, "PASS" if passed == "true" else "FAIL " + detail))
PY
}

good_seq() { sed -n 's/^sequence=//p' "$SERVER/repository/web1/good"; }

@test "a passing image becomes good: repository holds exactly the tested image, store ref and catalog follow" {
  night 1
  report 1 true
  cp "$SERVER/images/web1/1/disk.qcow2" "$WORK/tested.img"
  run -0 planb-promote --host web1
  assert_output --partial "promoted to good"
  cmp "$WORK/tested.img" "$SERVER/repository/web1/1.qcow2"
  assert_equal "$(good_seq)" 1
  assert_equal "$(cut -d' ' -f1 "$SERVER/store/hosts/web1/refs/good")" 1
  run -0 planb-promote --list --json
  python3 -c 'import json,sys; h=json.loads(sys.argv[1])[0]; assert h["host"]=="web1" and h["good"]["sequence"]==1 and h["candidate"]==1 and h["open_tickets"]==[], h' "$output"
  # Re-running is harmless.
  run -0 planb-promote --host web1
  assert_output --partial "already the good image"
}

@test "a failing image is not promoted: one ticket, notify hook, good stays (exit 11)" {
  night 1
  report 1 true
  planb-promote --host web1 >/dev/null
  night 2
  report 2 false "body does not contain 'Plan B sample'"
  echo "notify = cat > $WORK/notified; env | grep ^PLANB_ >> $WORK/notified" >"$SERVER/config"
  run -11 planb-promote --host web1
  assert_output --partial "NOT promoted"
  assert_output --partial "good stays at 1"
  assert_output --partial "body does not contain"
  assert_equal "$(good_seq)" 1
  [ ! -e "$SERVER/repository/web1/2.qcow2" ]
  assert_equal "$(cut -d' ' -f1 "$SERVER/store/hosts/web1/refs/good")" 1
  grep -q "PLANB_TICKET=1" "$WORK/notified"
  grep -q "PLANB_SCREENSHOT=$SERVER/reports/web1/2/screen.png" "$WORK/notified"
  grep -q "web1 night 2: FAIL" "$WORK/notified"
  # A re-run opens no second ticket and does not notify again.
  rm "$WORK/notified"
  run -11 planb-promote --host web1 --json
  python3 -c 'import json,sys; r=json.loads(sys.argv[1].splitlines()[0]); assert r["ticket"]==1 and not r["promoted"], r' "$output"
  [ ! -e "$WORK/notified" ]
  run -0 planb-promote --list
  assert_output --regexp "web1 +2 +2 FAIL +1 \("
  assert_output --partial "#1 boot_test_failed 2"
  # A failed, ticketed candidate is decided: not pending; a new candidate is.
  run -0 planb-promote --pending
  assert_output ""
  # The next good night closes the ticket.
  night 3
  run -0 planb-promote --pending
  assert_output "web1 3"
  report 3 true
  run -0 planb-promote --host web1
  run -0 planb-promote --list --json
  python3 -c 'import json,sys; h=json.loads(sys.argv[1])[0]; assert h["good"]["sequence"]==3 and h["open_tickets"]==[], h' "$output"
}

@test "a failing notify hook is a warning: the ticket stands" {
  night 1
  report 1 false "connection refused"
  echo "notify = exit 7" >"$SERVER/config"
  run -11 --separate-stderr planb-promote --host web1
  [[ "$stderr" == *"notify hook failed: exit 7"* ]]
  [ ! -e "$SERVER/repository/web1/good" ]
}

@test "an image changed after its boot test is refused (exit 5), good unchanged" {
  night 1
  report 1 true
  planb-promote --host web1 >/dev/null
  night 2
  report 2 true
  echo tampered >>"$SERVER/images/web1/2/disk.qcow2"
  run -5 planb-promote --host web1
  assert_output --partial "not the one the boot test passed"
  assert_equal "$(good_seq)" 1
  [ ! -e "$SERVER/repository/web1/2.qcow2" ]
}

@test "retention keeps the newest images (--keep), never the good one's predecessor beyond it" {
  local n
  for n in 1 2 3 4; do
    night "$n"
    report "$n" true
    run -0 planb-promote --host web1 --keep 2
  done
  assert_equal "$(cd "$SERVER/repository/web1" && ls *.qcow2 | sort | tr '\n' ' ')" "3.qcow2 4.qcow2 "
  assert_equal "$(good_seq)" 4
}

@test "missing report, wrong host, no candidate: clear errors" {
  run -4 planb-promote --host web1
  night 1
  run -4 planb-promote --host web1
  assert_output --partial "report.json: no such file"
  report 1 true
  sed -i 's/"host": "web1"/"host": "db1"/' "$SERVER/reports/web1/1/report.json"
  run -2 planb-promote --host web1
  assert_output --partial "is for host db1"
  echo '{"host": "web1"' >"$SERVER/reports/web1/1/report.json"
  run -5 planb-promote --host web1
  assert_output --partial "not valid JSON"
  run -2 planb-promote
  assert_output --partial "--host is required"
}

@test "kill -9 during promote, many times: good always names a complete image; a re-run completes" {
  local i p
  night 1
  report 1 true
  planb-promote --host web1 >/dev/null
  cp "$SERVER/repository/web1/1.qcow2" "$WORK/good1"
  night 2
  # A bigger image so the kill lands inside the hash or the copy.
  head -c 60000000 /dev/urandom >"$SERVER/images/web1/2/disk.qcow2"
  cp "$SERVER/images/web1/2/disk.qcow2" "$WORK/img2"
  report 2 true
  for i in $(seq 1 10); do
    planb-promote --host web1 >/dev/null 2>&1 &
    p=$!
    sleep "0.0$((RANDOM % 9))"
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    case "$(good_seq)" in
      1) cmp "$WORK/good1" "$SERVER/repository/web1/1.qcow2" ;;
      2) cmp "$WORK/img2" "$SERVER/repository/web1/2.qcow2" ;;
      *) fail "good ref unreadable: $(cat "$SERVER/repository/web1/good")" ;;
    esac
  done
  run -0 planb-promote --host web1
  assert_equal "$(good_seq)" 2
  cmp "$WORK/img2" "$SERVER/repository/web1/2.qcow2"
  [ -z "$(ls -A "$SERVER/repository/web1" | grep -v -E '^(1|2)\.qcow2$|^good$|^\.lock$')" ]
}
