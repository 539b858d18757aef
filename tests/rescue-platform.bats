#!/usr/bin/env bats
# The qemu backend of the rescue platform (lib/rescue_qemu.cpp), driven through
# tests/tools/rescue-platform-driver without the orchestrator: a network namespace with bridge
# br0 and dnsmasq (fixed leases), the rescue sample's VMs (tests/fixtures/build-rescue-sample:
# db 10.99.0.11, app 10.99.0.12 -> db, web 10.99.0.13 -> app) started detached inside it on
# qcow2 overlays, reached from inside the namespace, stopped, torn down. The repository images
# are never written. Every test uses its own namespace id, so the fixed 10.99.0.0/24 of the
# sample never meets another test's.

load 'helpers/common'

setup_file() {
  [ "$(id -u)" -eq 0 ] || return 0
  RS=$("$BATS_TEST_DIRNAME/fixtures/build-rescue-sample" | tail -n 1)
  export RS
}

setup() {
  require_root
  common_setup
  command -v rescue-platform-driver >/dev/null || skip "rescue-platform-driver not built (PLANB_TESTS)"
  command -v dnsmasq >/dev/null || skip "dnsmasq missing (scripts/deps test)"
  ID=t$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
  NS=planb-$ID
  RUN=$WORK/inv
  mkdir -p "$WORK/repository"
  for h in db app web; do
    mkdir -p "$WORK/repository/$h"
    cp "$RS/$h.qcow2" "$WORK/repository/$h/1.qcow2"
    chmod 0444 "$WORK/repository/$h/1.qcow2"
  done
  install -m 0600 "$RS/test-agent" "$WORK/test-agent"
  export ID NS RUN
}

teardown() {
  [ -n "${ID-}" ] || return 0
  # Whatever the test left running: our VMs (by overlay path), then the namespace.
  local p
  for p in $(pgrep -f "qemu-system.*$WORK/" || true); do kill -9 "$p" 2>/dev/null || true; done
  net net-down >/dev/null 2>&1 || true
  ip netns delete "$NS" 2>/dev/null || true
  return 0
}

mac_of() { case $1 in db) echo 52:54:00:00:00:11 ;; app) echo 52:54:00:00:00:12 ;; web) echo 52:54:00:00:00:13 ;; esac; }
addr_of() { case $1 in db) echo 10.99.0.11 ;; app) echo 10.99.0.12 ;; web) echo 10.99.0.13 ;; esac; }

net() {
  rescue-platform-driver --backend qemu "$1" --id "$ID" --cidr 10.99.0.0/24 --gateway 10.99.0.1 \
    --domain acme.rescue --run-dir "$RUN/net" \
    --lease "db,$(mac_of db),10.99.0.11" --lease "app,$(mac_of app),10.99.0.12" --lease "web,$(mac_of web),10.99.0.13" \
    "${@:2}"
}
vm() { rescue-platform-driver --backend qemu "$@"; }
start_vm() {  # HOST
  net vm-start --host "$1" --image "$WORK/repository/$1/1.qcow2" --overlay "$RUN/vm/$1/disk.qcow2" \
    --mac "$(mac_of "$1")" --vm-dir "$RUN/vm/$1" --cpus 1 --memory 256 --handle "$WORK/$1.handle"
}
in_ns() { ip netns exec "$NS" "$@"; }
handle_field() { sed -n "s/^$2=//p" "$WORK/$1.handle"; }

# Waits (a limit, not a measurement) until CMD succeeds inside the namespace; its output in $WORK/out.
wait_in_ns() {  # SECONDS HOST CMD...
  local limit=$1 host=$2 end
  shift 2
  end=$((SECONDS + limit))
  while [ $SECONDS -lt $end ]; do
    if in_ns "$@" >"$WORK/out" 2>/dev/null; then return 0; fi
    sleep 2
  done
  echo "# timed out: $*" >&2
  tail -n 20 "$RUN/vm/$host/serial.log" >&2 || true
  return 1
}

