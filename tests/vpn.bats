#!/usr/bin/env bats
# planb-invoke vpn: WireGuard access to the rescue network, with the real
# wireguard-go (userspace; no kernel module needed) and network namespaces.
#   rescue namespace  bridge 10.99.0.1/24 (as the rescue platform makes it)
#   vm namespace      10.99.0.11 on that bridge, a web server on :8080
#   staff namespace   a veth pair to the host namespace (a /30 in
#                     192.168.77.0/24), its own wireguard-go with a peer's file
# The platform's wireguard-go runs in the host namespace (its UDP socket is
# there) with its interface moved into the rescue namespace. Traffic stays in
# the namespaces the test creates. The last test runs on the qemu rescue platform's own
# network (tests/tools/rescue-platform-driver): dnsmasq answers names through the tunnel.

load 'helpers/common'

setup_file() {
  require_root
  command -v wireguard-go >/dev/null && command -v wg >/dev/null || skip "wireguard-go/wg not installed (scripts/deps test)"
  local d=$BATS_FILE_TMPDIR r=$RANDOM
  export TAG=$(printf '%04x' $((r % 65536)))
  export RESCUE_NS=pbvr-$TAG VM_NS=pbvm-$TAG
  echo "$RESCUE_NS $VM_NS" >"$d/netns"
  ip netns add "$RESCUE_NS"
  ip netns add "$VM_NS"
  ip -n "$RESCUE_NS" link set lo up
  ip -n "$VM_NS" link set lo up
  ip -n "$RESCUE_NS" link add br0 type bridge
  ip -n "$RESCUE_NS" addr add 10.99.0.1/24 dev br0
  ip -n "$RESCUE_NS" link set br0 up
  ip -n "$RESCUE_NS" link add vm0 type veth peer name eth0 netns "$VM_NS"
  ip -n "$RESCUE_NS" link set vm0 master br0 up
  ip -n "$VM_NS" addr add 10.99.0.11/24 dev eth0
  ip -n "$VM_NS" link set eth0 up
  ip -n "$VM_NS" route add default via 10.99.0.1
  mkdir -p "$d/www"
  echo "rescue web $TAG" >"$d/www/index.html"
  ip netns exec "$VM_NS" "$PY" -m http.server --bind 10.99.0.11 --directory "$d/www" 8080 \
    </dev/null >"$d/http.log" 2>&1 &
  echo $! >"$d/http.pid"
  local i
  for i in $(seq 100); do
    ip netns exec "$VM_NS" curl -s -o /dev/null http://10.99.0.11:8080/ && break
    sleep 0.1
  done
}

teardown_file() {
  local d=$BATS_FILE_TMPDIR ns
  [ -f "$d/http.pid" ] && kill "$(cat "$d/http.pid")" 2>/dev/null
  if [ -f "$d/netns" ]; then
    for ns in $(cat "$d/netns"); do ip netns del "$ns" 2>/dev/null; done
  fi
  return 0
}

setup() {
  require_root
  common_setup
  SERVER=$WORK/server
  ID=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  IFACE=pbwg-${ID:0:8}
  mkdir -p "$SERVER/invocations/$ID"
  # A UDP port nobody listens on.
  PORT=$((20000 + RANDOM % 30000))
  while ss -Hlun "sport = :$PORT" | grep -q .; do PORT=$((20000 + RANDOM % 30000)); done
  write_cmdb "$WORK/acme.toml"
  export SERVER ID IFACE PORT
}

teardown() {
  [ -n "${ID:-}" ] && planb-invoke vpn "$ID" --server "$SERVER" --down >/dev/null 2>&1
  [ -f "$WORK/staff-wg.pid" ] && kill "$(cat "$WORK/staff-wg.pid")" 2>/dev/null
  [ -n "${STAFF_NS:-}" ] && ip netns del "$STAFF_NS" 2>/dev/null
  [ -n "${VETH:-}" ] && ip link del "$VETH" 2>/dev/null
  if [ -f "$WORK/platform-net" ]; then
    rescue-platform-driver --backend qemu net-down --id "$(cat "$WORK/platform-net")" --cidr 10.99.0.0/24 \
      --gateway 10.99.0.1 --domain acme.rescue --run-dir "$(cat "$WORK/platform-run")" >/dev/null 2>&1
  fi
  [ -f "$WORK/platform-run" ] && rm -rf "$(cat "$WORK/platform-run")"
  return 0
}

