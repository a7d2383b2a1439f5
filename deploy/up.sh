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

if answers "$host" "$port"; then
  echo "using the nats-server already answering at $NATS_URL"
else
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
  "$root/target/release/$name" "$@" >"$logs/$name.log" 2>&1 &
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
  snapshots:   nats sub predictions.current --translate 'target/release/fcmsg decode'
  logs:        var/log/
Ctrl-C (or 'just down' from another shell) stops everything.
MSG
wait -n || true
