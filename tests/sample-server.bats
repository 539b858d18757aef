#!/usr/bin/env bats
# The sample "physical" server of issue 4 (tests/fixtures/build-sample-server): what its tree and
# disk image hold, and the "before" half of P2V: booted in a VM as it is, it does not come up.

load helpers/common
load helpers/qemu

setup_file() {
  [ "$(id -u)" -eq 0 ] || return 0
  local repo
  repo="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
  FIXTURE_SCRIPT=$repo/tests/fixtures/build-sample-server
  FIX=$("$FIXTURE_SCRIPT" | tail -n 1)
  export FIXTURE_SCRIPT FIX
}

setup() {
  require_root
  [ -n "${FIX:-}" ] && [ -d "$FIX/root" ] || fail "the sample server fixture was not built"
  T=$FIX/root
  WORK=$BATS_TEST_TMPDIR
}

teardown() {
  vm_stop
  [ -n "${NGINX_PID:-}" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  # part_loop runs in $(...): find its devices by their backing file.
  local l
  if [ -n "${FIX:-}" ]; then
    for l in $(losetup -j "$FIX/physical.img" -O NAME -n 2>/dev/null); do losetup -d "$l" 2>/dev/null; done
  fi
  true
}

info() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d"+sys.argv[2]))' "$FIX/info.json" "$1"; }

# A read-only loop device over partition N of physical.img (offset from the partition table).
part_loop() {
  local n=$1 start size dev
  start=$(sfdisk -J "$FIX/physical.img" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"][int(sys.argv[1])-1]; print(p["start"], p["size"])' "$n")
  size=${start#* }; start=${start% *}
  losetup -f --show -r -o $((start * 512)) --sizelimit $((size * 512)) "$FIX/physical.img"
}

@test "sample server: a warm build reuses the cache and prints the same directory" {
  run "$FIXTURE_SCRIPT"
  assert_success
  assert_equal "$(tail -n 1 <<<"$output")" "$FIX"
  [[ $FIX == */sample-server-* ]]
  for f in root physical.img info.json README; do [ -e "$FIX/$f" ]; done
  [ -z "$(ls -d "$(dirname "$FIX")"/.sample-server-*.tmp.* 2>/dev/null)" ]
}

@test "sample server: systemd is init, sshd and nginx are enabled, nginx serves the page" {
  [[ $(readlink "$T/usr/sbin/init") == *systemd* ]]
  [ -x "$T/usr/lib/systemd/systemd" ]
  [ -x "$T/usr/sbin/sshd" ]
  [ -e "$T/etc/systemd/system/multi-user.target.wants/ssh.service" ]
  [ -x "$T/usr/sbin/nginx" ]
  [ -e "$T/etc/systemd/system/multi-user.target.wants/nginx.service" ]
  grep -q 'listen 80 default_server' "$T/etc/nginx/sites-enabled/default"
  grep -q 'root /var/www/html' "$T/etc/nginx/sites-enabled/default"
  grep -q 'Plan B sample' "$T/var/www/html/index.html"
  [ -e "$T/etc/ssh/ssh_host_ed25519_key" ]
  grep -q 'root@web1' "$T/etc/ssh/ssh_host_ed25519_key.pub"
}

@test "sample server: identity: hostname web1, machine-id, root locked, a normal user" {
  assert_equal "$(cat "$T/etc/hostname")" web1
  grep -Eqx '[0-9a-f]{32}' "$T/etc/machine-id"
  assert_equal "$(cat "$T/etc/machine-id")" "$(info '["machine_id"]')"
  [[ $(grep '^root:' "$T/etc/shadow" | cut -d: -f2) == '!'* ]]
  grep -q '^webadmin:x:1000:1000:' "$T/etc/passwd"
  [ -d "$T/home/webadmin" ]
}

@test "sample server: /data holds data, records.csv over 1 MiB" {
  [ "$(stat -c %s "$T/data/records.csv")" -gt 1048576 ]
  head -n 1 "$T/data/records.csv" | grep -q '^id,date,customer,amount,status$'
  [ "$(wc -l <"$T/data/records.csv")" -gt 10000 ]
  [ "$(stat -c %s "$T/data/uploads/scan-0001.bin")" -gt 1048576 ]
  [ -s "$T/data/reports/2024-01.txt" ]
}

@test "sample server: Debian kernel and an initrd of the recorded version" {
  kver=$(info '["kernel_version"]')
  [[ $kver == *-amd64 ]]
  [ -s "$T/boot/vmlinuz-$kver" ]
  [ -s "$T/boot/initrd.img-$kver" ]
  [ -d "$T/usr/lib/modules/$kver/kernel/drivers/virtio" ]  # the kernel has virtio, as modules
  chroot "$T" dpkg-query -W -f '${Status}' linux-image-amd64 | grep -q 'install ok installed'
}

@test "sample server: initramfs.conf says MODULES=dep and the initrd has no virtio module" {
  grep -qx 'MODULES=dep' "$T/etc/initramfs-tools/initramfs.conf"
  kver=$(info '["kernel_version"]')
  lsinitramfs "$T/boot/initrd.img-$kver" >"$WORK/initrd.list"
  grep -q '/drivers/ata/ahci\.ko' "$WORK/initrd.list"
  grep -q '/fs/ext4/ext4\.ko' "$WORK/initrd.list"
  grep -q '/nvme\.ko' "$WORK/initrd.list"
  run grep -i virtio "$WORK/initrd.list"
  assert_failure
}

@test "sample server: fstab names root and /data by their UUIDs" {
  root_uuid=$(info '["root_uuid"]')
  data_uuid=$(info '["data_uuid"]')
  grep -Eq "^UUID=$root_uuid +/ +ext4 " "$T/etc/fstab"
  grep -Eq "^UUID=$data_uuid +/data +ext4 " "$T/etc/fstab"
  run grep -E '^/dev/' "$T/etc/fstab"
  assert_failure
}

@test "sample server: static address on enp3s0, no DHCP" {
  grep -q '^auto enp3s0$' "$T/etc/network/interfaces"
  grep -q '^iface enp3s0 inet static$' "$T/etc/network/interfaces"
  grep -Eq '^\s+address 192\.168\.10\.20/24$' "$T/etc/network/interfaces"
  grep -Eq '^\s+gateway 192\.168\.10\.1$' "$T/etc/network/interfaces"
  run grep dhcp "$T/etc/network/interfaces"
  assert_failure
  grep -q 'NAME="enp3s0"' "$T/etc/udev/rules.d/70-persistent-net.rules"
  assert_equal "$(info '["nic"]')" enp3s0
}

@test "sample server: no serial console, GRUB boots root=UUID quietly" {
  root_uuid=$(info '["root_uuid"]')
  kver=$(info '["kernel_version"]')
  grep -q "linux	/boot/vmlinuz-$kver root=UUID=$root_uuid ro quiet" "$T/boot/grub/grub.cfg"
  grep -q 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"' "$T/etc/default/grub"
  run grep -rs -e ttyS -e 'console=' "$T/boot/grub/grub.cfg" "$T/etc/default/grub" "$T/etc/systemd/system" "$T/etc/inittab"
  assert_failure
  run find "$T/etc/systemd/system" -name 'serial-getty*'
  assert_output ""
  [ -s "$T/boot/grub/i386-pc/core.img" ]
}

@test "physical.img: MBR with a bootable root partition and /data, carrying the fstab UUIDs" {
  sfdisk -J "$FIX/physical.img" >"$WORK/pt.json"
  python3 - "$WORK/pt.json" <<'EOF'
import json, sys
pt = json.load(open(sys.argv[1]))["partitiontable"]
assert pt["label"] == "dos", pt
p = pt["partitions"]
assert len(p) == 2, p
assert p[0].get("bootable") and p[0]["type"] == "83" and p[1]["type"] == "83", p
EOF
  # GRUB's boot code in the MBR
  head -c 440 "$FIX/physical.img" | grep -aq GRUB
  p1=$(part_loop 1)
  p2=$(part_loop 2)
  assert_equal "$(blkid -s UUID -o value "$p1")" "$(info '["root_uuid"]')"
  assert_equal "$(blkid -s UUID -o value "$p2")" "$(info '["data_uuid"]')"
  assert_equal "$(blkid -s TYPE -o value "$p1")" ext4
  dumpe2fs -h "$p2" 2>/dev/null | grep -q "Filesystem UUID: *$(info '["data_uuid"]')"
  # The disk holds the tree: same fstab on root, same records on /data, /data empty on root.
  debugfs -R 'cat /etc/fstab' "$p1" 2>/dev/null | cmp - "$T/etc/fstab"
  debugfs -R 'cat /records.csv' "$p2" 2>/dev/null | cmp - "$T/data/records.csv"
  run debugfs -R 'ls /data' "$p1"
  refute_output --partial records.csv
  debugfs -R 'stat /boot/grub/grub.cfg' "$p1" 2>/dev/null | grep -q 'Type: regular'
}

@test "the HTTP probe of the boot tests detects a working web server (and only that)" {
  # The same probe as the VM tests, against a real nginx serving the sample server's page.
  port=$(_vm_free_port)
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events {}
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server { listen 127.0.0.1:$port; root $T/var/www/html; }
}
EOF
  nginx -c "$WORK/nginx/nginx.conf" </dev/null >/dev/null 2>&1 3>&- &
  NGINX_PID=$!
  wait_http_body "http://127.0.0.1:$port/" "Plan B sample" 20
  run wait_http_body "http://127.0.0.1:$port/" "no such text" 4
  assert_failure
  kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true; NGINX_PID=""
  run wait_http_body "http://127.0.0.1:$port/" "Plan B sample" 4
  assert_failure
}

# P2V before/after (the disk as it is does not come up in a VM; the converted image
# does) is one test in tests/convert.bats, through planb-boot-test: one VM boot each
# way for the whole suite.
