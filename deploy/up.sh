#!/usr/bin/env bash
# `just up`: installs what is missing, starts nats-server (unless one already answers at
# NATS_URL; CLUSTER=3, as `just up-cluster` sets, starts a 3-node cluster instead), builds in
# release, starts predictor, generator and dashboard, waits until each is ready, prints where to
# look, and stops everything on Ctrl-C. `just down` stops a detached run.
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
# Users added since a secrets file was made get their password appended (nats.conf needs all).
for u in NOTIFIER INGEST ROUTE; do
  grep -q "^FLEETCAST_${u}_PASSWORD=" "$secrets" ||
    echo "FLEETCAST_${u}_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >>"$secrets"
done
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
elif [ "${CLUSTER:-1}" = 3 ]; then
  # `just up-cluster` (deploy/up-cluster.sh): three nodes with routes instead of nats.conf.
  own_broker=1
  echo "starting a 3-node NATS cluster (deploy/nats-cluster/, JetStream in var/nats-cluster)"
  "$root/deploy/nats-cluster/start.sh"
else
  own_broker=1
  echo "starting nats-server ($NATS_URL, JetStream in var/nats)"
  "$root/.tools/bin/nats-server" -c "$root/nats.conf" >"$logs/nats.log" 2>&1 &
  echo $! >"$run/nats.pid"
  for _ in $(seq 100); do answers "$host" "$port" && break; sleep 0.1; done
  answers "$host" "$port" || { echo "nats-server did not start; see $logs/nats.log"; exit 1; }
fi

# Where cargo puts the binaries (CARGO_TARGET_DIR, as cargo itself reads it).
bin="${CARGO_TARGET_DIR:-$root/target}/release"

echo "building (release)..."
# The targets `just test`'s nextest builds (lib, bins, tests, examples; not the benches): a --bins
# build alone resolves features without the test-only dependencies and recompiles polars (about
# 5 minutes) after every `just test`, and back again; --all-targets would also build the benches,
# which nextest does not (a fresh clone's first `just up` after `just test` recompiled two crates).
cargo build --release --workspace --bins --tests --examples

# start NAME READY_PATTERN ARGS...: starts a service and waits for its readiness line in its log.
# START_AS=<binary>: run that binary under NAME (a second predictor: its own log and pid file,
# the binary's NATS user).
start() {
  local name="$1" ready="$2"; shift 2
  local exe="${START_AS:-$name}"
  NATS_URL="$(url_for "$exe")" "$bin/$exe" "$@" >"$logs/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
  for _ in $(seq 600); do
    grep -q "$ready" "$logs/$name.log" 2>/dev/null && { echo "  $name ready (log: var/log/$name.log)"; return 0; }
    kill -0 "$(cat "$run/$name.pid")" 2>/dev/null || { echo "$name exited; last lines of var/log/$name.log:"; tail -n 20 "$logs/$name.log"; exit 1; }
    sleep 0.1
  done
  echo "$name not ready after 60 s; see var/log/$name.log"; exit 1
}

# Prometheus /metrics on loopback (README "Scraping Fleetcast"): predictor 9464, notifier 9465,
# generator 9466, dashboard 9467.
PREDICTOR_METRICS_LISTEN="${PREDICTOR_METRICS_LISTEN:-127.0.0.1:9464}"
GENERATOR_METRICS_LISTEN="${GENERATOR_METRICS_LISTEN:-127.0.0.1:9466}"
DASHBOARD_METRICS_LISTEN="${DASHBOARD_METRICS_LISTEN:-127.0.0.1:9467}"
NOTIFIER_METRICS_LISTEN="${NOTIFIER_METRICS_LISTEN:-127.0.0.1:9465}"
# Predicted alerts go to the Alertmanagers named in ALERTMANAGER_URL (comma-separated; the
# dashboard's Alerts page reads the same variable); unnamed, Debian's alertmanager runs here on
# loopback (var/alertmanager, silences kept between runs) and receives them.
if [ -z "${ALERTMANAGER_URL:-}" ] && command -v prometheus-alertmanager >/dev/null; then
  ALERTMANAGER_LISTEN="${ALERTMANAGER_LISTEN:-127.0.0.1:9093}"
  mkdir -p "$root/var/alertmanager/data"
  # Routing, grouping and receivers are Alertmanager's job: edit this file to page someone.
  [ -f "$root/var/alertmanager/alertmanager.yml" ] || cat >"$root/var/alertmanager/alertmanager.yml" <<YML
