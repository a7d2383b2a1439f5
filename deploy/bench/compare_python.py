"""Side-by-side baselines for `just bench`, run in the trainer's venv on the same machine and
thread count as the Rust benchmarks:

1. the shipped model in ONNX Runtime vs the same architecture in eager PyTorch, batch 1/100/1000,
   plus the CPU's measured matmul peak, so inference FLOP/s can be read against it;
2. one tick done the way the original stack did it (original_way.py: JSON ingest, records into a
   pandas DataFrame, features rebuilt, eager PyTorch forward, risk/alerts/summary, JSON out), per
   stage, for 100 and 1,000 servers; and a lean variant (no ingest, no fleet features, no risk or
   alerts, vectorised groupby), the fastest Python tick we could write, as a floor.

Prints markdown tables and, last, one `RESULT {json}` line that deploy/bench.sh reads.
"""

import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
import pandas as pd
import torch

from fleetcast_trainer import schema
from fleetcast_trainer.bench import count_macs, random_inputs
from fleetcast_trainer.model import TFT, TFTConfig
from fleetcast_trainer.windows import calendar_features
from original_way import STAGES, fill_window, original_tick

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def timed(fn, min_seconds=2.0, min_runs=3, max_runs=200):
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < min_seconds and len(times) < max_runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def matmul_peak():
    """FLOP/s of a large fp32 matmul: the practical peak of this CPU at THREADS threads."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    sec = timed(lambda: torch.mm(a, b))
    return 2 * n**3 / sec


def main():
    torch.set_num_threads(THREADS)
    manifest = json.load(open(os.path.join(ROOT, "models", "tft.json")))
    onnx_path = os.path.join(ROOT, "models", manifest.get("onnx", "tft.onnx"))
    t = manifest["encoder_steps"]
    cfg = TFTConfig(**manifest["model"]["config"])
    model = TFT(cfg, np.ones(len(schema.METRICS), np.float32), np.full(len(schema.METRICS), 1e-3, np.float32)).eval()
    macs = count_macs(onnx_path)["macs"]

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])

    peak = matmul_peak()
    rows = []
    for b in (1, 100, 1000):
        feed = random_inputs(b, t)
        ort_s = timed(lambda: sess.run(None, feed))
        tens = {k: torch.from_numpy(v) for k, v in feed.items()}
        with torch.inference_mode():
            torch_s = timed(lambda: model(tens["past"], tens["past_mask"], tens["time_feat"], tens["profile"]))
        rows.append({"batch": b, "ort_per_s": b / ort_s, "torch_per_s": b / torch_s,
                     "ort_gflops": 2 * macs * b / ort_s / 1e9})
    print(f"## Inference: ONNX Runtime (Python) vs eager PyTorch, {THREADS} threads\n")
    print(f"MACs per server-forecast: {macs / 1e6:.1f} M; matmul peak: {peak / 1e9:.1f} GFLOP/s\n")
    print("| batch | ORT forecasts/s | eager PyTorch forecasts/s | ORT / PyTorch | ORT GFLOP/s | % of matmul peak |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['ort_per_s']:.0f} | {r['torch_per_s']:.0f} | {r['ort_per_s'] / r['torch_per_s']:.2f}x "
              f"| {r['ort_gflops']:.2f} | {100 * r['ort_gflops'] * 1e9 / peak:.1f} % |")

    ticks, stages, lean = {}, {}, {}
    for n in (100, 1000):
        ticks[n], stages[n] = original_tick(model, n, t, timed)
        lean[n] = lean_tick(model, n, t)
    print("\n## One tick the original's way (deploy/bench/original_way.py), mean ms per stage\n")
    print("| servers | tick p50 (ms) | " + " | ".join(STAGES) + " | lean variant p50 (ms) |")
    print("|---" * (len(STAGES) + 3) + "|")
    for n, sec in ticks.items():
        cells = " | ".join(f"{stages[n][s] * 1000:.0f}" for s in STAGES)
        print(f"| {n} | {sec * 1000:.0f} | {cells} | {lean[n] * 1000:.0f} |")
    print("RESULT " + json.dumps({
        "threads": THREADS, "macs": macs, "peak_flops": peak, "inference": rows,
        "original_tick_ms": {str(n): s * 1000 for n, s in ticks.items()},
        "lean_tick_ms": {str(n): s * 1000 for n, s in lean.items()},
        "original_stage_ms": {str(n): {k: v * 1000 for k, v in st.items()} for n, st in stages.items()},
    }))


def lean_tick(model, n, t):
    """The floor: the window's records already parsed, one vectorised groupby into tensors, the
    forward pass and the forecasts as JSON; none of the original's other per-tick work."""
    rng = np.random.default_rng(1)
    servers = [f"ppweb{i:04d}" for i in range(n)]
    step = 300_000
    t0 = 1_764_000_000_000
    records = []
    for k in range(t):
        vals = rng.random((n, len(schema.METRICS))) * 50
        for i, s in enumerate(servers):
            rec = {"server_name": s, "timestamp": t0 + k * step, "profile": "web_api"}
            rec.update(zip(schema.METRICS, vals[i].tolist()))
            records.append(rec)

    def tick():
        df = pd.DataFrame.from_records(records)
        df = df.sort_values(["server_name", "timestamp"])
        past = np.zeros((n, t, len(schema.METRICS)), np.float32)
        mask = np.zeros_like(past)
        for i, (_, g) in enumerate(df.groupby("server_name", sort=True)):
            fill_window(past, mask, i, g, t)
        cal = calendar_features(t0 + np.arange(t + schema.HORIZON) * step)
        time_feat = np.broadcast_to(cal, (n, t + schema.HORIZON, 4))
        profile = np.full(n, schema.PROFILES.index("web_api"), np.int64)
        with torch.inference_mode():
            out = model(torch.from_numpy(past), torch.from_numpy(mask), torch.from_numpy(time_feat.copy()), torch.from_numpy(profile))
        q = (out[0] if isinstance(out, (tuple, list)) else out).numpy()
        body = {"predictions": {s: {tgt: {"p10": q[i, :, j, 0].tolist(), "p50": q[i, :, j, 1].tolist(), "p90": q[i, :, j, 2].tolist()}
                                    for j, tgt in enumerate(schema.TARGETS)} for i, s in enumerate(servers)}}
        json.dumps(body)

    return timed(tick, min_seconds=3.0, min_runs=3, max_runs=20)


if __name__ == "__main__":
    sys.exit(main())
