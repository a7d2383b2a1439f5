#!/usr/bin/env bash
# Resident memory of each release service with SERVERS servers after SECONDS of running, on a
# throw-away nats-server (free port, temp store). Prints a markdown table.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
servers="${1:-1000}"; seconds="${2:-60}"
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
web="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
pids=()
# Services first, the broker last (the reverse of starting), so each can finish cleanly.
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
echo "max_payload: 8MB" >"$work/nats.conf"
"$root/.tools/bin/nats-server" -c "$work/nats.conf" -a 127.0.0.1 -p "$port" -js -sd "$work/js" >"$work/nats.log" 2>&1 &
pids+=($!)
sleep 1
export NATS_URL="nats://127.0.0.1:$port" RUST_LOG=warn
cd "$root"
target/release/predictor >"$work/predictor.log" 2>&1 & pids+=($!); p_pid=$!
sleep 2
target/release/generator --servers "$servers" --tick 1s >"$work/generator.log" 2>&1 & pids+=($!); g_pid=$!
target/release/dashboard --listen "127.0.0.1:$web" >"$work/dashboard.log" 2>&1 & pids+=($!); d_pid=$!
sleep "$seconds"
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "exited"; }
hwm() { awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "exited"; }
echo "| service | resident now | peak resident |"
echo "|---|---|---|"
for s in predictor:$p_pid generator:$g_pid dashboard:$d_pid; do
  echo "| ${s%%:*} | $(rss "${s##*:}") | $(hwm "${s##*:}") |"
done