route: { receiver: 'none', group_by: ['alertname', 'server'] }
receivers: [ { name: 'none' } ]
YML
  # --cluster.listen-address= : no gossip port (9094) for a single loopback instance.
  prometheus-alertmanager --config.file="$root/var/alertmanager/alertmanager.yml" \
    --storage.path="$root/var/alertmanager/data" --web.listen-address="$ALERTMANAGER_LISTEN" \
    --cluster.listen-address= >"$logs/alertmanager.log" 2>&1 &
  echo $! >"$run/alertmanager.pid"
  export ALERTMANAGER_URL="http://$ALERTMANAGER_LISTEN"
fi
start predictor "predictor ready" --metrics-listen "$PREDICTOR_METRICS_LISTEN"
# PREDICTORS=2 (what `just up-cluster` sets, with FLEETCAST_PARTITIONS=8): more predictors
# sharing the partitions; each takes over the others' when they stop (services/predictor/README.md).
for k in $(seq 2 "${PREDICTORS:-1}"); do
  START_AS=predictor start "predictor-$k" "predictor ready" --instance "predictor-$k" \
    --metrics-listen "127.0.0.1:$((9470 + k))"
  extra_predictor_metrics="${extra_predictor_metrics:-} 127.0.0.1:$((9470 + k))"
done
start generator "generator ready" --servers "$SERVERS" --metrics-listen "$GENERATOR_METRICS_LISTEN"
start dashboard "dashboard ready" --listen "$DASHBOARD_LISTEN" --metrics-listen "$DASHBOARD_METRICS_LISTEN"
if [ -n "${ALERTMANAGER_URL:-}" ]; then
  start notifier "notifier ready" --dashboard-url "http://$DASHBOARD_LISTEN" --metrics-listen "$NOTIFIER_METRICS_LISTEN"
  echo "  predicted alerts -> Alertmanager $ALERTMANAGER_URL (silence them there)"
else
  echo "  (no ALERTMANAGER_URL and prometheus-alertmanager not installed: predicted alerts stay on NATS and the dashboard)"
fi
# A real server beside the simulated fleet (services/ingest/README.md): with PROMETHEUS_URL,
# ingest pulls a team's own Prometheus (24 h of backfill); otherwise this very machine goes
# node_exporter -> Prometheus (var/prometheus, kept between runs) -> remote-write -> ingest,
# and ingest reads each pushed host's last 24 h from that Prometheus the first time the host
# is pushed (--pull history), so a machine the TSDB already knows is forecast at the first tick.
INGEST_LISTEN="${INGEST_LISTEN:-127.0.0.1:9201}"
if [ -n "${PROMETHEUS_URL:-}" ]; then
  start ingest "ingest ready" --listen "$INGEST_LISTEN" --prometheus-url "$PROMETHEUS_URL"
elif command -v prometheus >/dev/null && command -v prometheus-node-exporter >/dev/null; then
  NODE_EXPORTER_LISTEN="${NODE_EXPORTER_LISTEN:-127.0.0.1:9112}"
  PROMETHEUS_LISTEN="${PROMETHEUS_LISTEN:-127.0.0.1:9099}"
  start ingest "ingest ready" --listen "$INGEST_LISTEN" \
    --prometheus-url "http://$PROMETHEUS_LISTEN" --pull history
  mkdir -p "$root/var/prometheus"
  notifier_target=""; [ -f "$run/notifier.pid" ] && notifier_target=", '$NOTIFIER_METRICS_LISTEN'"
  for a in ${extra_predictor_metrics:-}; do notifier_target="$notifier_target, '$a'"; done
  had_history=0; [ -d "$root/var/prometheus/data/wal" ] && had_history=1
  cat >"$root/var/prometheus/prometheus.yml" <<YML
