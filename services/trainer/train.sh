#!/usr/bin/env bash
# `just train`: generate training and held-out data with the generator's `export`, train the TFT,
# evaluate it (held-out generated fleet + NAB), export models/tft.onnx + tft.json + golden.json and
# write the model card models/README.md. Finishes in well under 60 minutes on the 2-core CPU.
#
#   train.sh                              generate data (cached under data/trainer/) and train
#   train.sh --data T.parquet --eval-data E.parquet   use given files instead of generating
#   train.sh --sweep                      train several sizes briefly, write models/sweep.json
#   train.sh --card                       re-render models/README.md from the saved numbers
#   train.sh --bench                      re-measure ONNX Runtime throughput (keeps the best run)
#   train.sh --compile                    re-export the shipped weights in the inference form
#   train.sh --held-out-path              print the held-out generated fleet's file (generating it if missing)
#   train.sh --evaluate                   score the shipped model again on today's held-out data, re-render the card
#   train.sh --real-data R.parquet        real VMs (Bitbrains) trained on next to the generated fleet;
#                                         default: shared/data/bitbrains/bitbrains-rnd-train.parquet
#                                         when it exists (`--real-data ""` trains on generated data only)
#   train.sh --holdout-every 5            VMs with vm % 5 == 0 are held out (evaluated, never trained on)
#   train.sh --time-budget 900 ...        other options go to `python -m fleetcast_trainer run`
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Training set: one seed and month; held-out set: another seed and another month.
TRAIN_SEED=7 TRAIN_START=2026-01-05 TRAIN_DAYS=30 TRAIN_SERVERS=200
EVAL_SEED=11 EVAL_START=2026-03-02 EVAL_DAYS=14 EVAL_SERVERS=200

# The generator's sources (and the wire types it writes through): the cached data is made again
# when they change, so a cached file never describes a generator that no longer exists.
generator_sources() {
  (cd "$repo_root" && find services/generator/src services/generator/Cargo.toml schemas/src -type f | sort)
}

newer_than() {  # file -> the first generator source changed after it, if any
  (cd "$repo_root" && generator_sources | while read -r f; do [ "$f" -nt "$1" ] && echo "$f" && break; done) || true
}

generate() {  # seed start days servers -> path of the cached parquet
  local out="$repo_root/data/trainer/fleet-s$1-$2-d$3-n$4.parquet"
  local want
  want="$(cd "$repo_root" && generator_sources | xargs sha256sum | sha256sum | cut -c1-16)"
  if [ ! -s "$out" ] || [ "$(cat "$out.source" 2>/dev/null)" != "$want" ]; then
    mkdir -p "$(dirname "$out")"
    echo "trainer: generating $out" >&2
    # The workspace build's binary when it is newer than every source: `cargo run -p generator`
    # resolves the generator's features alone and rebuilds much of the workspace (10 min on 2 cores).
    local gen=("$repo_root/target/release/generator")
    if [ ! -x "${gen[0]}" ] || [ -n "$(newer_than "${gen[0]}")" ]; then
      gen=(cargo run --quiet --release -p generator --)
    fi
    (cd "$repo_root" && "${gen[@]}" export \
      --days "$3" --servers "$4" --seed "$1" --start "$2" --out "$out.tmp") >&2
    mv "$out.tmp" "$out"
    echo "$want" > "$out.source"
  fi
  echo "$out"
}

# `just backtest` replays the held-out fleet too; it needs the file, not the Python side.
if [ "${1:-}" = "--held-out-path" ]; then
  generate $EVAL_SEED $EVAL_START $EVAL_DAYS $EVAL_SERVERS
  exit 0
fi

source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

data="" eval_data="" cmd="run" extra=()
real_data="$repo_root/../shared/data/bitbrains/bitbrains-rnd-train.parquet"
[ -s "$real_data" ] || real_data=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data="$2"; shift 2 ;;
    --eval-data) eval_data="$2"; shift 2 ;;
    --real-data) real_data="$2"; shift 2 ;;
    --sweep) cmd="sweep"; shift ;;
    --evaluate) cmd="evaluate"; shift ;;
    --card) cd "$trainer_dir"; exec "$PY" -m fleetcast_trainer card --out "$repo_root/models" ;;
    --bench) cd "$trainer_dir"; exec "$PY" -m fleetcast_trainer bench --out "$repo_root/models" ;;
    --compile) cd "$trainer_dir"; exec "$PY" -m fleetcast_trainer compile --out "$repo_root/models" ;;
    *) extra+=("$1"); shift ;;
  esac
done

[ -n "$data" ] || data="$(generate $TRAIN_SEED $TRAIN_START $TRAIN_DAYS $TRAIN_SERVERS)"
[ -n "$eval_data" ] || eval_data="$(generate $EVAL_SEED $EVAL_START $EVAL_DAYS $EVAL_SERVERS)"

nab="${FLEETCAST_NAB_DIR:-$repo_root/../shared/data/nab}"
real=()
[ -z "$real_data" ] || real=(--real-data "$real_data")
cd "$trainer_dir"
exec "$PY" -m fleetcast_trainer "$cmd" --train-data "$data" --eval-data "$eval_data" \
  --nab-dir "$nab" --out "$repo_root/models" --seed "$TRAIN_SEED" "${real[@]}" "${extra[@]}"
