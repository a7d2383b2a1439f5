# Fleetcast tasks. `just up` runs everything; `just test` runs every test. Both install what is
# missing into .tools/ first (deploy/bootstrap.sh), so they work on a fresh Debian machine.

set shell := ["bash", "-euo", "pipefail", "-c"]

export ORT_DYLIB_PATH := env_var_or_default("ORT_DYLIB_PATH", justfile_directory() / ".tools/ortlib/libonnxruntime.so")
export NATS_SERVER_BIN := env_var_or_default("NATS_SERVER_BIN", justfile_directory() / ".tools/bin/nats-server")

# List the recipes.
default:
    @just --list

# Install just, nats-server and ONNX Runtime into .tools/ (idempotent).
bootstrap:
    deploy/bootstrap.sh

# Start nats-server, predictor, generator and dashboard; print the dashboard URL; Ctrl-C stops all.
up:
    deploy/up.sh

# `just up` on a 3-node NATS cluster (deploy/nats-cluster/): streams and KV buckets at R3.
up-cluster:
    deploy/up-cluster.sh

# Stop everything `just up` started.
down:
    deploy/down.sh

# Every test: formatting and lints, Rust (real nats-server, real ONNX model, headless Chromium)
# and the trainer's pytest.
test:
    deploy/bootstrap.sh --with-browser
    {{just_executable()}} lint
    cargo nextest run --workspace --release --no-fail-fast
    services/trainer/test.sh

# rustfmt (rustfmt.toml) and clippy with every warning an error, over all targets.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Train the TFT on generated data, evaluate it, export models/tft.onnx and write the model card.
train *ARGS:
    services/trainer/train.sh {{ARGS}}

# Replay real servers (NAB, Bitbrains) and the trainer's held-out generated fleet through the
# predictor and score what it publishes against naive forecasts and the model alone; writes
# models/BACKTEST.md.
backtest *ARGS:
    deploy/bootstrap.sh
    cargo build --release --workspace --all-targets
    target/release/backtest --nab ../shared/data/nab --bitbrains ../shared/data/bitbrains/bitbrains-rnd-train.parquet --generated "$(services/trainer/train.sh --held-out-path)" --markdown models/BACKTEST.md {{ARGS}}

# Build in release and run the benchmark suite; prints a table and writes BENCHMARKS.md.
bench:
    deploy/bench.sh