global: { scrape_interval: 15s, evaluation_interval: 1m }
rule_files: ['$root/deploy/prometheus/fleetcast_rules.yml']
scrape_configs:
  - job_name: node
    static_configs: [ { targets: ['$NODE_EXPORTER_LISTEN'], labels: { instance: '$(hostname)' } } ]
  # Fleetcast's own /metrics (pipeline health and forecasts at now), so the example rules run.
  - job_name: fleetcast
    static_configs: [ { targets: ['$PREDICTOR_METRICS_LISTEN', '$GENERATOR_METRICS_LISTEN', '$DASHBOARD_METRICS_LISTEN', '$INGEST_LISTEN'$notifier_target] } ]
remote_write:
  - url: http://$INGEST_LISTEN/api/v1/write
    # Only the hosts' own series go to ingest; Fleetcast's forecasts of them stay here.
    write_relabel_configs: [ { source_labels: [job], regex: node, action: keep } ]
YML
  # Debian's build turns the systemd collector on; on a machine not booted with systemd (a
  # container) it logs a dbus error at every scrape, so it is off there.
  node_flags=()
  [ -d /run/systemd/system ] || node_flags+=(--no-collector.systemd)
  prometheus-node-exporter --web.listen-address="$NODE_EXPORTER_LISTEN" "${node_flags[@]}" >"$logs/node-exporter.log" 2>&1 &
  echo $! >"$run/node-exporter.pid"
  prometheus --config.file="$root/var/prometheus/prometheus.yml" --storage.tsdb.path="$root/var/prometheus/data" \
    --web.listen-address="$PROMETHEUS_LISTEN" >"$logs/prometheus.log" 2>&1 &
  echo $! >"$run/prometheus.pid"
  echo "  this machine ($(hostname)): node_exporter $NODE_EXPORTER_LISTEN -> prometheus http://$PROMETHEUS_LISTEN -> ingest $INGEST_LISTEN"
  # Steps close 60 s after their 5-minute boundary; a forecast needs 12 steps of window, which
  # the backfill supplies from whatever history this Prometheus already holds.
  echo "    it appears on the dashboard as '$(hostname)' after its first 5-minute step closes (within 6 min);"
  if [ "$had_history" = 1 ]; then
    echo "    the history var/prometheus holds from earlier runs is backfilled then (forecasts need 12 steps)"
  else
    echo "    first run: no history yet, so its forecasts start after an hour (12 steps)"
  fi
else
  echo "  (prometheus / prometheus-node-exporter not installed: no real server beside the simulated fleet)"
fi

metrics_urls="http://$PREDICTOR_METRICS_LISTEN/metrics http://$GENERATOR_METRICS_LISTEN/metrics http://$DASHBOARD_METRICS_LISTEN/metrics"
for a in ${extra_predictor_metrics:-}; do metrics_urls="$metrics_urls http://$a/metrics"; done
snapshot_subject=predictions.current
[ "${FLEETCAST_PARTITIONS:-1}" -gt 1 ] && snapshot_subject="'predictions.current.>'"
[ -f "$run/notifier.pid" ] && metrics_urls="$metrics_urls http://$NOTIFIER_METRICS_LISTEN/metrics"
[ -f "$run/ingest.pid" ] && metrics_urls="$metrics_urls http://$INGEST_LISTEN/metrics"
cat <<MSG

Fleetcast is up.
  dashboard:   http://$DASHBOARD_LISTEN/
  snapshots:   . var/secrets.env && nats sub $snapshot_subject --user admin --password "\$FLEETCAST_ADMIN_PASSWORD" --translate '$bin/fcmsg decode'
               (with the nats CLI, github.com/nats-io/natscli; not installed by bootstrap)
  metrics:     $metrics_urls
  logs:        var/log/
Ctrl-C (or 'just down' from another shell) stops everything.
MSG
# Until Ctrl-C or `just down`: a service that exits (or is killed, as in a failover drill)
# leaves the others running; its log says why.
wait || true
