# A real BIND (named) for the DNS redirection tests, on 127.0.0.1 only, started
# and stopped by the tests. Everything lives under DIR: named.conf, the zone
# and its journal, the TSIG key (tsig-keygen), a second key the server does not
# know (for the refused case), pid file and log.
#
#   start_bind DIR [ZONE_RECORDS]   -> BIND_PORT, BIND_KEY, BIND_BADKEY, BIND_ZONE, BIND_DIR
#   stop_bind DIR
#   restart_bind DIR                the same server again (zone and journal kept)
#   bdig NAME TYPE                  -> "TTL RDATA" lines (sorted), nothing if absent
#   bdig_many NAME TYPE [NAME TYPE...] -> "NAME TYPE TTL RDATA" lines (sorted), one dig
#
# named runs with -u root: the usual -u bind (chown DIR to bind) works only when
# every parent directory is searchable by user bind, and bats' temp dirs are 0700
# root-owned. It is a test server on 127.0.0.1, not a service.

free_port_udp_tcp() {
  # A port free for both TCP and UDP on 127.0.0.1.
  /usr/bin/python3 - <<'EOF'
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        t.close(); u.close(); continue
    t.close(); u.close(); print(p); break
EOF
}

# The zone's initial records (besides SOA and NS), one per line, relative to BIND_ZONE.
BIND_DEFAULT_RECORDS='www     300 IN A     192.0.2.10
mail    300 IN A     192.0.2.25
@       300 IN MX    10 mail.acme.example.
shop    300 IN CNAME www.acme.example.
@       300 IN TXT   "v=spf1 mx -all"'

start_bind() {
  local d=$1 records=${2-$BIND_DEFAULT_RECORDS}
  BIND_DIR=$d
  BIND_ZONE=acme.example.
  mkdir -p "$d"
  BIND_PORT=$(free_port_udp_tcp)
  tsig-keygen -a hmac-sha256 planb-update >"$d/update.key"
  tsig-keygen -a hmac-sha256 planb-update >"$d/wrong.key"   # same name, another secret
  tsig-keygen -a hmac-sha256 planb-stranger >"$d/stranger.key"  # a name the server does not know
  chmod 0600 "$d"/*.key
  cat >"$d/acme.example.zone" <<EOZ
\$ORIGIN acme.example.
\$TTL 300
@       IN SOA ns1.acme.example. hostmaster.acme.example. 1 3600 600 86400 60
@       IN NS  ns1.acme.example.
ns1     IN A   127.0.0.1
$records
EOZ
  cat >"$d/named.conf" <<EOC
include "$d/update.key";
options {
  directory "$d";
  pid-file "$d/named.pid";
  listen-on port $BIND_PORT { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  allow-query { 127.0.0.1; };
  allow-transfer { none; };
  notify no;
  dnssec-validation no;
  session-keyfile "$d/session.key";
  managed-keys-directory "$d";
};
controls { };
logging {
  channel log { file "$d/named.log"; severity info; print-time yes; };
  category default { log; };
};
zone "acme.example." {
  type primary;
  file "$d/acme.example.zone";
  journal "$d/acme.example.zone.jnl";
  allow-update { key planb-update; };
};
EOC
  named-checkconf "$d/named.conf" >&2 || return 1
  BIND_KEY=$d/update.key
  BIND_BADKEY=$d/wrong.key
  BIND_STRANGER=$d/stranger.key
  export BIND_DIR BIND_PORT BIND_KEY BIND_BADKEY BIND_STRANGER BIND_ZONE
  launch_bind "$d"
}

restart_bind() {
  stop_bind "$1"
  launch_bind "$1"
}

launch_bind() {
  local d=$1 i
  rm -f "$d/named.pid"
  /usr/sbin/named -c "$d/named.conf" -u root -n 1 >"$d/named.stdout" 2>&1 || { cat "$d/named.stdout" >&2; return 1; }
  for i in $(seq 1 100); do
    if dig @127.0.0.1 -p "$BIND_PORT" +tcp +norec +time=1 +tries=1 +short SOA "$BIND_ZONE" 2>/dev/null | grep -q ns1; then
      return 0
    fi
    sleep 0.1
  done
  echo "named did not answer on port $BIND_PORT; log:" >&2
  cat "$d/named.stdout" "$d/named.log" >&2 2>/dev/null
  return 1
}

stop_bind() {
  local d=$1 pid i
  [ -f "$d/named.pid" ] || return 0
  pid=$(cat "$d/named.pid")
  kill "$pid" 2>/dev/null || { rm -f "$d/named.pid"; return 0; }
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$d/named.pid"; return 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

# bdig NAME TYPE: the RRset as "TTL RDATA" lines, sorted (empty if absent).
bdig() {
  dig @127.0.0.1 -p "$BIND_PORT" +tcp +norec +time=2 +tries=1 +noall +answer "$1" "$2" |
    awk -v n="$1" -v t="$2" 'tolower($1) == tolower(n) && $4 == t { ttl = $2; $1 = $2 = $3 = $4 = ""; sub(/^ +/, ""); print ttl, $0 }' | sort
}

# bdig_many NAME TYPE [NAME TYPE...]: every RRset asked for, as "NAME TYPE TTL RDATA"
# lines (sorted; an absent RRset has none), in one dig run.
bdig_many() {
  local args=()
  while [ $# -ge 2 ]; do
    args+=("$1" "$2")
    shift 2
  done
  dig @127.0.0.1 -p "$BIND_PORT" +tcp +norec +time=2 +tries=1 +noall +answer "${args[@]}" |
    awk '{ n = $1; ttl = $2; t = $4; $1 = $2 = $3 = $4 = ""; sub(/^ +/, ""); print n, t, ttl, $0 }' | sort -u
}
