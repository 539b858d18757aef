# Real servers for the ship tests, on loopback only, started and stopped by the
# tests: an OpenSSH sshd with its sftp subsystem, and an nginx with WebDAV PUT
# over TLS (certificates from a CA made here). Everything lives under $1.

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {  # port
  local i
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2
  return 1
}

# prepare_sshd DIR: keys, config and known_hosts for an sshd on a free port, not
# started yet (launch_sshd DIR starts it). Sets SSH_PORT, SSH_KEY (client key),
# SSH_KNOWN (known_hosts).
prepare_sshd() {
  local d=$1
  mkdir -p "$d" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -C planb-test-host -f "$d/host_key"
  ssh-keygen -q -t ed25519 -N '' -C planb-test-client -f "$d/client_key"
  cp "$d/client_key.pub" "$d/authorized_keys"
  SSH_PORT=$(free_port)
  cat >"$d/sshd_config" <<EOC
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
EOC
  echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$d/host_key.pub")" >"$d/known_hosts"
  SSH_KEY=$d/client_key
  SSH_KNOWN=$d/known_hosts
  export SSH_PORT SSH_KEY SSH_KNOWN
}

launch_sshd() {
  /usr/sbin/sshd -f "$1/sshd_config" -E "$1/sshd.log"
}

# start_sshd DIR: prepare_sshd, then start it and wait until it listens.
start_sshd() {
  prepare_sshd "$1"
  launch_sshd "$1"
  wait_port "$SSH_PORT"
}

stop_sshd() {
  local d=$1
  [ -f "$d/sshd.pid" ] && kill "$(cat "$d/sshd.pid")" 2>/dev/null || true
}

# make_ca DIR: a CA, a server certificate for 127.0.0.1/localhost and a client certificate.
make_ca() {
  local d=$1
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=Plan B test CA" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
      -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext \
      -out server.crt 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=appliance-1" \
      -keyout client.key -out client.csr 2>/dev/null
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out client.crt 2>/dev/null
    # A second CA nobody trusts, for the "wrong certificate" cases.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=Other CA" \
      -keyout other-ca.key -out other-ca.crt 2>/dev/null
  )
}

# start_nginx DIR [require-client-cert: on|off]: WebDAV at https://127.0.0.1:$HTTPS_PORT/inbox/
# (files in DIR/www/inbox). Sets HTTPS_PORT, HTTPS_INBOX.
start_nginx() {
  local d=$1 require=${2:-off}
  make_ca "$d/pki"
  mkdir -p "$d/www/inbox" "$d/tmp"
  HTTPS_PORT=$(free_port)
  cat >"$d/nginx.conf" <<EOC
user root root;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log;
events { worker_connections 64; }
http {
  access_log $d/access.log;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  server {
    listen 127.0.0.1:$HTTPS_PORT ssl;
    server_name localhost;
    ssl_certificate $d/pki/server.crt;
    ssl_certificate_key $d/pki/server.key;
    ssl_client_certificate $d/pki/ca.crt;
    ssl_verify_client optional;
    client_max_body_size 0;
    location /inbox/ {
      root $d/www;
      if (\$ssl_client_verify != SUCCESS) { set \$deny "$require"; }
      if (\$deny = "on") { return 403; }
      dav_methods PUT DELETE MOVE;
      create_full_put_path off;
      dav_access user:rw group:r all:r;
    }
  }
}
EOC
  nginx -c "$d/nginx.conf" -e "$d/error.log"
  wait_port "$HTTPS_PORT"
  HTTPS_INBOX=$d/www/inbox
  export HTTPS_PORT HTTPS_INBOX
}

stop_nginx() {
  local d=$1
  [ -f "$d/nginx.pid" ] && kill "$(cat "$d/nginx.pid")" 2>/dev/null || true
}
