# A libvirtd for tests, without systemd (PID 1 here is not systemd: nothing socket-activates
# libvirtd or virtlogd).
#
# libvirt_up DIR: when a system libvirtd already answers at qemu:///system, use it (and leave it
# running); otherwise start our own: virtlogd --daemon (libvirtd hands each domain's qemu
# stdout/stderr to it: without it `virsh create` fails with "Failed to connect socket to
# '/run/libvirt/virtlogd-sock'") and libvirtd --daemon with a private libvirtd.conf whose
# sockets live in DIR (root-only, no auth), reached as qemu+unix:///system?socket=DIR/libvirt-sock.
# The qemu driver's state (/run/libvirt, /var/lib/libvirt) is the system's: a privileged
# libvirtd has no switch for it. Exports PLANB_LIBVIRT_URI.
# libvirt_down: stops what libvirt_up started (by pid file), nothing else.
#
# DIR must be short (unix socket paths: 108 bytes).

export LIBVIRT_STARTED=${LIBVIRT_STARTED-}

libvirt_up() {
  local dir=$1 i
  mkdir -p "$dir"
  if virsh -q -c qemu:///system uri >/dev/null 2>&1; then
    export PLANB_LIBVIRT_URI=qemu:///system
    return 0
  fi
  command -v libvirtd >/dev/null || { echo "libvirtd missing (libvirt-daemon-system)" >&2; return 1; }
  if ! [ -S /run/libvirt/virtlogd-sock ]; then
    virtlogd --daemon --pid-file "$dir/virtlogd.pid" || return 1
    LIBVIRT_STARTED+=" $dir/virtlogd.pid"
  fi
  cat >"$dir/libvirtd.conf" <<EOF
unix_sock_dir = "$dir"
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:$dir/libvirtd.log"
EOF
  libvirtd --daemon --config "$dir/libvirtd.conf" --pid-file "$dir/libvirtd.pid" || return 1
  LIBVIRT_STARTED="$dir/libvirtd.pid$LIBVIRT_STARTED"
  export PLANB_LIBVIRT_URI="qemu+unix:///system?socket=$dir/libvirt-sock"
  for i in $(seq 1 100); do
    virsh -q -c "$PLANB_LIBVIRT_URI" uri >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "libvirtd did not answer on $dir/libvirt-sock:" >&2
  tail -n 20 "$dir/libvirtd.log" >&2
  return 1
}

libvirt_down() {
  local f pid i
  for f in $LIBVIRT_STARTED; do
    pid=$(cat "$f" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null || continue
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
  LIBVIRT_STARTED=""
}
