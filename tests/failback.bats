#!/usr/bin/env bats
# planb-invoke failback: the data changed on a rescue VM comes back to the new
# hardware -- changed, new, deleted files and metadata; never the P2V edits;
# refusals when the target is not what the VM started from; a second pass
# sends only what changed since the first; delivery to a directory and over
# ssh (a real sshd on loopback); and a real rescue VM (qemu, TCG) changed
# over ssh while failback reads it.

load 'helpers/common'
load 'helpers/servers'

setup() {
  require_root
  common_setup
  SERVER=$WORK/server
  ID=0123456789abcdef0123456789abcdef
  INV=$SERVER/invocations/$ID
  QSD_PIDS=()
  VM_PIDS=()
  SSHD_DIR=""
}

teardown() {
  local p
  for p in "${VM_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -n "$SSHD_DIR" ] && stop_sshd "$SSHD_DIR"
  umount_overlay
  # Nothing of failback's may stay mounted or attached.
  if [ -d "$INV" ]; then
    if grep -q " $INV" /proc/mounts; then
      echo "left mounted:" >&2
      grep " $INV" /proc/mounts >&2
      return 1
    fi
  fi
  return 0
}

# make_disk TREE QCOW2: an MBR disk with one ext4 partition holding TREE.
make_disk() {
  local tree=$1 out=$2 raw=$WORK/disk.raw
  rm -f "$raw"
  truncate -s 64M "$raw"
  echo 'start=2048, type=83' | sfdisk -q "$raw"
  mkfs.ext4 -q -F -d "$tree" -E offset=1048576 "$raw" 62M
  mkdir -p "$(dirname "$out")"
  qemu-img convert -O qcow2 "$raw" "$out"
  rm -f "$raw"
}

# mount_overlay QCOW2 DIR: mounts the disk's partition read-write (through
# qemu-storage-daemon's FUSE export), as a running VM would write it.
mount_overlay() {
  local img=$1 dir=$2
  OV_RAW=$WORK/ov.raw
  : >"$OV_RAW"
  qemu-storage-daemon --blockdev "driver=file,filename=$img,node-name=f" \
    --blockdev driver=qcow2,file=f,node-name=q \
    --export "type=fuse,id=e,node-name=q,mountpoint=$OV_RAW,writable=on" \
    --daemonize --pidfile "$WORK/ov.pid"
  OV_LOOP=$(losetup -f --show -o 1048576 "$OV_RAW")
  mkdir -p "$dir"
  mount "$OV_LOOP" "$dir"
  OV_MNT=$dir
}

