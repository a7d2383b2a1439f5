#!/usr/bin/env bash
# `just up`: installs what is missing, starts nats-server (unless one already answers at
# NATS_URL), builds in release, starts predictor, generator and dashboard, waits until each is
# ready, prints where to look, and stops everything on Ctrl-C. `just down` stops a detached run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
run="$root/var/run"; logs="$root/var/log"
mkdir -p "$run" "$logs"

export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$root/.tools/ortlib/libonnxruntime.so}"
export RUST_LOG="${RUST_LOG:-info}"
SERVERS="${SERVERS:-100}"
DASHBOARD_LISTEN="${DASHBOARD_LISTEN:-127.0.0.1:8080}"

"$root/deploy/bootstrap.sh"
"$root/deploy/down.sh" --quiet || true

hostport="${NATS_URL#nats://}"; host="${hostport%:*}"; port="${hostport##*:}"
answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

stop_all() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  "$root/deploy/down.sh" --quiet || true
}
trap stop_all INT TERM EXIT

# Per-service NATS users (deploy/nats-auth.conf). Passwords: the environment, else the ones
# made on the first run and kept in var/secrets.env (readable by this user only).
secrets="$root/var/secrets.env"
if [ ! -f "$secrets" ]; then
  umask 077
  for u in PREDICTOR GENERATOR DASHBOARD ADMIN; do
    echo "FLEETCAST_${u}_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  done >"$secrets"
  umask 022
fi
set -a; . "$secrets"; set +a
url_for() { # url_for USER: NATS_URL with that user's credentials, when we run the broker
  if [ "$own_broker" = 1 ]; then
    local var="FLEETCAST_$(echo "$1" | tr a-z A-Z)_PASSWORD"
    echo "nats://$1:${!var}@$hostport"
  else
    echo "$NATS_URL"
  fi
}

own_broker=0
if answers "$host" "$port"; then
  echo "using the nats-server already answering at $NATS_URL"
else
  own_broker=1
  echo "starting nats-server ($NATS_URL, JetStream in var/nats)"
  "$root/.tools/bin/nats-server" -c "$root/nats.conf" >"$logs/nats.log" 2>&1 &
  echo $! >"$run/nats.pid"
  for _ in $(seq 100); do answers "$host" "$port" && break; sleep 0.1; done
  answers "$host" "$port" || { echo "nats-server did not start; see $logs/nats.log"; exit 1; }
fi

echo "building (release)..."
cargo build --release --workspace --bins

# start NAME READY_PATTERN ARGS...: starts a service and waits for its readiness line in its log.
start() {
  local name="$1" ready="$2"; shift 2
  NATS_URL="$(url_for "$name")" "$root/target/release/$name" "$@" >"$logs/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
  for _ in $(seq 600); do
    grep -q "$ready" "$logs/$name.log" 2>/dev/null && { echo "  $name ready (log: var/log/$name.log)"; return 0; }
    kill -0 "$(cat "$run/$name.pid")" 2>/dev/null || { echo "$name exited; last lines of var/log/$name.log:"; tail -n 20 "$logs/$name.log"; exit 1; }
    sleep 0.1
  done
  echo "$name not ready after 60 s; see var/log/$name.log"; exit 1
}

start predictor "predictor ready"
start generator "generator ready" --servers "$SERVERS"
start dashboard "dashboard ready" --listen "$DASHBOARD_LISTEN"

cat <<MSG

Fleetcast is up.
  dashboard:   http://$DASHBOARD_LISTEN/
  snapshots:   . var/secrets.env && nats sub predictions.current --user admin --password "\$FLEETCAST_ADMIN_PASSWORD" --translate 'target/release/fcmsg decode'
  logs:        var/log/
Ctrl-C (or 'just down' from another shell) stops everything.
MSG
wait -n || true
