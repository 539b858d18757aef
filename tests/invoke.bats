#!/usr/bin/env bats
# planb-invoke plan / drill / start / status / stop on the three-host rescue sample
# (tests/fixtures/build-rescue-sample: db; app needs db; web needs app), booted in qemu
# (TCG here) on a rescue network in a namespace the test's invocation creates, with DNS
# redirection against a real BIND on 127.0.0.1 started by the test.

load 'helpers/common'
load 'helpers/invoke'
load 'helpers/bind'

setup_file() {
  [ "$(id -u)" -eq 0 ] || return 0
  rescue_fixture
}

setup() {
  require_root
  common_setup
  command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86 missing (scripts/deps test)"
  [ -n "${RS-}" ] || rescue_fixture
  SERVER=$WORK/server
  export SERVER
}

teardown() {
  [ -n "${SERVER-}" ] && invocation_cleanup "$SERVER"
  [ -n "${BIND_DIR-}" ] && stop_bind "$BIND_DIR"
  true
}

state_field() {  # ID PYTHON-EXPR over the state dict s
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
    "$SERVER/invocations/$1/state.json" "$2"
}

@test "plan: waves from depends_on, each host's good image and address; boots nothing" {
  make_rescue_server "$SERVER"
  run planb-invoke plan --server "$SERVER" --customer acme
  assert_success
  assert_output --partial "3 hosts in 3 waves"
  assert_line --regexp '^wave 1:'
  assert_line --regexp '^  db +10\.99\.0\.11 +snapshot 1'
  assert_line --regexp '^  app +10\.99\.0\.12 .*after db'
  assert_line --regexp '^  web +10\.99\.0\.13 .*after app'
  run planb-invoke plan --server "$SERVER" --customer acme --json
  assert_success
  [ "$(echo "$output" | python3 -c 'import json,sys; p=json.load(sys.stdin); print(" ".join(h["name"]+":"+str(h["wave"]) for h in p["hosts"]))')" = "db:1 app:2 web:3" ]
  no_qemu_under "$SERVER"
  [ ! -d "$SERVER/invocations" ] || [ -z "$(ls "$SERVER/invocations")" ]
}

@test "plan: a dependency cycle, a missing image, a dependency outside the request are refused by name" {
  make_rescue_server "$SERVER"
  # app -> db -> web -> app
  sed -i '0,/^address = "10.99.0.11"/s//address = "10.99.0.11"\ndepends_on = ["web"]/' "$SERVER/cmdb/acme.toml"
  run planb-invoke plan --server "$SERVER" --customer acme
  assert_failure 2
  assert_output --regexp 'dependency cycle: .*(db|app|web) -> .*(db|app|web) -> .*(db|app|web) -> '
  sed -i '/^depends_on = \["web"\]$/d' "$SERVER/cmdb/acme.toml"
  run planb-invoke plan --server "$SERVER" --customer acme
  assert_success
  rm "$SERVER/repository/app/good"
  run planb-invoke plan --server "$SERVER" --customer acme
  assert_failure 4
  assert_output --partial "host app has no good image"
  good_ref "$SERVER" app "$RS/app.qcow2"
  rm "$SERVER/repository/web/1.qcow2"
  run planb-invoke plan --server "$SERVER" --customer acme
  assert_failure 4
  assert_output --regexp "web's good image .*1.qcow2 is missing"
  good_ref "$SERVER" web "$RS/web.qcow2"
  run planb-invoke plan --server "$SERVER" --customer acme --host web --host db
  assert_failure 2
  assert_output --partial "web depends on app, which is not part of this invocation"
}

