#!/usr/bin/env bats
# The libvirt backend of the rescue platform (lib/rescue_libvirt.cpp) against a real libvirtd
# (started by the test when none runs: tests/helpers/libvirt.bash), driven through
# tests/tools/rescue-platform-driver: an isolated network with a fixed DHCP lease, the boot-test
# fixture image (busybox, DHCP, http on 80) booted as a transient domain on a qcow2 overlay,
# reached from the host on the bridge, its disk frozen at a point in time while it runs (failback),
# stopped, torn down; the repository image is unchanged.

load 'helpers/common'
load 'helpers/libvirt'

setup_file() {
  [ "$(id -u)" -eq 0 ] || return 0
  command -v libvirtd >/dev/null && command -v virsh >/dev/null || return 0
  FIXTURE=$("$BATS_TEST_DIRNAME/fixtures/build-boot-test-image")
  LVDIR=$(mktemp -d /tmp/pblv.XXXXXX)  # short: holds libvirtd's unix sockets
  export FIXTURE LVDIR
  libvirt_up "$LVDIR"
}

teardown_file() {
  [ -n "${LVDIR-}" ] || return 0
  libvirt_down
  rm -rf "$LVDIR"
}

setup() {
  require_root
  common_setup
  command -v virsh >/dev/null || skip "libvirt-clients missing (scripts/deps test)"
  command -v rescue-platform-driver >/dev/null || skip "rescue-platform-driver not built (PLANB_TESTS)"
  # A fresh id and /24 per test: a network left by another run cannot be mistaken for ours.
  ID=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
  NET=10.231.$((RANDOM % 250 + 1))
  MAC=52:54:00:$(od -An -N3 -tx1 /dev/urandom | tr -d '\n' | sed 's/^ //; s/ /:/g')
  IMAGE=$WORK/repository/fixture/1.qcow2
  mkdir -p "$WORK/repository/fixture"
  cp "$FIXTURE/good.qcow2" "$IMAGE"
  chmod 0640 "$IMAGE"
  export ID NET MAC IMAGE
}

teardown() {
  # Whatever the test left: our domains and network only (named after this test's id).
  [ -n "${ID-}" ] && [ -n "${PLANB_LIBVIRT_URI-}" ] || return 0
  local d
  for d in $(virsh -q -c "$PLANB_LIBVIRT_URI" list --all --name 2>/dev/null | grep "^planb-$ID-" || true); do
    virsh -q -c "$PLANB_LIBVIRT_URI" destroy "$d" >/dev/null 2>&1 || true
  done
  virsh -q -c "$PLANB_LIBVIRT_URI" net-destroy "planb-$ID" >/dev/null 2>&1 || true
  virsh -q -c "$PLANB_LIBVIRT_URI" net-undefine "planb-$ID" >/dev/null 2>&1 || true
  return 0
}

net() {
  rescue-platform-driver --backend libvirt "$1" --id "$ID" --cidr "$NET.0/24" --gateway "$NET.1" \
    --domain acme.rescue --run-dir "$WORK/run" --lease "db,$MAC,$NET.11" "${@:2}"
}
vm() { rescue-platform-driver --backend libvirt "$@"; }
lv() { virsh -q -c "$PLANB_LIBVIRT_URI" "$@"; }

