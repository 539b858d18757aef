#!/usr/bin/env bats
# planb-invoke dns: DNS and mail redirection by RFC 2136 updates (TSIG, nsupdate)
# against a real BIND started on 127.0.0.1 for each test (tests/helpers/bind.bash).
# Every redirection must be undone exactly: the originals come back with their
# TTLs, records that did not exist are deleted, and a refused or interrupted
# redirection leaves the zone as it was.

load 'helpers/common'
load 'helpers/bind'

ID=0123456789abcdef0123456789abcdef

setup() {
  require_root
  command -v named >/dev/null || skip "named (bind9) is not installed"
  common_setup
  start_bind "$WORK/bind"
  SERVER=$WORK/server
  INV=$SERVER/invocations/$ID
  mkdir -p "$SERVER/cmdb" "$INV"
  echo "{\"format\":1,\"id\":\"$ID\",\"customer\":\"acme\",\"mode\":\"real\",\"hosts\":[]}" >"$INV/state.json"
  cp "$BIND_KEY" "$SERVER/cmdb/acme.tsig"
  write_cmdb acme.tsig acme.tsig
  BEFORE=$(zone_snapshot)
}

teardown() {
  stop_bind "$WORK/bind"
}

# write_cmdb KEY_OF_FIRST_RECORDS KEY_OF_MX_AND_LAST: the customer, two hosts and
# five records: A (host), A (host), MX, CNAME, TXT, and an A that does not exist yet.
write_cmdb() {
  local k1=$1 k2=$2
  {
    printf 'customer = "acme"\n[rescue]\nnetwork = "10.99.0.0/24"\n'
    dns_record "$k1" www.acme.example. A 'host = "web"'
    dns_record "$k1" mail.acme.example. A 'host = "mail"' 'ttl = 30'
    dns_record "$k2" acme.example. MX 'value = "5 mx.acme.rescue."'
    dns_record "$k2" shop.acme.example. CNAME 'value = "web.acme.rescue"'
    dns_record "$k2" acme.example. TXT 'value = "v=spf1 ip4:10.99.0.25 -all"'
    dns_record "$k2" status.acme.example. A 'host = "web"'
    printf '[[host]]\nname = "web"\naddress = "10.99.0.11"\n[[host]]\nname = "mail"\naddress = "10.99.0.25"\n'
  } >"$SERVER/cmdb/acme.toml"
}

# dns_record KEY NAME TYPE LINE...: one [[dns]] table on the test server.
dns_record() {
  local key=$1 name=$2 type=$3
  shift 3
  printf '[[dns]]\nserver = "127.0.0.1"\nport = %s\nzone = "acme.example."\ntsig_key = "%s"\nname = "%s"\ntype = "%s"\n' \
    "$BIND_PORT" "$key" "$name" "$type"
  printf '%s\n' "$@"
}

# Every record the CMDB names, as the server answers now.
zone_snapshot() {
  bdig_many www.acme.example. A mail.acme.example. A acme.example. MX shop.acme.example. CNAME \
    acme.example. TXT status.acme.example. A
}

dns() { planb-invoke dns "$ID" --server "$SERVER" --timeout 3 "$@"; }

assert_zone_unchanged() {
  local now
  now=$(zone_snapshot)
  if [ "$now" != "$BEFORE" ]; then
    diff <(echo "$BEFORE") <(echo "$now") >&2 || true
    return 1
  fi
}

@test "dns --show lists the plan and changes nothing" {
  run dns --show
  assert_success
  assert_output --partial "DNS not redirected"
  assert_output --partial "www.acme.example. A"
  assert_output --partial "10.99.0.11"
  assert_output --partial '"v=spf1 ip4:10.99.0.25 -all"'
  [ ! -e "$INV/dns/rollback.json" ]
  assert_zone_unchanged
}

