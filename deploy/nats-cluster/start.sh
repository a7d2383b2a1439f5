#!/usr/bin/env bash
# Starts the 3-node NATS cluster of deploy/nats-cluster/n{1,2,3}.conf from the repository root
# (pid files var/run/nats-n*.pid, logs var/log/nats-n*.log, stores var/nats-cluster/n*), and
# waits until the nodes agree on a JetStream meta leader, so streams can be created at R3.
# deploy/up.sh runs it when CLUSTER=3 (`just up-cluster`); `just down` stops the nodes. Needs the
# FLEETCAST_*_PASSWORD variables of deploy/nats-auth.conf and FLEETCAST_ROUTE_PASSWORD.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
run="$root/var/run"; logs="$root/var/log"
mkdir -p "$run" "$logs" "$root/var/nats-cluster"
: "${FLEETCAST_ROUTE_PASSWORD:?set FLEETCAST_ROUTE_PASSWORD (deploy/up.sh keeps one in var/secrets.env)}"
bin="${NATS_SERVER_BIN:-$root/.tools/bin/nats-server}"

# nats-server does not add the cluster's credentials to the routes it dials: each route URL
# carries them (n*.conf reads these three).
for i in 1 2 3; do
  export "FLEETCAST_ROUTE_$i=nats-route://route:$FLEETCAST_ROUTE_PASSWORD@127.0.0.1:$((6221 + i))"
done

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# The meta leader node $1 (1..3) sees, from its monitoring port (8222..8224); empty when none.
meta_leader() {
  local port=$((8221 + $1)) body
  body="$( (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /jsz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && cat <&3) 2>/dev/null || true)"
  sed -n 's/.*"leader": *"\([^"]*\)".*/\1/p' <<<"$body" | head -n 1
}

for i in 1 2 3; do
  port=$((4221 + i))
  if answers "$port"; then echo "port $port is taken (another nats-server?); 'just down' first"; exit 1; fi
  "$bin" -c "$root/deploy/nats-cluster/n$i.conf" >"$logs/nats-n$i.log" 2>&1 &
  echo $! >"$run/nats-n$i.pid"
done
for i in 1 2 3; do
  port=$((4221 + i))
  for _ in $(seq 100); do answers "$port" && break; sleep 0.1; done
  answers "$port" || { echo "nats-server n$i did not start; see var/log/nats-n$i.log"; exit 1; }
done
for _ in $(seq 300); do
  l1="$(meta_leader 1)"; l2="$(meta_leader 2)"; l3="$(meta_leader 3)"
  if [ -n "$l1" ] && [ "$l1" = "$l2" ] && [ "$l2" = "$l3" ]; then
    echo "  NATS cluster: n1 127.0.0.1:4222, n2 :4223, n3 :4224 (JetStream meta leader $l1; logs var/log/nats-n*.log)"
    exit 0
  fi
  sleep 0.1
done
echo "the cluster elected no JetStream meta leader in 30 s; see var/log/nats-n*.log"; exit 1
