#!/usr/bin/env bash
# `just bench`: builds in release, runs every benchmark of the product side by side on this
# machine, prints the tables and writes them with the machine's description to BENCHMARKS.md.
# Ratios against the original stack's way of working come from the same run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/deploy/bootstrap.sh"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$root/.tools/ortlib/libonnxruntime.so}"
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$root/.tools/bin/nats-server}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT

echo "building (release)..." >&2
# One build, as `just test` and `just up` build: `--workspace --all-targets` resolves features
# once for everything, while `cargo run -p`/`cargo bench -p` or a `--bins` build resolve them
# anew and recompile polars and the services (minutes). The benchmarks then run from
# target/release; bench targets have hashed names, so they are found in the build's messages.
cargo build --release --workspace --all-targets --message-format=json-render-diagnostics >"$work/build.json"
# bench NAME ARGS...: runs bench target NAME as `cargo bench` would (with `--bench`).
bench() {
  local exe
  exe="$(python3 -c 'import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[2] and "bench" in m["target"]["kind"] and m.get("executable"):
        print(m["executable"])' "$work/build.json" "$1" | tail -n 1)"
  [ -n "$exe" ] || { echo "bench target $1 was not built" >&2; return 1; }
  shift
  "$exe" --bench "$@"
}

section() { printf '\n## %s\n\n' "$1"; }
{
  echo "# Fleetcast benchmarks"
  echo
  echo "Written by \`just bench\` (deploy/bench.sh); numbers from one run, side by side."
  echo
  echo "| machine | |"
  echo "|---|---|"
  echo "| date | $(date -u +%Y-%m-%dT%H:%MZ) |"
  echo "| commit | $(git rev-parse --short HEAD 2>/dev/null || echo unknown) |"
  echo "| CPU | $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') |"
  echo "| cores | $(nproc) |"
  echo "| memory | $(free -g | awk '/Mem:/ {print $2}') GiB |"
  echo "| kernel | $(uname -r) |"
  echo "| ONNX Runtime | $(basename "$(readlink -f "$ORT_DYLIB_PATH")") |"

  section "Generator: simulate, encode and publish one tick (JetStream-acknowledged)"
  target/release/examples/bench_publish 2>/dev/null

  section "Ingest: Prometheus remote-write decode + align against Prometheus 2.42's own receiver (same payloads)"
  # The example the one build made: `cargo run -p ingest` would resolve features anew and
  # recompile it in the middle of the run (it did, for minutes, on 2 cores).
  target/release/examples/bench_remote_write 2>/dev/null

  section "Ingest: CPU of the ingest process for a 10,000-host fleet remote-written every 15 s (target < 5 % of one core)"
  # The release binary beside the example's folder, fed as Prometheus 2.42 sends (500 samples
  # per request); one 5-minute step measured per row, so the window holds one step close.
  target/release/examples/bench_fleet_cpu 2>/dev/null

  section "Predictor: tick latency per stage, 100 / 1,000 / 10,000 / 100,000 servers"
  bench bench_tick --sizes 100,1000,10000,100000 2>/dev/null | tee "$work/predictor.txt"

  section "Predictor on a 3-node cluster: two partitioned predictors (R3) beside one predictor on one node (R1), 10,000 servers"
  # Its RESULT line feeds the arithmetic below, not the page. Up to three nats-servers and two predictors
  # on a busy machine: a failed run is reported here with the end of its log, and the rest of
  # the benchmarks still run.
  if ! target/release/examples/cluster_tick 10000 2>"$work/cluster.err" | tee "$work/cluster.txt" | { grep -v '^RESULT ' || true; }; then
    printf '\n**cluster_tick failed**; the end of its log:\n\n```\n%s\n```\n' "$(tail -n 40 "$work/cluster.err")"
  fi

  section "1,000,000 servers, on paper"
  "$root/.tools/bin/python" deploy/bench/million.py "$work/cluster.txt"

  section "Predictor engine: forecasts per second with every method (model, statistical methods, ensemble, choice), 1,000 and 10,000 servers"
  bench bench_engine 2>/dev/null

  section "Predictor /metrics: fill once per tick, render per scrape (10,000 servers)"
  bench bench_metrics 2>/dev/null

  section "Dashboard: render, page weight, SSE fan-out (1,000 servers)"
  bench dashboard 2>/dev/null

  section "Baselines in Python (same machine, same threads)"
  # shellcheck source=/dev/null
  source "$root/services/trainer/venv.sh"
  (cd "$root" && "$PY" deploy/bench/compare_python.py) | tee "$work/python.txt" | { grep -v '^RESULT ' || true; }

  section "Resident memory of each service (release stack, 1,000 servers, 60 s)"
  deploy/bench/rss.sh 1000 60

  section "Forecast quality: the product against naive forecasts on real servers (backtest)"
  echo "Every origin (5-minute step) and lead 1..96, q-risk mean over series; published = what the predictor publishes"
  echo "(per-server method choice), model = the TFT alone. Held-out VMs: Bitbrains vm % 10 == 1, never trained on;"
  echo "generated: the trainer's held-out fleet (another seed and month than training), its first 60 servers."
  echo
  target/release/backtest --nab "$root/../shared/data/nab" \
    --bitbrains "$root/../shared/data/bitbrains/bitbrains-rnd-train.parquet" \
    --generated "$(services/trainer/train.sh --held-out-path)" --summary-only 2>/dev/null

  section "Ratios"
  "$root/.tools/bin/python" deploy/bench/ratios.py "$work/predictor.txt" "$work/python.txt"
} | tee "$root/BENCHMARKS.md"
