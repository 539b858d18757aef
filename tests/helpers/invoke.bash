# A Plan B server for planb-invoke tests: the three-host rescue sample
# (tests/fixtures/build-rescue-sample: db, app -> db, web -> app) promoted as each
# host's good image, a CMDB for customer acme, two of three executives' keys.
#
#   rescue_fixture                      -> RS (the fixture directory; built once, cached)
#   make_rescue_server SERVER [EXTRA]   server dir + cmdb/acme.toml (+ EXTRA TOML appended)
#   new_request SERVER MODE [ARGS…]     -> REQ (request id), REQ_FILE
#   approve_by SERVER REQ_FILE KEY…     approvals by those executives, submitted
#   invocation_cleanup SERVER           stops whatever an invocation left running

rescue_fixture() {
  RS=$("$BATS_TEST_DIRNAME/fixtures/build-rescue-sample")
  export RS
}

good_ref() {  # HOST IMAGE_FILE
  local srv=$1 h=$2 img=$3
  mkdir -p "$srv/repository/$h"
  cp --reflink=auto "$img" "$srv/repository/$h/1.qcow2"
  printf 'planb-good 1\nsequence=1\nimage=1.qcow2\nhash=%s\nreport=\npromoted=%s\n' \
    "$(b2sum -l 256 "$srv/repository/$h/1.qcow2" | cut -d' ' -f1)" "$(date +%s)" >"$srv/repository/$h/good"
}

make_rescue_server() {
  local srv=$1 extra=${2-}
  mkdir -p "$srv/keys" "$srv/cmdb" "$srv/execs"
  install -m 0600 "$RS/test-agent" "$srv/keys/test-agent"
  install -m 0644 "$RS/test-agent.pub" "$srv/keys/test-agent.pub"
  local h
  for h in db app web; do good_ref "$srv" "$h" "$RS/$h.qcow2"; done
  local x
  for x in alice bob carol; do planb-invoke keygen --out "$srv/execs/$x.key" >/dev/null; done
  cat >"$srv/cmdb/acme.toml" <<TOML
customer = "acme"

[rescue]
network = "10.99.0.0/24"
domain = "acme.rescue"

[authorisation]
quorum = 2
  [[authorisation.executive]]
  name = "Alice"
  email = "alice@acme.example"
  key = "$(cat "$srv/execs/alice.key.pub")"
  [[authorisation.executive]]
  name = "Bob"
  email = "bob@acme.example"
  key = "$(cat "$srv/execs/bob.key.pub")"
  [[authorisation.executive]]
  name = "Carol"
  email = "carol@acme.example"
  key = "$(cat "$srv/execs/carol.key.pub")"

[[host]]
name = "db"
address = "10.99.0.11"
cpus = 1
memory_mb = 256
  [[host.check]]
  type = "tcp"
  port = 5432
  [[host.check]]
  type = "ssh"
  command = "test -s /disk/data/records"

[[host]]
name = "app"
address = "10.99.0.12"
cpus = 1
memory_mb = 256
depends_on = ["db"]
  [[host.check]]
  type = "http"
  port = 8080
  body = "app ok: db ok"

[[host]]
name = "web"
address = "10.99.0.13"
cpus = 1
memory_mb = 256
depends_on = ["app"]
  [[host.check]]
  type = "http"
  port = 80
  body = "web ok: app ok: db ok"
$extra
TOML
  planb-invoke executives --server "$srv" --customer acme --enrol >/dev/null
}

new_request() {
  local srv=$1 mode=$2
  shift 2
  REQ_FILE=$srv/request.$mode.txt
  planb-invoke request --server "$srv" --customer acme --mode "$mode" --reason "test $mode" -o "$REQ_FILE" "$@" >/dev/null
  REQ=$(sed -n 's/^id=//p' "$REQ_FILE")
  [ -n "$REQ" ]
  export REQ REQ_FILE
}

approve_by() {
  local srv=$1 file=$2
  shift 2
  local x
  for x in "$@"; do
    planb-invoke approve --yes --key "$srv/execs/$x.key" -o "$srv/$x.approval" "$file" >/dev/null
    planb-invoke submit --server "$srv" "$srv/$x.approval" >/dev/null
  done
}

invocation_cleanup() {
  local srv=$1 d id
  for d in "$srv"/invocations/*/; do
    [ -f "$d/state.json" ] || continue
    id=$(basename "$d")
    planb-invoke stop --server "$srv" "$id" >/dev/null 2>&1 || true
    ip netns delete "planb-${id:0:8}" 2>/dev/null || true
  done
}

# No qemu process runs on a file under DIR.
no_qemu_under() {
  ! pgrep -af qemu-system | grep -F -- "$1"
}
