#!/usr/bin/env bats
# planb-convert on the sample "physical" server (tests/fixtures/build-sample-server): the P2V
# before/after case (the server's own disk does not boot in a VM, the converted image boots and
# serves its page and ssh, checked by planb-boot-test in qemu on loopback-only forwards),
# --explain, skipped overlays, customer overlays, broken overlays, and kill -9.

load 'helpers/common'

setup_file() {
  [ "$(id -u)" -eq 0 ] || return 0
  SAMPLE=$("$BATS_TEST_DIRNAME/fixtures/build-sample-server" | tail -n 1)
  # One capture of the sample server into a server store, shared by the tests (read-only).
  BASE=$BATS_FILE_TMPDIR/base
  mkdir -p "$BASE"
  planb-capture --store "$BASE/store" --host web1 "$SAMPLE/root" >/dev/null
  cp "$BASE/store/hosts/web1/refs/latest" "$BASE/store/hosts/web1/refs/candidate"
  export SAMPLE BASE
}

setup() {
  require_root
  common_setup
  for t in mke2fs sfdisk grub-mkimage qemu-img ssh-keygen; do
    command -v "$t" >/dev/null || skip "$t missing (scripts/deps test)"
  done
  SERVER=$WORK/server
  mkdir -p "$SERVER/cmdb/overlays"
  # The store is shared: a server dir per test that links to it.
  ln -s "$BASE/store" "$SERVER/store"
  IMG=$SERVER/images/web1/1
  export SERVER IMG
}

teardown() {
  local p
  for p in $(pgrep -f "qemu-system-x86_64.*$WORK" || true); do kill -9 "$p" 2>/dev/null || true; done
  for p in $(pgrep -f "planb-convert --server $SERVER" || true); do kill -9 "$p" 2>/dev/null || true; done
  return 0
}

conv() { planb-convert --server "$SERVER" --host web1 "$@"; }

# An explain.json field (python expression on e).
explain() { python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "${EXPLAIN:-$IMG/explain.json}" "$1"; }

write_cmdb() {
  cat >"$SERVER/cmdb/acme.toml" <<'EOF'
customer = "acme"
[[host]]
name = "web1"
cpus = 1
memory_mb = 1024
  [[host.check]]
  type = "tcp"
  port = 22
  [[host.check]]
  type = "http"
  port = 80
  path = "/"
  status = 200
  body = "Plan B sample"
  [[host.check]]
  type = "ssh"
  command = "test -s /data/records.csv && grep -q '^UUID=.* / ext4' /etc/fstab"
  [[host.check]]
  type = "systemd"
EOF
}

