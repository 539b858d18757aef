# Boot a disk image in qemu for the end-to-end tests, and probe it from the host, on loopback only.
#
#   vm_boot DIR IMAGE      starts qemu-system-x86_64 in the background on a copy-on-write view of
#                          IMAGE (snapshot=on: the image is never written), KVM if /dev/kvm is
#                          usable, else TCG; 1 GiB RAM; virtio disk and NIC; user-mode network with
#                          restrict=on (no route out) and guest ports 80 and 22 forwarded to free
#                          loopback ports; no display window (VGA kept for screendumps); serial
#                          console to DIR/serial.log; QMP on DIR/qmp.sock.
#                          Sets VM_PID VM_HTTP_PORT VM_SSH_PORT VM_QMP VM_SERIAL VM_DIR.
#                          Format: raw for *.img / *.raw, else what qemu-img says (VM_FORMAT= overrides).
#   vm_alive               true while that qemu runs
#   vm_screendump FILE     the VGA screen as PNG (QMP screendump)
#   vm_stop                stops qemu (QMP quit, then SIGKILL) and waits for it
#   wait_http_body URL TEXT SECONDS
#                          polls URL until a response body contains TEXT (0), or SECONDS pass or
#                          the VM (if one runs) dies (1). The same probe passes against any working
#                          server (tests/sample-server.bats checks that against a real nginx).

_vm_py=/usr/bin/python3

_vm_free_port() {
  "$_vm_py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

vm_boot() {
  local dir=$1 image=$2 fmt accel=tcg
  mkdir -p "$dir"
  VM_DIR=$dir
  VM_QMP=$dir/qmp.sock
  VM_SERIAL=$dir/serial.log
  VM_HTTP_PORT=$(_vm_free_port)
  VM_SSH_PORT=$(_vm_free_port)
  fmt=${VM_FORMAT:-}
  if [ -z "$fmt" ]; then
    case $image in
      *.img|*.raw) fmt=raw ;;
      *) fmt=$(qemu-img info --output=json "$image" | "$_vm_py" -c 'import json,sys; print(json.load(sys.stdin)["format"])') ;;
    esac
  fi
  if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then accel=kvm; fi
  : >"$VM_SERIAL"
  qemu-system-x86_64 -machine pc,accel=$accel -m 1024 -smp 1 \
    -drive "file=$image,format=$fmt,if=virtio,snapshot=on" \
    -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$VM_HTTP_PORT-:80,hostfwd=tcp:127.0.0.1:$VM_SSH_PORT-:22" \
    -device virtio-net-pci,netdev=n0 \
    -display none -vga std \
    -serial "file:$VM_SERIAL" \
    -qmp "unix:$VM_QMP,server=on,wait=off" \
    </dev/null >"$dir/qemu.out" 2>&1 3>&- &
  VM_PID=$!
  echo "$VM_PID" >"$dir/qemu.pid"
  export VM_PID VM_HTTP_PORT VM_SSH_PORT VM_QMP VM_SERIAL VM_DIR
  local i
  for i in $(seq 1 100); do
    [ -S "$VM_QMP" ] && return 0
    vm_alive || { echo "qemu did not start:" >&2; cat "$dir/qemu.out" >&2; return 1; }
    sleep 0.1
  done
  echo "qemu opened no QMP socket" >&2
  return 1
}

vm_alive() { [ -n "${VM_PID:-}" ] && kill -0 "$VM_PID" 2>/dev/null; }

# _vm_qmp COMMAND-JSON...: runs QMP commands in order, prints each reply.
_vm_qmp() {
  "$_vm_py" - "$VM_QMP" "$@" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rw")
def reply():
    while True:
        m = json.loads(f.readline())
        if "return" in m or "error" in m:
            return m
f.readline()  # greeting
f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n"); f.flush(); reply()
for cmd in sys.argv[2:]:
    f.write(cmd + "\n"); f.flush()
    try:
        print(json.dumps(reply()))
    except (ValueError, OSError):
        print('{"return": {}}')  # quit closes the socket
EOF
}

vm_screendump() {
  local out
  out=$(_vm_qmp "{\"execute\": \"screendump\", \"arguments\": {\"filename\": \"$1\", \"format\": \"png\"}}")
  case $out in *'"error"'*) echo "screendump failed: $out" >&2; return 1 ;; esac
  [ -s "$1" ]
}

vm_stop() {
  vm_alive || return 0
  _vm_qmp '{"execute": "quit"}' >/dev/null 2>&1 || true
  local i
  for i in $(seq 1 50); do vm_alive || break; sleep 0.1; done
  vm_alive && kill -9 "$VM_PID" 2>/dev/null
  wait "$VM_PID" 2>/dev/null || true
  VM_PID=""
}

wait_http_body() {
  local url=$1 text=$2 limit=$3 body start=$SECONDS
  while (( SECONDS - start < limit )); do
    body=$(curl -s --max-time 5 "$url" 2>/dev/null || true)
    if [[ $body == *"$text"* ]]; then
      return 0
    fi
    if [ -n "${VM_PID:-}" ] && ! vm_alive; then
      echo "wait_http_body: the VM stopped" >&2
      return 1
    fi
    sleep 2
  done
  echo "wait_http_body: no body containing '$text' from $url within ${limit}s" >&2
  return 1
}