umount_overlay() {
  if [ -n "${OV_MNT:-}" ]; then umount "$OV_MNT" 2>/dev/null || true; OV_MNT=""; fi
  if [ -n "${OV_LOOP:-}" ]; then losetup -d "$OV_LOOP" 2>/dev/null || true; OV_LOOP=""; fi
  if [ -f "$WORK/ov.pid" ]; then
    local p
    p=$(cat "$WORK/ov.pid")
    kill "$p" 2>/dev/null || true
    # it writes the qcow2 out before it exits: wait for that
    for _ in $(seq 1 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    rm -f "$WORK/ov.pid"
  fi
}

# state_json PID QMP: the orchestrator's state.json for host db.
state_json() {
  mkdir -p "$INV/vm/db"
  cat >"$INV/state.json" <<EOF
{"format": 1, "id": "$ID", "customer": "acme", "mode": "real", "backend": "qemu",
 "hosts": [{"name": "db", "sequence": 1, "image": "$SERVER/repository/db/1.qcow2",
            "overlay": "$INV/vm/db/disk.qcow2", "qmp": "${2:-$INV/vm/db/qmp.sock}",
            "pid": ${1:-0}, "state": "verified"}]}
EOF
}

# The protected server's tree (what the good snapshot restores on new hardware),
# the image planb-convert made of it (with P2V edits), and a rescue overlay.
setup_rescue() {
  local orig=$WORK/orig img=$WORK/img
  mkdir -p "$orig/etc/network" "$orig/data/old" "$orig/var/log/journal/abc" "$orig/srv"
  echo "UUID=physical-root / ext4 defaults 0 1" >"$orig/etc/fstab"
  echo "iface enp3s0 inet static" >"$orig/etc/network/interfaces"
  printf 'id,name\n1,alice\n' >"$orig/data/records.csv"
  echo "to be deleted" >"$orig/data/old/gone.txt"
  echo "renamed later" >"$orig/data/a.txt"
  random_file "$orig/data/big.bin" 3000000
  echo "same" >"$orig/srv/unchanged"
  chmod 0640 "$orig/data/records.csv"
  touch -d '2024-01-02 03:04:05' "$orig/data/records.csv" "$orig/data/a.txt" "$orig/srv/unchanged"
  # The new hardware: restored from the good snapshot (no P2V edits).
  TARGET=$WORK/target
  cp -a "$orig" "$TARGET"
  # The image: the same tree plus planb-convert's edits.
  cp -a "$orig" "$img"
  echo "UUID=rescue-root / ext4 defaults 0 1" >"$img/etc/fstab"
  echo "iface ens3 inet dhcp" >"$img/etc/network/interfaces"
  mkdir -p "$img/root/.ssh"
  echo "ssh-ed25519 AAAA test-agent" >"$img/root/.ssh/authorized_keys"
  make_disk "$img" "$SERVER/repository/db/1.qcow2"
  mkdir -p "$SERVER/images/db/1"
  cat >"$SERVER/images/db/1/explain.json" <<'EOF'
{"format": 1, "host": "db", "snapshot": 1,
 "overlays": [{"name": "debian", "applied": true, "changes": [
   {"action": "write", "file": "/etc/fstab"}, {"action": "write", "file": "/etc/network/interfaces"},
   {"action": "write", "file": "/root/.ssh/authorized_keys"}]}],
 "initramfs": []}
EOF
  state_json
  qemu-img create -q -f qcow2 -b "$SERVER/repository/db/1.qcow2" -F qcow2 "$INV/vm/db/disk.qcow2"
  sha256sum "$SERVER/repository/db/1.qcow2" >"$WORK/image.sha"
}

# What the customer does on the rescue VM.
change_on_rescue() {
  local m=$WORK/rescue
  mount_overlay "$INV/vm/db/disk.qcow2" "$m"
  printf 'id,name\n1,alice\n2,bob\n' >"$m/data/records.csv"
  chmod 0600 "$m/data/records.csv"
  touch -d '2025-06-07 08:09:10' "$m/data/records.csv"
  echo "new order" >"$m/data/new.txt"
  mkdir -p "$m/data/uploads"
  echo "scan" >"$m/data/uploads/scan.pdf"
  ln -s ../records.csv "$m/data/uploads/link"
  setfattr -n user.planb -v failback "$m/data/new.txt"
  rm -rf "$m/data/old"
  mv "$m/data/a.txt" "$m/data/b.txt"
  # a few bytes changed in the middle of a big file (a delta)
  printf 'XXXXXXXX' | dd of="$m/data/big.bin" bs=1 seek=1500000 conv=notrunc status=none
  # P2V-edited file changed again on the rescue VM: must not come back
  echo "iface ens3 inet static" >"$m/etc/network/interfaces"
  # runtime noise
  echo "journal" >"$m/var/log/journal/abc/system.journal"
  umount_overlay
}

fb() { planb-invoke failback db --server "$SERVER" "$@"; }

# The rescue disk's tree (read-only) for comparisons.
dump_rescue() {
  local m=$WORK/rescue-ro
  mount_overlay "$INV/vm/db/disk.qcow2" "$m"
  treedump "$m/data" >"$WORK/rescue.dump"
  umount_overlay
}

@test "failback --to DIR: changed, new, deleted, renamed files and metadata arrive; P2V edits and noise do not" {
  setup_rescue
  change_on_rescue
  run -0 fb --to "$TARGET" --json
  echo "$output"
  passes=$(json_field passes)
  kind=$(echo "$passes" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["kind"])')
  assert_equal "$kind" bulk
  deleted=$(echo "$passes" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["deleted"])')
  assert_equal "$deleted" 3   # data/old, data/old/gone.txt, data/a.txt
  skipped=$(echo "$passes" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["skipped"])')
  assert_equal "$skipped" "['/etc/network/interfaces']"
  # /data on the target is now exactly the rescue VM's /data (content, mode, owner, mtime, xattrs)
  dump_rescue
  treedump "$TARGET/data" >"$WORK/target.dump"
  assert_same_dump "$WORK/rescue.dump" "$WORK/target.dump"
  [ ! -e "$TARGET/data/old" ]
  [ ! -e "$TARGET/data/a.txt" ]
  assert_equal "$(cat "$TARGET/data/b.txt")" "renamed later"
  assert_equal "$(getfattr --only-values -n user.planb "$TARGET/data/new.txt")" failback
  # The new hardware's own configuration stays; the P2V edits never come back.
  assert_equal "$(cat "$TARGET/etc/fstab")" "UUID=physical-root / ext4 defaults 0 1"
  assert_equal "$(cat "$TARGET/etc/network/interfaces")" "iface enp3s0 inet static"
  [ ! -e "$TARGET/root/.ssh/authorized_keys" ]
  [ ! -e "$TARGET/var/log/journal/abc/system.journal" ]
  # Nothing of the image or the overlay was changed; work files are gone.
  sha256sum -c "$WORK/image.sha"
  [ ! -e "$INV/failback/db/mnt" ]
  [ ! -e "$INV/failback/db/receive" ]
}

@test "failback refuses when the target differs from the image at a path to replace; --force replaces" {
  setup_rescue
  change_on_rescue
  echo "changed on the new hardware" >"$TARGET/data/records.csv"
  echo "mine" >"$TARGET/data/new.txt"
  run -6 fb --to "$TARGET"
  assert_output --partial "failed to fail back db: the target differs"
  assert_output --partial "/data/records.csv: content differs on the target"
  assert_output --partial "/data/new.txt: exists on the target but not in the image"
  # nothing was written
  assert_equal "$(cat "$TARGET/data/new.txt")" mine
  [ -e "$TARGET/data/old/gone.txt" ]
  run -0 fb --to "$TARGET" --force
  assert_output --partial "replaced (--force): /data/records.csv"
  assert_equal "$(cat "$TARGET/data/records.csv")" "$(printf 'id,name\n1,alice\n2,bob')"
  assert_equal "$(cat "$TARGET/data/new.txt")" "new order"
  [ ! -e "$TARGET/data/old" ]
}

@test "failback: a second pass sends only what changed since the first; --final ends it" {
  setup_rescue
  change_on_rescue
  run -0 fb --to "$TARGET" --json
  first_files=$(json_field passes | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["files"])')
  [ "$first_files" -ge 5 ]
  m=$WORK/rescue
  mount_overlay "$INV/vm/db/disk.qcow2" "$m"
  echo "late order" >"$m/data/late.txt"
  umount_overlay
  run -0 fb --to "$TARGET" --final --json
  echo "$output"
  p=$(json_field passes)
  assert_equal "$(echo "$p" | python3 -c 'import json,sys; d=json.load(sys.stdin)[0]; print(d["kind"], d["files"], d["deleted"], d["base_snapshot"] < d["snapshot"])')" "final 1 0 True"
  assert_equal "$(cat "$TARGET/data/late.txt")" "late order"
  # After the final pass, another is refused.
  run -6 fb --to "$TARGET"
  assert_output --partial "final pass was already delivered"
  # Each pass is in the invocation's hash-chained audit log.
  run -0 planb-invoke audit --server "$SERVER" --invocation "$ID"
  assert_equal "$(grep -c 'failback.pass' <<<"$output")" 2
}

@test "failback --cutover: a bulk pass then the final pass in one run; a second failback of the host waits its turn" {
  setup_rescue
  change_on_rescue
  run -0 fb --to "$TARGET" --cutover --json
  p=$(json_field passes)
  assert_equal "$(echo "$p" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d), d[0]["kind"], d[1]["kind"], d[1]["files"], d[1]["deleted"])')" "2 bulk final 0 0"
  assert_equal "$(cat "$TARGET/data/new.txt")" "new order"
  # One failback of a host at a time (flock on failback/HOST/lock): exit 7.
  exec 8>"$INV/failback/db/lock"
  flock 8
  run -7 fb --to "$WORK/elsewhere"
  exec 8>&-
}

@test "failback --to ssh://: the target's planb-invoke failback-receive applies the stream" {
  setup_rescue
  change_on_rescue
  SSHD_DIR=$WORK/sshd
  start_sshd "$SSHD_DIR"
  bin=$(command -v planb-invoke)
  run -0 fb --to "ssh://root@127.0.0.1:$SSH_PORT$TARGET" --identity "$SSH_KEY" --known-hosts "$SSH_KNOWN" \
    --remote-command "$bin" --json
  echo "$output"
  dump_rescue
  treedump "$TARGET/data" >"$WORK/target.dump"
  assert_same_dump "$WORK/rescue.dump" "$WORK/target.dump"
  assert_equal "$(cat "$TARGET/etc/network/interfaces")" "iface enp3s0 inet static"
  # A refusal on the far side comes back with its message and exit code.
  m=$WORK/rescue
  mount_overlay "$INV/vm/db/disk.qcow2" "$m"
  echo "again" >"$m/data/new.txt"
  umount_overlay
  echo "edited on the target" >"$TARGET/data/new.txt"
  run -6 fb --to "ssh://root@127.0.0.1:$SSH_PORT$TARGET" --identity "$SSH_KEY" --known-hosts "$SSH_KNOWN" \
    --remote-command "$bin"
  assert_output --partial "/data/new.txt: content differs on the target"
  # An unknown host key is refused (never trusted on first use).
  : >"$WORK/empty_known"
  run -1 fb --to "ssh://root@127.0.0.1:$SSH_PORT$TARGET" --identity "$SSH_KEY" --known-hosts "$WORK/empty_known" \
    --remote-command "$bin"
  assert_output --partial "over ssh"
}

@test "failback: --exclude keeps paths back; failback-receive rejects a damaged stream" {
  setup_rescue
  change_on_rescue
  run -0 fb --to "$TARGET" --exclude /data/uploads --exclude '*.txt'
  [ ! -e "$TARGET/data/uploads" ]
  [ ! -e "$TARGET/data/new.txt" ]
  [ -e "$TARGET/data/a.txt" ]   # the rename's new name is excluded, so its old name stays
  assert_equal "$(sed -n 3p "$TARGET/data/records.csv")" "2,bob"
  run -5 planb-invoke failback-receive "$TARGET" < <(printf 'planb-failback 1\nkind 5\napply')
  assert_output --partial "failed to read the failback stream"
  run -5 planb-invoke failback-receive "$TARGET" < <(printf 'something else\n')
  assert_output --partial "not a failback stream"
}

# --- a real rescue VM ----------------------------------------------------------

# ssh into the rescue VM as root with the fixture's test-agent key.
vm_ssh() {
  ssh -i "$FIX/test-agent" -p "$VM_SSH" -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 -o LogLevel=ERROR root@127.0.0.1 "$@"
}

@test "failback of a running rescue VM (qemu): pass 1 while it runs, then --final stops it; both changes arrive" {
  FIX=$("$BATS_TEST_DIRNAME/fixtures/build-rescue-sample" | tail -n 1)
  mkdir -p "$SERVER/repository/db"
  cp "$FIX/db.qcow2" "$SERVER/repository/db/1.qcow2"
  sha256sum "$SERVER/repository/db/1.qcow2" >"$WORK/image.sha"
  mkdir -p "$INV/vm/db"
  qemu-img create -q -f qcow2 -b "$SERVER/repository/db/1.qcow2" -F qcow2 "$INV/vm/db/disk.qcow2"
  # The new hardware: the image's file system as restored there.
  qemu-img create -q -f qcow2 -b "$SERVER/repository/db/1.qcow2" -F qcow2 "$WORK/view.qcow2"
  mount_overlay "$WORK/view.qcow2" "$WORK/view"
  TARGET=$WORK/target
  cp -a "$WORK/view" "$TARGET"
  umount_overlay
  grep -q . "$TARGET/data/records"
  VM_SSH=$(free_port)
  accel=tcg
  [ -w /dev/kvm ] && accel=kvm
  qemu-system-x86_64 -machine pc,accel=$accel -m 256 -smp 1 \
    -drive "file=$INV/vm/db/disk.qcow2,format=qcow2,if=virtio" \
    -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$VM_SSH-:22" -device virtio-net-pci,netdev=n0 \
    -display none -serial "file:$INV/vm/db/serial.log" -qmp "unix:$INV/vm/db/qmp.sock,server=on,wait=off" \
    </dev/null >"$WORK/qemu.out" 2>&1 3>&- &
  pid=$!
  VM_PIDS+=("$pid")
  state_json "$pid"
  for i in $(seq 1 90); do
    vm_ssh true 2>/dev/null && break
    kill -0 "$pid"
    sleep 2
  done
  vm_ssh 'echo "4,dave" >>/disk/data/records && sync'
  run -0 fb --to "$TARGET" --json
  echo "$output"
  p=$(json_field passes)
  assert_equal "$(echo "$p" | python3 -c 'import json,sys; d=json.load(sys.stdin)[0]; print(d["kind"], d["vm"].startswith("running"))')" "bulk True"
  grep -q '^4,dave$' "$TARGET/data/records"
  kill -0 "$pid"                               # still running
  vm_ssh 'echo "late order" >/disk/data/late && sync'
  run -0 fb --to "$TARGET" --final --json
  echo "$output"
  p=$(json_field passes)
  assert_equal "$(echo "$p" | python3 -c 'import json,sys; d=json.load(sys.stdin)[0]; print(d["kind"], d["files"], d["stop"], d["downtime_seconds"] > 0)')" "final 1 powerdown True"
  assert_equal "$(cat "$TARGET/data/late")" "late order"
  grep -q '^4,dave$' "$TARGET/data/records"
  ! kill -0 "$pid" 2>/dev/null
  sha256sum -c "$WORK/image.sha"
}