@test "dns --apply redirects A, MX, CNAME, TXT and a new record; --rollback restores exactly the originals" {
  # The originals the zone starts with.
  [ "$(bdig www.acme.example. A)" = "300 192.0.2.10" ]
  [ "$(bdig acme.example. MX)" = "300 10 mail.acme.example." ]
  [ "$(bdig shop.acme.example. CNAME)" = "300 www.acme.example." ]
  [ -z "$(bdig status.acme.example. A)" ]

  run dns --apply
  assert_success
  assert_output --partial "redirected www.acme.example. A 192.0.2.10 -> 10.99.0.11"
  [ "$(bdig www.acme.example. A)" = "60 10.99.0.11" ]
  [ "$(bdig mail.acme.example. A)" = "30 10.99.0.25" ]
  [ "$(bdig acme.example. MX)" = "60 5 mx.acme.rescue." ]
  [ "$(bdig shop.acme.example. CNAME)" = "60 web.acme.rescue." ]
  [ "$(bdig acme.example. TXT)" = '60 "v=spf1 ip4:10.99.0.25 -all"' ]
  [ "$(bdig status.acme.example. A)" = "60 10.99.0.11" ]

  # The journal holds the originals, and says every RRset was applied.
  run python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["format"] == "planb-dns-rollback 1", j["format"]
assert j["state"] == "applied", j["state"]
r = {(x["name"], x["type"]): x for x in j["rrsets"]}
assert r[("www.acme.example.", "A")]["original"] == {"exists": True, "ttl": 300, "rdata": ["192.0.2.10"]}
assert r[("status.acme.example.", "A")]["original"]["exists"] is False
assert all(x["state"] == "applied" for x in j["rrsets"])
print(len(j["rrsets"]))' "$INV/dns/rollback.json"
  assert_success
  assert_output 6
  [ "$(stat -c %a "$INV/dns/rollback.json")" = 644 ]

  run dns --show --json
  assert_success
  [ "$(json_field state)" = applied ]

  run dns --rollback
  assert_success
  assert_output --partial "restored status.acme.example. A 10.99.0.11 -> (deleted)"
  # Each RRset changed and restored is in the catalog's audit log, under the invocation.
  run python3 -c '
import sqlite3, sys, json
rows = sqlite3.connect(sys.argv[1]).execute("SELECT event, detail FROM audit_log WHERE invocation = ? ORDER BY seq", (sys.argv[2],)).fetchall()
print(" ".join(sorted(set(e for e, _ in rows))), sum(e == "dns-redirect" for e, _ in rows), sum(e == "dns-rollback" for e, _ in rows))
www = [json.loads(d) for e, d in rows if e == "dns-redirect" and json.loads(d)["name"] == "www.acme.example."][0]
print(www["from"], www["to"])' "$SERVER/catalog.db" "$ID"
  assert_success
  assert_line "dns-redirect dns-rollback 6 6"
  assert_line "['192.0.2.10'] ['10.99.0.11']"
  assert_zone_unchanged
  [ -z "$(bdig status.acme.example. A)" ]
  [ "$(bdig www.acme.example. A)" = "300 192.0.2.10" ]
  [ "$(bdig acme.example. TXT)" = '300 "v=spf1 mx -all"' ]
}

@test "the invocation's state.json addresses win over the CMDB's" {
  cat >"$INV/state.json" <<EOF
{"format":1,"id":"$ID","customer":"acme","mode":"real","hosts":[{"name":"web","address":"10.99.0.77"}]}
EOF
  run dns --apply
  assert_success
  [ "$(bdig www.acme.example. A)" = "60 10.99.0.77" ]
  [ "$(bdig mail.acme.example. A)" = "30 10.99.0.25" ]
  run dns --rollback
  assert_success
  assert_zone_unchanged
}

@test "a drill makes no DNS changes" {
  echo "{\"format\":1,\"id\":\"$ID\",\"customer\":\"acme\",\"mode\":\"drill\",\"hosts\":[]}" >"$INV/state.json"
  run dns --apply
  assert_failure 2
  assert_output --partial "drill"
  assert_zone_unchanged
}

@test "a wrong TSIG key is refused: exit 12, the records already changed are rolled back" {
  # The first two records are signed with the right key, the rest with a key of the
  # same name and another secret: the third update is refused (BADSIG).
  cp "$BIND_BADKEY" "$SERVER/cmdb/wrong.tsig"
  write_cmdb acme.tsig wrong.tsig
  run dns --apply
  assert_failure 12
  assert_output --partial "failed to redirect acme.example. MX at 127.0.0.1:$BIND_PORT"
  assert_output --partial "BADSIG"
  assert_output --partial "2 RRset(s) already changed were rolled back"
  assert_zone_unchanged
  [ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["state"])' "$INV/dns/rollback.json")" = rolled-back ]
}

@test "a key the server does not know is refused (BADKEY) and nothing changes" {
  cp "$BIND_STRANGER" "$SERVER/cmdb/stranger.tsig"
  write_cmdb stranger.tsig stranger.tsig
  run dns --apply
  assert_failure 12
  assert_output --partial "failed to redirect www.acme.example. A"
  assert_output --partial "BADKEY"
  assert_output --partial "nothing was changed"
  assert_zone_unchanged
}

@test "an update the server accepts but ignores (an A beside a CNAME) is caught by the check: exit 12, rolled back" {
  # shop.acme.example. is a CNAME in the zone: BIND accepts the update and ignores the A.
  {
    printf 'customer = "acme"\n'
    dns_record acme.tsig www.acme.example. A 'host = "web"'
    dns_record acme.tsig shop.acme.example. A 'host = "web"'
    printf '[[host]]\nname = "web"\naddress = "10.99.0.11"\n'
  } >"$SERVER/cmdb/acme.toml"
  run dns --apply
  assert_failure 12
  assert_output --partial "failed to redirect shop.acme.example. A at 127.0.0.1:$BIND_PORT: the server accepted the update but answers (none)"
  assert_output --partial "CNAME"
  assert_output --partial "1 RRset(s) already changed were rolled back"
  assert_zone_unchanged
  [ -z "$(bdig shop.acme.example. A)" ]
}