@test "drill: approved -> db, app, web booted in dependency order, every check passed, report, torn down" {
  make_rescue_server "$SERVER"
  for h in db app web; do b2sum "$SERVER/repository/$h/1.qcow2"; done >"$WORK/images.b2"
  new_request "$SERVER" drill --all
  # Not approved yet: nothing boots.
  run planb-invoke drill --server "$SERVER" "$REQ"
  assert_failure 10
  no_qemu_under "$SERVER"
  approve_by "$SERVER" "$REQ_FILE" alice carol
  run planb-invoke drill --server "$SERVER" "$REQ"
  echo "$output"
  assert_success
  assert_output --regexp 'web +10\.99\.0\.13 +stopped'
  # Each host started only after what it depends on was verified.
  [ "$(state_field "$REQ" '" ".join(h["state"] for h in s["hosts"])')" = "stopped stopped stopped" ]
  state_field "$REQ" '[h["name"] for h in s["hosts"]]'
  [ "$(state_field "$REQ" 's["hosts"][1]["booted_s"] >= s["hosts"][0]["verified_s"] > 0')" = True ]
  [ "$(state_field "$REQ" 's["hosts"][2]["booted_s"] >= s["hosts"][1]["verified_s"] > 0')" = True ]
  [ "$(state_field "$REQ" 'all(c["passed"] for h in s["hosts"] for c in h["checks"]) and sum(len(h["checks"]) for h in s["hosts"])')" = 4 ]
  # The measured time from start to all verified is in the report, in all three forms.
  secs=$(state_field "$REQ" 's["seconds_to_verified"]')
  python3 -c "import sys; assert 0 < float(sys.argv[1]) < 900" "$secs"
  grep -F "Time from start to all verified:** $secs s" "$SERVER/invocations/$REQ/report.md"
  grep -F "| web | 10.99.0.13 | 1 |" "$SERVER/invocations/$REQ/report.md"
  grep -F "web ok: app ok: db ok" "$SERVER/invocations/$REQ/report.md"
  grep -F "<h1>Plan B drill report: acme</h1>" "$SERVER/invocations/$REQ/report.html"
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["mode"]=="drill" and s["status"]=="stopped"' "$SERVER/invocations/$REQ/report.json"
  # Torn down: no VM, no namespace, no copy-on-write layers; the good images untouched.
  no_qemu_under "$SERVER"
  ! ip netns list | grep -F "planb-${REQ:0:8}"
  [ -z "$(find "$SERVER/invocations/$REQ/vm" -name disk.qcow2)" ]
  b2sum -c --quiet "$WORK/images.b2"
  # Audited, and the chain verifies; the request cannot run twice.
  run planb-invoke audit --server "$SERVER" --invocation "$REQ"
  assert_success
  assert_output --partial "vm-verified"
  assert_output --partial "stop"
  run planb-invoke drill --server "$SERVER" "$REQ"
  assert_failure 10
  no_qemu_under "$SERVER"
}

@test "drill: a host that fails its checks blocks what depends on it; exit 11; still torn down" {
  make_rescue_server "$SERVER"
  sed -i '0,/^  port = 5432/s//  port = 5433\n  timeout = 2/' "$SERVER/cmdb/acme.toml"
  planb-invoke executives --server "$SERVER" --customer acme
  new_request "$SERVER" drill --all
  approve_by "$SERVER" "$REQ_FILE" bob carol
  run planb-invoke drill --server "$SERVER" --timeout 25 "$REQ"
  echo "$output"
  assert_failure 11
  assert_output --partial "db (failed)"
  assert_output --regexp "tcp port 5433: .*(refused|timed out)"
  [ "$(state_field "$REQ" '" ".join(h["state"] for h in s["hosts"])')" = "failed blocked blocked" ]
  state_field "$REQ" 's["hosts"][1]["detail"]' | grep -F "not started: db (a dependency) did not verify"
  grep -F "not reached (0 of 3 verified)" "$SERVER/invocations/$REQ/report.md"
  no_qemu_under "$SERVER"
  ! ip netns list | grep -F "planb-${REQ:0:8}"
}