@test "rescue-libvirt: the fixture boots on an isolated network with its fixed lease, answers http from the host, stops; the image is unchanged" {
  before=$(sha256sum "$IMAGE" | cut -d' ' -f1)
  stat_before=$(stat -c '%u:%g %a' "$IMAGE")

  run net net-up
  assert_success
  run lv net-dumpxml "planb-$ID"
  assert_success
  refute_output --partial "<forward"            # isolated: nothing routes out
  assert_output --partial "<bridge name='pb-$ID'"
  ip -4 addr show "pb-$ID" | grep -q "inet $NET.1/24"   # the host reaches the bridge

  run net vm-start --host db --image "$IMAGE" --overlay "$WORK/run/db/disk.qcow2" --mac "$MAC" \
    --vm-dir "$WORK/run/db" --cpus 1 --memory 256 --handle "$WORK/db.handle"
  assert_success
  grep -qx "id=planb-$ID-db" "$WORK/db.handle"
  grep -qx "backend=libvirt" "$WORK/db.handle"
  run vm vm-state --handle "$WORK/db.handle"
  assert_output running
  # The overlay's backing file is the repository image, told as qcow2.
  run qemu-img info -U --output=json "$WORK/run/db/disk.qcow2"
  assert_output --partial "\"backing-filename\": \"$IMAGE\""
  assert_output --partial '"backing-filename-format": "qcow2"'

  # Up within two minutes under TCG (a limit, not a measurement): the page from the host, on
  # the address the CMDB gave this MAC.
  ok=""
  for _ in $(seq 1 60); do
    if curl -sf --max-time 3 "http://$NET.11/" >"$WORK/page" 2>/dev/null; then ok=1; break; fi
    sleep 2
  done
  [ -n "$ok" ] || { tail -n 20 "$WORK/run/db/serial.log" >&2; fail "no http answer from $NET.11"; }
  grep -q "Plan B boot-test fixture" "$WORK/page"
  grep -q "lease of $NET.11 obtained from $NET.1" "$WORK/run/db/serial.log"   # serial console in the file
  run lv net-dhcp-leases "planb-$ID"
  assert_output --regexp "$MAC +ipv4 +$NET.11/24 +db"
  # libvirt's dnsmasq names the hosts in the rescue domain.
  if command -v dig >/dev/null; then
    run dig +short +time=2 +tries=2 @"$NET.1" db.acme.rescue
    assert_output "$NET.11"
  fi

  # Failback's point-in-time freeze while the VM runs: new writes go to a new layer backed by
  # the overlay, which can then be read consistently; the VM keeps serving.
  run vm vm-freeze --handle "$WORK/db.handle" --next "$WORK/run/db/active-1.qcow2"
  assert_success
  assert_output "$WORK/run/db/disk.qcow2"
  run lv domblklist "planb-$ID-db"
  assert_output --regexp "vda +$WORK/run/db/active-1.qcow2"
  run qemu-img info -U --output=json "$WORK/run/db/active-1.qcow2"
  assert_output --partial "\"backing-filename\": \"$WORK/run/db/disk.qcow2\""
  qemu-img check -q "$WORK/run/db/disk.qcow2"      # no write lock on it any more
  curl -sf --max-time 5 "http://$NET.11/" | grep -q "Plan B boot-test fixture"
  run vm vm-freeze --handle "$WORK/db.handle" --next "$WORK/run/db/active-1.qcow2"
  assert_failure 6                                 # never overwrites a layer

  run vm vm-stop --handle "$WORK/db.handle" --grace 3
  assert_success
  run vm vm-state --handle "$WORK/db.handle"
  assert_output stopped
  run lv list --all --name
  refute_output --partial "planb-$ID-db"          # transient: gone once stopped
  run vm vm-stop --handle "$WORK/db.handle" --grace 3
  assert_success                                   # idempotent

  run net net-down
  assert_success
  run lv net-list --all --name
  refute_output --partial "planb-$ID"
  run ip link show "pb-$ID"
  assert_failure

  [ "$(sha256sum "$IMAGE" | cut -d' ' -f1)" = "$before" ]
  [ "$(stat -c '%u:%g %a' "$IMAGE")" = "$stat_before" ]   # owner and mode not relabelled
  [ -f "$WORK/run/db/disk.qcow2" ]                          # the overlay stays (failback reads it)
}

@test "rescue-libvirt: net-up adopts its own network, refuses a foreign one of the same name; net-down removes its domains and is idempotent" {
  run net net-up
  assert_success
  run net net-up
  assert_success
  # Same name, another gateway: not ours.
  run rescue-platform-driver --backend libvirt net-up --id "$ID" --cidr "10.232.1.0/24" --gateway 10.232.1.1 \
    --run-dir "$WORK/run2"
  assert_failure 6
  assert_output --partial "exists without the gateway address 10.232.1.1"
  # A domain of ours still running when the network goes: net-down takes it too (a VM that
  # never boots is enough: the hang image).
  cp "$FIXTURE/hang.qcow2" "$WORK/hang.qcow2"
  run net vm-start --host db --image "$WORK/hang.qcow2" --overlay "$WORK/run/db/disk.qcow2" --mac "$MAC" \
    --vm-dir "$WORK/run/db" --memory 128 --handle "$WORK/db.handle"
  assert_success
  run net net-down
  assert_success
  run lv list --all --name
  refute_output --partial "planb-$ID-"
  run net net-down
  assert_success
  run vm vm-stop --handle "$WORK/db.handle" --grace 1
  assert_success
  run vm vm-state --handle "$WORK/db.handle"
  assert_output stopped
}

@test "rescue-libvirt: bad specs are usage errors before libvirt is asked" {
  run rescue-platform-driver --backend libvirt net-up --id "bad'id" --cidr 10.231.0.0/24 --gateway 10.231.0.1 \
    --run-dir "$WORK/run"
  assert_failure 2
  run rescue-platform-driver --backend libvirt net-up --id "$ID" --cidr 10.231.0.0/24 --gateway 10.231.0.1 \
    --run-dir "$WORK/run" --lease "db,$MAC,10.231.1.11"
  assert_failure 2
  assert_output --partial "is not a host address of 10.231.0.0/24"
  run lv net-list --all --name
  refute_output --partial "planb-$ID"
}