write_cmdb() {
  cat >"$1" <<EOF
customer = "acme"
[rescue]
network = "10.99.0.0/24"
[vpn]
listen_port = $PORT
endpoint = "rescue.example"
network = "10.98.0.0/24"
  [[vpn.peer]]
  name = "office"
  allowed_ips = ["192.168.10.0/24"]
  [[vpn.peer]]
  name = "alice-laptop"
[[host]]
name = "web"
address = "10.99.0.11"
EOF
}

vpn() { planb-invoke vpn "$ID" --server "$SERVER" "$@"; }
configure() { vpn --configure --cmdb "$WORK/acme.toml" "$@"; }
VPN_DIR() { echo "$SERVER/invocations/$ID/vpn"; }

# A member of staff's machine: a namespace joined to the host namespace by a
# veth pair, running wireguard-go with PEER's file (wg-quick keys stripped,
# Endpoint = the host side of the veth pair).
start_staff() {
  local peer=$1 addr
  STAFF_NS=pbvs-$TAG-${ID:0:4}
  VETH=pbvh${ID:0:8}
  local off=$((4 * (RANDOM % 64)))
  HOST_IP=192.168.77.$((off + 1))
  local staff_ip=192.168.77.$((off + 2))
  ip netns add "$STAFF_NS"
  ip -n "$STAFF_NS" link set lo up
  ip link add "$VETH" type veth peer name eth0 netns "$STAFF_NS"
  ip addr add "$HOST_IP/30" dev "$VETH"
  ip link set "$VETH" up
  ip -n "$STAFF_NS" addr add "$staff_ip/30" dev eth0
  ip -n "$STAFF_NS" link set eth0 up
  local conf=$(VPN_DIR)/peers/$peer.conf
  addr=$(sed -n 's/^Address = //p' "$conf")
  grep -v -e '^Address' -e '^DNS' "$conf" | sed "s/^Endpoint = .*/Endpoint = $HOST_IP:$PORT/" >"$WORK/staff.conf"
  STAFF_IF=pbws${ID:0:8}
  ip netns exec "$STAFF_NS" wireguard-go -f "$STAFF_IF" </dev/null >"$WORK/staff-wg.log" 2>&1 &
  echo $! >"$WORK/staff-wg.pid"
  local i
  for i in $(seq 100); do
    ip -n "$STAFF_NS" link show "$STAFF_IF" >/dev/null 2>&1 && wg show "$STAFF_IF" >/dev/null 2>&1 && break
    sleep 0.1
  done
  wg setconf "$STAFF_IF" "$WORK/staff.conf"
  ip -n "$STAFF_NS" addr add "$addr" dev "$STAFF_IF"
  ip -n "$STAFF_NS" link set "$STAFF_IF" up
  ip -n "$STAFF_NS" route add 10.99.0.0/24 dev "$STAFF_IF"
}

# A process that runs (a zombie does not: whoever inherited it may reap it late).
alive() { local st; st=$(ps -o stat= -p "$1") && [[ $st != Z* ]]; }

staff_curl() { ip netns exec "$STAFF_NS" curl -sS -m 5 --retry 3 --retry-all-errors "$@"; }

