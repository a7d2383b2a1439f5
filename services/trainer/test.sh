#!/usr/bin/env bash
# `just test` part for the trainer: the pytest suite (module shapes, masking, non-crossing
# quantiles, optimisation, export + ONNX Runtime parity, the committed model's golden fixture).
# Takes well under a few minutes on CPU. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$trainer_dir"
exec "$PY" -m pytest -q "$@"
