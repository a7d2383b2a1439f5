#!/usr/bin/env bash
# `just down`: stops every process `just up` started (by pid file), services first, the broker last.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run="$root/var/run"
quiet=0; [ "${1:-}" = "--quiet" ] && quiet=1
for name in prometheus node-exporter ingest notifier alertmanager dashboard generator predictor-2 predictor-3 predictor nats nats-n1 nats-n2 nats-n3; do
  f="$run/$name.pid"
  [ -f "$f" ] || continue
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    [ $quiet = 1 ] || echo "stopped $name ($pid)"
  fi
  rm -f "$f"
done
exit 0