@test "server down: a clear error, no journal, nothing changed" {
  stop_bind "$WORK/bind"
  run dns --apply
  assert_failure 12
  assert_output --partial "failed to query www.acme.example. A at 127.0.0.1:$BIND_PORT"
  assert_output --partial "connection refused"
  assert_output --partial "nothing was changed"
  [ ! -e "$INV/dns/rollback.json" ]
  restart_bind "$WORK/bind"
  assert_zone_unchanged
}

@test "a second rollback is a no-op; a rollback without a journal is one too" {
  run dns --rollback
  assert_success
  assert_output --partial "nothing to roll back"
  run dns --apply
  assert_success
  run dns --rollback
  assert_success
  assert_zone_unchanged
  local journal
  journal=$(cat "$INV/dns/rollback.json")
  # Even with the server down: nothing left to do, nothing to ask.
  stop_bind "$WORK/bind"
  run dns --rollback
  assert_success
  assert_output --partial "already rolled back"
  [ "$(cat "$INV/dns/rollback.json")" = "$journal" ]
  restart_bind "$WORK/bind"
  assert_zone_unchanged
}

@test "killed (-9) in the middle of --apply: --rollback restores everything; a re-run keeps the true originals" {
  # nsupdate on PATH that runs the real one, then kills planb-invoke after the
  # third update has been applied: the journal says "applying", the zone is half done.
  mkdir -p "$WORK/fakebin"
  cat >"$WORK/fakebin/nsupdate" <<EOF
#!/bin/bash
n=\$(( \$(cat "$WORK/count" 2>/dev/null || echo 0) + 1 ))
echo \$n >"$WORK/count"
/usr/bin/nsupdate "\$@"
rc=\$?
[ \$n -lt 3 ] || kill -9 \$PPID
exit \$rc
EOF
  chmod +x "$WORK/fakebin/nsupdate"
  run env PATH="$WORK/fakebin:$PATH" planb-invoke dns "$ID" --server "$SERVER" --apply
  [ "$status" -eq 137 ]
  [ "$(bdig www.acme.example. A)" = "60 10.99.0.11" ]
  [ "$(bdig acme.example. MX)" = "60 5 mx.acme.rescue." ]
  [ "$(bdig shop.acme.example. CNAME)" = "300 www.acme.example." ]
  [ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["state"])' "$INV/dns/rollback.json")" = applying ]

  # Rollback from the half-applied state.
  run dns --rollback
  assert_success
  assert_zone_unchanged

  # Crash again, then re-run --apply: the journal's originals are kept (not the
  # half-redirected records), so the rollback after it still restores the zone.
  rm -f "$WORK/count"
  run env PATH="$WORK/fakebin:$PATH" planb-invoke dns "$ID" --server "$SERVER" --apply
  [ "$status" -eq 137 ]
  run dns --apply
  assert_success
  assert_output --partial "already redirected: www.acme.example. A"
  [ "$(bdig shop.acme.example. CNAME)" = "60 web.acme.rescue." ]
  run dns --rollback
  assert_success
  assert_zone_unchanged
}

@test "rollback with the server down fails with exit 12 and keeps the journal; it completes once the server is back" {
  run dns --apply
  assert_success
  stop_bind "$WORK/bind"
  run dns --rollback
  assert_failure 12
  assert_output --partial "failed to roll back DNS"
  assert_output --partial "connection refused"
  restart_bind "$WORK/bind"
  [ "$(bdig www.acme.example. A)" = "60 10.99.0.11" ]
  run dns --rollback
  assert_success
  assert_zone_unchanged
}

@test "a record changed by hand before --apply is what --rollback restores" {
  # Apply, roll back, then an operator changes www by hand; the next --apply reads the
  # new original and redirects; the rollback restores the operator's value.
  printf 'server 127.0.0.1 %s\nzone acme.example.\nupdate delete www.acme.example. A\nupdate add www.acme.example. 120 A 192.0.2.99\nsend\n' \
    "$BIND_PORT" | nsupdate -v -k "$BIND_KEY"
  BEFORE=$(zone_snapshot)
  run dns --apply
  assert_success
  run dns --rollback
  assert_success
  [ "$(bdig www.acme.example. A)" = "120 192.0.2.99" ]
  assert_zone_unchanged
}

@test "dns: an unknown invocation is exit 4, a bad id exit 2" {
  run planb-invoke dns ffffffffffffffffffffffffffffffff --server "$SERVER" --show
  assert_failure 4
  assert_output --partial "failed to find invocation"
  run planb-invoke dns '../etc' --server "$SERVER" --show
  assert_failure 2
  run planb-invoke dns "$ID" --server "$SERVER" --apply --rollback
  assert_failure 2
}