# Nothing of a convert is left: no work directories (ours or in /dev/shm), no loop device.
assert_no_leftovers() {
  local left
  left=$(ls -d "$IMG"/.convert-* /dev/shm/.convert-* 2>/dev/null | grep -v "^$" || true)
  for d in $left; do
    pid=${d##*-}
    if ! kill -0 "$pid" 2>/dev/null; then fail "left behind: $d"; fi
  done
  ! losetup -a 2>/dev/null | grep -q "$WORK" || fail "a loop device is still attached to $WORK"
}

@test "P2V: the server's own disk does not boot in a VM; the converted image boots, serves its page and ssh" {
  command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86 missing"
  command -v planb-boot-test >/dev/null || skip "planb-boot-test not built"
  write_cmdb
  # Convert the candidate (this also creates the test agent key the checks use).
  run conv --json
  assert_success
  [ -s "$IMG/disk.qcow2" ]
  qemu-img info --output=json "$IMG/disk.qcow2" | grep -q "\"format\": \"qcow2\""
  [ -s "$SERVER/keys/test-agent" ] && [ -s "$SERVER/keys/test-agent.pub" ]
  # Before: the physical machine's disk as it is (MODULES=dep initramfs without virtio, fstab by
  # UUIDs of its own disks, static IP on enp3s0) never comes up.
  # (planb-boot-test boots the raw disk through its own copy-on-write overlay, never writing it.)
  local before_hash
  before_hash=$(sha256sum "$SAMPLE/physical.img")
  run planb-boot-test --server "$SERVER" --host web1 --image "$SAMPLE/physical.img" --sequence 1 \
    --timeout 60 --report-dir "$WORK/before"
  [ "$status" -eq 12 ] || { echo "$output"; fail "the unconverted disk was expected to fail to come up (exit 12), got $status"; }
  assert_equal "$(sha256sum "$SAMPLE/physical.img")" "$before_hash"

  # After: the converted image.
  run planb-boot-test --server "$SERVER" --host web1 --timeout 400 --report-dir "$WORK/after"
  echo "$output"
  assert_success
  grep -q 'ttyS0' "$WORK/after/serial.log" || grep -q 'login:' "$WORK/after/serial.log"
  assert_no_leftovers
}

@test "--explain names each overlay and its changes; RHEL overlays are skipped with the reason" {
  run conv --explain
  assert_success
  assert_output --partial "overlay fstab: applied"
  assert_output --partial "commented out (/data"
  assert_output --partial "overlay debian-network-dhcp: applied"
  assert_output --partial "enp3s0"
  assert_output --partial "overlay persistent-net-rules: applied"
  assert_output --partial "delete /etc/udev/rules.d/70-persistent-net.rules: present -> deleted"
  assert_output --partial "overlay serial-console: applied"
  assert_output --partial "serial-getty@ttyS0.service"
  assert_output --partial "overlay debian-initramfs-virtio: applied"
  assert_output --partial "MODULES=dep -> MODULES=most"
  assert_output --partial "overlay test-agent: applied"
  assert_output --partial "overlay bootloader: applied"
  assert_output --regexp "overlay rhel-network-dhcp: skipped \(os-release ID 'debian' is not one of rhel"
  assert_output --regexp "overlay rhel-initramfs-virtio: skipped"
  assert_output --regexp "initramfs /boot/initrd.img-[^:]+: appended [0-9]+ modules \(.*virtio_blk.*\)"
  # The same in explain.json.
  [ "$(explain '[o["applied"] for o in e["overlays"] if o["name"]=="rhel-network-dhcp"][0]')" = False ]
  [ "$(explain '[o["reason"] for o in e["overlays"] if o["name"]=="rhel-network-dhcp"][0]')" != "" ]
  [ "$(explain 'sorted(set(c["action"] for o in e["overlays"] for c in o["changes"]))')" = \
    "['append_lines', 'authorized_key', 'bootloader', 'delete', 'disable_unit', 'enable_unit', 'fstab', 'initramfs_modules', 'kernel_cmdline', 'replace_lines', 'set_key', 'write_file']" ]
  [ "$(explain '"virtio_pci" in e["initramfs"][0]["added"]')" = True ]
  [ "$(explain 'e["guest"]["id"]')" = debian ]
  root_uuid=$(explain 'e["root_uuid"]')
  # The image's file system has that UUID, and the edited files are in it (read with e2tools-free
  # debugfs on the raw partition of a converted copy).
  qemu-img convert -f qcow2 -O raw "$IMG/disk.qcow2" "$WORK/disk.raw"
  start=$(sfdisk -d "$WORK/disk.raw" | sed -n 's/.*start= *\([0-9]*\).*/\1/p' | head -1)
  [ "$start" -eq 2048 ]
  dd if="$WORK/disk.raw" of="$WORK/p1.img" bs=1M skip=1 status=none
  [ "$(blkid -s UUID -o value "$WORK/p1.img")" = "$root_uuid" ]
  debugfs -R "cat /etc/fstab" "$WORK/p1.img" 2>/dev/null >"$WORK/fstab"
  grep -q "^UUID=$root_uuid / ext4" "$WORK/fstab"
  grep -q "^# planb: .*/data" "$WORK/fstab"
  debugfs -R "cat /root/.ssh/authorized_keys" "$WORK/p1.img" 2>/dev/null | grep -qF "$(cut -d' ' -f1-2 "$SERVER/keys/test-agent.pub")"
  debugfs -R "cat /boot/grub/grub.cfg" "$WORK/p1.img" 2>/dev/null | grep -q "root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200"
  # Owners survive: the upload directory belongs to uid 1000 as on the server.
  debugfs -R "stat /data/uploads" "$WORK/p1.img" 2>/dev/null | grep -q "User:  1000"
  # GRUB's boot code is in the MBR and its core image right after it.
  dd if="$WORK/disk.raw" bs=512 count=1 status=none | grep -aq GRUB
  assert_no_leftovers
}

@test "customer overlays add changes and can disable a built-in one" {
  cat >"$SERVER/cmdb/overlays/acme-motd.toml" <<'EOF'
[overlay]
format = 1
name = "acme-motd"
description = "banner for the rescue image"
[when]
os_id = ["debian"]
packages = ["nginx"]
[[action]]
type = "write_file"
path = "/etc/motd"
content = "Rescue image of ${host}, snapshot ${snapshot}\n"
EOF
  cat >"$SERVER/cmdb/overlays/no-persistent-net.toml" <<'EOF'
[overlay]
format = 1
name = "persistent-net-rules"
enabled = false
EOF
  run conv --explain -o "$WORK/out.qcow2"
  assert_success
  assert_output --partial "overlay acme-motd: applied"
  assert_output --partial "write_file /etc/motd"
  assert_output --partial "overlay persistent-net-rules: skipped (disabled)"
  [ -s "$WORK/out.qcow2" ] && [ -s "$WORK/out.qcow2.explain.json" ]
  [ ! -e "$IMG/disk.qcow2" ]
}

@test "a broken overlay is a clear error (exit 2) and nothing is written" {
  printf '[overlay]\nformat = 1\nname = "broken"\n[[action]]\ntype = "replace_lines"\npath = "/etc/x"\nmatch = "(unclosed"\nreplace = ""\n' \
    >"$SERVER/cmdb/overlays/broken.toml"
  run conv
  [ "$status" -eq 2 ]
  assert_output --partial "planb-convert: error: failed to load overlay $SERVER/cmdb/overlays/broken.toml"
  assert_output --partial "bad regular expression"
  [ ! -e "$SERVER/images" ]
  [ ! -e "$SERVER/keys" ]
  printf 'this is = not [toml\n' >"$SERVER/cmdb/overlays/broken.toml"
  run conv
  [ "$status" -eq 2 ]
  assert_output --partial "broken.toml"
  [ ! -e "$SERVER/images" ]
}

@test "no candidate is exit 4; an existing image is exit 6 without --force" {
  mkdir -p "$WORK/tiny/etc" "$WORK/other"
  echo 'ID=debian' >"$WORK/tiny/etc/os-release"
  planb-capture --store "$WORK/other/store" --host web2 "$WORK/tiny" >/dev/null
  run planb-convert --server "$WORK/other" --host web2
  [ "$status" -eq 4 ]
  assert_output --partial "no candidate"
  run planb-convert --server "$SERVER" --host nosuch
  [ "$status" -eq 4 ]
  mkdir -p "$IMG"
  echo old >"$IMG/disk.qcow2"
  run conv
  [ "$status" -eq 6 ]
  assert_output --partial "--force"
  [ "$(cat "$IMG/disk.qcow2")" = old ]
  run conv --force
  assert_success
  qemu-img check -q "$IMG/disk.qcow2"
}

@test "kill -9 during convert never leaves an image that looks complete; a re-run completes" {
  for delay in 0.5 2 4 6; do
    planb-convert --server "$SERVER" --host web1 >"$WORK/conv.out" 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # The tools it ran (mke2fs, qemu-img) die with it.
    sleep 0.5
    ! pgrep -f "mke2fs.*$SERVER|qemu-img.*$SERVER|mke2fs.*\.convert-1-$pid|qemu-img.*\.convert-1-$pid" || fail "a tool outlived planb-convert"
    if [ -e "$IMG/disk.qcow2" ]; then
      # It finished before the kill: the image must then be complete.
      qemu-img check -q "$IMG/disk.qcow2"
      rm -f "$IMG/disk.qcow2"
    fi
    [ ! -e "$IMG/disk.qcow2" ]
    ls -a "$IMG" | grep -v '^\.\.\?$' | grep -v '^\.convert' | grep -v '^explain.json$' && fail "unexpected files in $IMG"
  done
  run conv
  assert_success
  qemu-img check -q "$IMG/disk.qcow2"
  [ -s "$IMG/explain.json" ]
  assert_no_leftovers
}