@test "vpn --configure: one 0600 file per peer, distinct keys, the platform's key as wg derives it" {
  run configure
  assert_success
  assert_output --partial "VPN $IFACE (customer acme"
  assert_output --partial "office"
  assert_output --partial "alice-laptop"
  local d=$(VPN_DIR)
  [ "$(ls "$d/peers" | grep -c '\.conf$')" -eq 2 ]
  for f in "$d/peers/office.conf" "$d/peers/alice-laptop.conf" "$d/server.conf" "$d/keys/server.key"; do
    [ "$(stat -c %a "$f")" = 600 ] || { echo "$f is mode $(stat -c %a "$f")"; false; }
  done
  [ "$(stat -c %a "$d")" = 700 ]
  # Three distinct private keys (platform, office, alice-laptop).
  local keys=$(cat "$d/server.conf" "$d/peers/"*.conf | sed -n 's/^PrivateKey = //p' | sort -u | wc -l)
  [ "$keys" -eq 3 ]
  # The platform's public key in each peer file is what wg derives from server.conf's key.
  local pub=$(sed -n 's/^PrivateKey = //p' "$d/server.conf" | wg pubkey)
  grep -qx "PublicKey = $pub" "$d/peers/office.conf"
  grep -qx "Endpoint = rescue.example:$PORT" "$d/peers/office.conf"
  grep -qx "AllowedIPs = 10.99.0.0/24, 10.98.0.0/24" "$d/peers/alice-laptop.conf"
  grep -qx "DNS = 10.99.0.1" "$d/peers/alice-laptop.conf"
  # Each peer's key pair matches the server side's [Peer] entry.
  local opub=$(sed -n 's/^PrivateKey = //p' "$d/peers/office.conf" | wg pubkey)
  grep -qx "PublicKey = $opub" "$d/server.conf"
  grep -qx "AllowedIPs = 10.98.0.2/32, 192.168.10.0/24" "$d/server.conf"
  if command -v qrencode >/dev/null; then
    [ "$(head -c 4 "$d/peers/office.png" | od -An -c | tr -d ' ')" = '211PNG' ]
    [ "$(stat -c %a "$d/peers/office.png")" = 600 ]
  fi
}

@test "vpn --configure again keeps every key; --json and --peer show the files" {
  configure >/dev/null
  local d=$(VPN_DIR)
  local before=$(cat "$d/keys/"* "$d/peers/"*.conf "$d/server.conf" | sha256sum)
  run configure --json
  assert_success
  [ "$(cat "$d/keys/"* "$d/peers/"*.conf "$d/server.conf" | sha256sum)" = "$before" ]
  [ "$(json_field interface)" = "$IFACE" ]
  [ "$(json_field running)" = false ]
  run vpn --peer alice-laptop
  assert_success
  [ "$output" = "$(cat "$d/peers/alice-laptop.conf")" ]
  run vpn --peer alice-laptop --json
  assert_success
  [ "$(json_field address)" = 10.98.0.3 ]
  if command -v qrencode >/dev/null; then
    run vpn --peer office --qr
    assert_success
    assert_output --partial "█"
  fi
}

@test "vpn refuses: unknown invocation (4), unknown peer (4), --qr without --peer (2), not configured (4)" {
  run planb-invoke vpn 00000000ffffffff --server "$SERVER"
  assert_failure 4
  run vpn
  assert_failure 4
  assert_output --partial "VPN not configured"
  configure >/dev/null
  run vpn --peer nobody
  assert_failure 4
  run vpn --qr
  assert_failure 2
  run planb-invoke vpn "not-an-id" --server "$SERVER"
  assert_failure 2
  run vpn --up --netns pbv-no-such-ns
  assert_failure 4
  run vpn --down
  assert_success
}