ssh_to() {  # HOST CMD
  in_ns ssh -i "$WORK/test-agent" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=10 -o LogLevel=ERROR "root@$(addr_of "$1")" "$2"
}

@test "rescue-platform: db boots in its namespace with its fixed lease, answers on 5432, stops; the repository image is unchanged" {
  before=$(sha256sum "$WORK/repository/db/1.qcow2" | cut -d' ' -f1)

  run net net-up
  assert_success
  [ -e "/run/netns/$NS" ]
  run ip -n "$NS" -4 addr show br0
  assert_output --partial "inet 10.99.0.1/24"
  # Isolated: the namespace's only interfaces are lo and br0 (and taps), no route out.
  run ip -n "$NS" route show default
  assert_output ""
  dns_pid=$(cat "$RUN/net/dnsmasq.pid")
  [ "$(cat /proc/$dns_pid/comm)" = dnsmasq ]
  [ "$(stat -L -c %i /proc/$dns_pid/ns/net)" = "$(stat -L -c %i /run/netns/$NS)" ]   # inside the namespace
  grep -q '"netns":"'"$NS"'"' "$RUN/net/network.json"

  # Re-running net-up adopts what is there (same dnsmasq).
  run net net-up
  assert_success
  [ "$(cat "$RUN/net/dnsmasq.pid")" = "$dns_pid" ]

  run start_vm db
  assert_success
  [ "$(handle_field db backend)" = qemu ]
  pid=$(handle_field db pid)
  [ "$(handle_field db id)" = "pid:$pid" ]
  [ "$(handle_field db overlay)" = "$RUN/vm/db/disk.qcow2" ]
  run vm vm-state --handle "$WORK/db.handle"
  assert_output running
  # qemu runs detached (not our child) inside the namespace.
  [ "$(stat -L -c %i /proc/$pid/ns/net)" = "$(stat -L -c %i /run/netns/$NS)" ]
  [ "$(awk '{print $4}' /proc/$pid/stat)" != "$$" ]
  run qemu-img info -U --output=json "$RUN/vm/db/disk.qcow2"
  assert_output --partial "\"backing-filename\": \"$WORK/repository/db/1.qcow2\""
  assert_output --partial '"backing-filename-format": "qcow2"'
  ip -n "$NS" link show tap-000011 | grep -q "master br0"

  # The database answers inside the namespace, on the address its MAC's lease gives.
  wait_in_ns 150 db busybox nc -w 3 10.99.0.11 5432
  grep -q "^db ok" "$WORK/out"
  grep -q "alice" "$WORK/out"
  grep -q " $(mac_of db) 10.99.0.11 db " "$RUN/net/dnsmasq.leases"
  grep -q "lease of 10.99.0.11 obtained from 10.99.0.1" "$RUN/vm/db/serial.log"
  # dnsmasq names the hosts in the rescue domain; nothing outside it.
  if command -v dig >/dev/null; then
    run in_ns dig +short +time=2 +tries=1 @10.99.0.1 app.acme.rescue
    assert_output 10.99.0.12
    run in_ns dig +short +time=2 +tries=1 @10.99.0.1 debian.org
    assert_output ""
  fi
  # Not reachable from the host's own namespace.
  run busybox nc -w 2 10.99.0.11 5432 </dev/null
  refute_output --partial "db ok"

  # A pid that is not this VM's qemu (pid reuse) is not "running".
  sed "s/^pid=.*/pid=$$/" "$WORK/db.handle" >"$WORK/other.handle"
  run vm vm-state --handle "$WORK/other.handle"
  assert_output stopped
  # The overlay named by a relative path is the same VM.
  sed "s|^overlay=.*|overlay=inv/vm/db/disk.qcow2|" "$WORK/db.handle" >"$WORK/rel.handle"
  run bash -c "cd '$WORK' && rescue-platform-driver vm-state --handle rel.handle"
  assert_output running

  # ACPI power-off: the sample's acpid unmounts /disk and powers off.
  run vm vm-stop --handle "$WORK/db.handle" --grace 60
  assert_success
  run vm vm-state --handle "$WORK/db.handle"
  assert_output stopped
  ! kill -0 "$pid" 2>/dev/null
  grep -q "ACPI power button: powering off" "$RUN/vm/db/serial.log"
  run vm vm-stop --handle "$WORK/db.handle" --grace 5
  assert_success   # idempotent

  run net net-down
  assert_success
  [ ! -e "/run/netns/$NS" ]
  ! kill -0 "$dns_pid" 2>/dev/null
  run net net-down
  assert_success   # idempotent
  [ "$(sha256sum "$WORK/repository/db/1.qcow2" | cut -d' ' -f1)" = "$before" ]
}