@test "start: real invocation redirects DNS (BIND, TSIG), status shows verified hosts, stop restores DNS" {
  start_bind "$WORK/bind"
  extra="
[[dns]]
server = \"127.0.0.1\"
port = $BIND_PORT
zone = \"acme.example.\"
tsig_key = \"$BIND_KEY\"
name = \"www.acme.example.\"
type = \"A\"
host = \"web\"
ttl = 60

[[dns]]
server = \"127.0.0.1\"
port = $BIND_PORT
zone = \"acme.example.\"
tsig_key = \"$BIND_KEY\"
name = \"acme.example.\"
type = \"MX\"
value = \"10 mail.acme.rescue.\"
"
  make_rescue_server "$SERVER" "$extra"
  new_request "$SERVER" real --host db --host app --host web
  approve_by "$SERVER" "$REQ_FILE" alice bob
  # A drill cannot use a request for a real invocation.
  run planb-invoke drill --server "$SERVER" "$REQ"
  assert_failure 10
  run planb-invoke start --server "$SERVER" "$REQ"
  echo "$output"
  assert_success
  [ "$(bdig www.acme.example. A)" = "60 10.99.0.13" ]
  [ "$(bdig acme.example. MX)" = "60 10 mail.acme.rescue." ]
  run planb-invoke status --server "$SERVER" "$REQ" --live
  assert_success
  assert_output --regexp 'db +10\.99\.0\.11 +verified'
  assert_output --regexp 'web +10\.99\.0\.13 +verified'
  assert_output --partial "[PASS] http :80/ 200 'web ok: app ok: db ok'"
  grep -F "Redirected to the rescue addresses" "$SERVER/invocations/$REQ/report.md"
  grep -F "ssh root@10.99.0.13" "$SERVER/invocations/$REQ/report.md"
  # The VMs really run on the rescue network: reach web from inside it.
  ip netns exec "planb-${REQ:0:8}" curl -sf http://10.99.0.13/ | grep -F "web ok: app ok: db ok"
  run planb-invoke stop --server "$SERVER" "$REQ"
  assert_success
  [ "$(bdig www.acme.example. A)" = "300 192.0.2.10" ]
  [ "$(bdig acme.example. MX)" = "300 10 mail.acme.example." ]
  no_qemu_under "$SERVER"
  ! ip netns list | grep -F "planb-${REQ:0:8}"
  # A real invocation's disks are kept (the customer's data: failback reads them).
  [ -f "$SERVER/invocations/$REQ/vm/db/disk.qcow2" ]
  run planb-invoke status --server "$SERVER" "$REQ"
  assert_output --partial ": stopped"
  run planb-invoke audit --server "$SERVER" --invocation "$REQ"
  assert_success
  assert_output --partial "dns-redirect"
  assert_output --partial "dns-rollback"
}

@test "drill on the libvirt backend: the same recovery through a real libvirtd (isolated libvirt network, transient domains)" {
  command -v libvirtd >/dev/null || skip "libvirt-daemon-system missing (scripts/deps test)"
  load 'helpers/libvirt'
  LV_DIR=$(mktemp -d /tmp/pblv.XXXXXX)
  libvirt_up "$LV_DIR"
  make_rescue_server "$SERVER"
  # One host keeps it short: the three-host order is the qemu drill's test.
  new_request "$SERVER" drill --host db
  approve_by "$SERVER" "$REQ_FILE" alice bob
  run planb-invoke drill --server "$SERVER" --backend libvirt "$REQ"
  echo "$output"
  libvirt_down "$LV_DIR"
  rm -rf "$LV_DIR"
  assert_success
  [ "$(state_field "$REQ" 's["backend"] + " " + " ".join(h["name"] + ":" + h["state"] for h in s["hosts"])')" = "libvirt db:stopped" ]
  [ "$(state_field "$REQ" 's["hosts"][0]["vm"]["id"]')" = "planb-${REQ:0:8}-db" ]
  [ "$(state_field "$REQ" 'all(c["passed"] for h in s["hosts"] for c in h["checks"])')" = True ]
  [ "$(state_field "$REQ" 's["seconds_to_verified"] > 0')" = True ]
  ! ip link show "pb-${REQ:0:8}" 2>/dev/null
}