@test "staff reach a rescue VM's web page through the tunnel; --down removes interface and process" {
  configure >/dev/null
  run vpn --up --netns "$RESCUE_NS"
  assert_success
  local d=$(VPN_DIR) pid
  pid=$(cat "$d/wireguard-go.pid")
  # wireguard-go lives in the host namespace (its UDP socket there), its
  # interface in the rescue namespace with the platform's tunnel address.
  ss -Hlunp "sport = :$PORT" | grep -q "pid=$pid,"
  run ! ip link show "$IFACE" >/dev/null 2>&1
  ip -n "$RESCUE_NS" -4 addr show dev "$IFACE" | grep -q "inet 10.98.0.1/24"
  # The site peer's network is routed into the tunnel.
  ip -n "$RESCUE_NS" route show 192.168.10.0/24 | grep -q "dev $IFACE"
  run vpn --json
  [ "$(json_field running)" = true ]

  start_staff alice-laptop
  run staff_curl http://10.99.0.11:8080/
  assert_success
  assert_output "rescue web $TAG"
  # The platform saw alice-laptop's handshake (and the office's never happened).
  local apub=$(sed -n 's/^PrivateKey = //p' "$d/peers/alice-laptop.conf" | wg pubkey)
  local opub=$(sed -n 's/^PrivateKey = //p' "$d/peers/office.conf" | wg pubkey)
  wg show "$IFACE" latest-handshakes | grep -q "^$apub[[:space:]][1-9]"
  wg show "$IFACE" latest-handshakes | grep -q "^$opub[[:space:]]0\$"

  # --up again re-applies and keeps the same process.
  run vpn --up --netns "$RESCUE_NS"
  assert_success
  [ "$(cat "$d/wireguard-go.pid")" = "$pid" ]

  run vpn --down
  assert_success
  run ! alive "$pid"
  run ! ip -n "$RESCUE_NS" link show "$IFACE" >/dev/null 2>&1
  run ! ip link show "$IFACE" >/dev/null 2>&1
  [ ! -e "/var/run/wireguard/$IFACE.sock" ]
  [ ! -e "$d/wireguard-go.pid" ]
  run ip netns exec "$STAFF_NS" curl -sS -m 3 http://10.99.0.11:8080/
  assert_failure
  run vpn --down
  assert_success
}

@test "vpn --up that fails half-way leaves nothing running" {
  configure >/dev/null
  local d=$(VPN_DIR)
  echo "Bogus = 1" >>"$d/server.conf"
  run vpn --up --netns "$RESCUE_NS"
  assert_failure
  assert_output --partial "failed to configure $IFACE"
  [ ! -e "$d/wireguard-go.pid" ]
  run ! ip -n "$RESCUE_NS" link show "$IFACE"
  run ! ip link show "$IFACE"
  run ! pgrep -f "wireguard-go -f $IFACE\$"
}

@test "a peer with the wrong key gets nothing through" {
  configure >/dev/null
  vpn --up --netns "$RESCUE_NS" >/dev/null
  start_staff alice-laptop
  # Replace the staff side's private key by a fresh one: the platform must drop it.
  wg set "$STAFF_IF" private-key <(wg genkey)
  run ip netns exec "$STAFF_NS" curl -sS -m 3 http://10.99.0.11:8080/
  assert_failure
}

@test "on the qemu rescue platform's own network: default namespace, staff resolve a host's name through the tunnel" {
  command -v rescue-platform-driver >/dev/null || skip "rescue-platform-driver not built (PLANB_TESTS)"
  command -v dig >/dev/null || skip "dig not installed (scripts/deps test)"
  # dnsmasq drops to nobody: its hosts file must be reachable (bats' temp dir is 0700).
  local rdir net
  rdir=$(mktemp -d /var/tmp/planb-vpn-rescue.XXXXXX)
  chmod 755 "$rdir"
  echo "$rdir" >"$WORK/platform-run"
  net=(--id "${ID:0:8}" --cidr 10.99.0.0/24 --gateway 10.99.0.1 --domain acme.rescue --run-dir "$rdir"
       --lease web,52:54:00:00:99:11,10.99.0.11)
  echo "${ID:0:8}" >"$WORK/platform-net"
  rescue-platform-driver --backend qemu net-up "${net[@]}"
  configure >/dev/null
  # No --netns and no state.json: the platform's name for it, planb-<id8>.
  run vpn --up
  assert_success
  ip -n "planb-${ID:0:8}" link show "$IFACE" >/dev/null
  start_staff alice-laptop
  run ip netns exec "$STAFF_NS" dig +time=3 +tries=3 @10.99.0.1 web.acme.rescue
  output=$(printf "%s\n" "$output" | sed -n "s/^web.acme.rescue.*IN[[:space:]]*A[[:space:]]*//p")
  assert_success
  assert_output "10.99.0.11"
  vpn --down >/dev/null
  rescue-platform-driver --backend qemu net-down "${net[@]}"
  rm -f "$WORK/platform-net"
  rm -rf "$rdir" "$WORK/platform-run"
  [ ! -e "/run/netns/planb-${ID:0:8}" ]
}