@test "rescue-platform: refusals: no network, bad network, overlay of another image" {
  run start_vm db
  assert_failure 4
  assert_output --partial "does not exist"
  run rescue-platform-driver --backend qemu net-up --id "$ID" --cidr 10.99.0.1/24 --gateway 10.99.0.1 --run-dir "$RUN/net"
  assert_failure 2
  run rescue-platform-driver --backend qemu net-up --id "$ID" --cidr 10.99.0.0/24 --gateway 10.99.0.1 --run-dir "$RUN/net" \
    --lease "db,$(mac_of db),10.99.1.11"
  assert_failure 2
  assert_output --partial "10.99.1.11"
  [ ! -e "/run/netns/$NS" ]
  run rescue-platform-driver --backend nope net-up --id "$ID" --cidr 10.99.0.0/24 --gateway 10.99.0.1 --run-dir "$RUN/net"
  assert_failure 2

  run net net-up
  assert_success
  mkdir -p "$RUN/vm/db"
  qemu-img create -q -f qcow2 -b "$WORK/repository/app/1.qcow2" -F qcow2 "$RUN/vm/db/disk.qcow2"
  run start_vm db
  assert_failure 6
  assert_output --partial "another backing file"
  run net net-down
  assert_success
}

@test "rescue-platform: the three-host sample in dependency order: web says 'web ok: app ok: db ok'; a restarted VM keeps its disk; net-down stops what still runs" {
  for h in db app web; do sha256sum "$WORK/repository/$h/1.qcow2"; done >"$WORK/sums"
  run net net-up
  assert_success
  # At most two VMs boot at once (2 cores).
  run start_vm db
  assert_success
  run start_vm app
  assert_success
  wait_in_ns 180 app curl -sf --max-time 8 http://10.99.0.12:8080/
  grep -q "^app ok: db ok" "$WORK/out"
  # web boots once the app answers.
  run start_vm web
  assert_success
  wait_in_ns 180 web curl -sf --max-time 10 http://10.99.0.13/
  grep -q "^web ok: app ok: db ok" "$WORK/out"

  # Without its database the app answers 503 and the web front too.
  run vm vm-stop --handle "$WORK/db.handle" --grace 60
  assert_success
  run in_ns curl -s -o /dev/null -w '%{http_code}' --max-time 15 http://10.99.0.13/
  assert_output 503

  # The database's data written on the platform survives a restart (same overlay).
  run start_vm db
  assert_success
  wait_in_ns 150 db busybox nc -w 3 10.99.0.11 5432
  ssh_to db 'echo "4 dave 2026-11-25" >>/disk/data/records; sync'
  run vm vm-stop --handle "$WORK/db.handle" --grace 60
  assert_success
  run start_vm db
  assert_success
  wait_in_ns 150 db busybox nc -w 3 10.99.0.11 5432
  grep -q "4 dave" "$WORK/out"

  # net-down with VMs still running stops them too.
  app_pid=$(handle_field app pid)
  web_pid=$(handle_field web pid)
  run net net-down
  assert_success
  ! kill -0 "$app_pid" 2>/dev/null
  ! kill -0 "$web_pid" 2>/dev/null
  run vm vm-state --handle "$WORK/web.handle"
  assert_output stopped
  [ ! -e "/run/netns/$NS" ]
  sha256sum -c --quiet "$WORK/sums"
}
