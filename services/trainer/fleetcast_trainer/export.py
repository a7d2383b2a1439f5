"""ONNX export, the manifest (`tft.json`) and the golden parity fixture (`golden.json`).

The graph is exported with the TorchScript-based exporter (`dynamo=False`), which writes the weights
inside the `.onnx` file: the contract wants one self-contained file. Any external data that might
still appear is folded back in before the file is written.
"""

import datetime as dt
import hashlib
import json
import os
import platform
import warnings

import numpy as np
import onnx
import torch

from . import schema
from .data import Fleet
from .model import TFT
from .windows import make_batch

INPUTS = ["past", "past_mask", "time_feat", "profile"]
OUTPUTS = ["quantiles", "var_weights", "attention"]
OPSET = 17
GOLDEN_ATOL = 1e-4


def _example(cfg, b=2):
    t, h = cfg.encoder_steps, cfg.horizon
    g = torch.Generator().manual_seed(0)
    return (torch.rand(b, t, 14, generator=g) * 50, torch.ones(b, t, 14), torch.rand(b, t + h, 4, generator=g) * 2 - 1,
            torch.zeros(b, dtype=torch.long))


def export_onnx(model: TFT, path: str) -> str:
    model = model.cpu().eval()
    tmp = path + ".tmp"
    with torch.no_grad(), warnings.catch_warnings():
        # The LSTM's own shape checks and the h0/c0 note are about tracing, not about this graph
        # (batch is dynamic and tested at several sizes).
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(model, _example(model.cfg), tmp, input_names=INPUTS, output_names=OUTPUTS,
                          dynamic_axes={n: {0: "batch"} for n in INPUTS + OUTPUTS}, opset_version=OPSET,
                          dynamo=False, do_constant_folding=True)
    proto = onnx.load(tmp, load_external_data=True)
    proto.producer_name = "fleetcast-trainer"
    onnx.checker.check_model(proto)
    onnx.save_model(proto, path, save_as_external_data=False)
    os.remove(tmp)
    if os.path.exists(tmp + ".data"):
        os.remove(tmp + ".data")
    return path


def io_spec(cfg):
    t, h = cfg.encoder_steps, cfg.horizon
    k, n = len(schema.TARGETS), len(schema.METRICS)
    return (
        [{"name": "past", "shape": ["batch", t, n], "dtype": "float32"},
         {"name": "past_mask", "shape": ["batch", t, n], "dtype": "float32"},
         {"name": "time_feat", "shape": ["batch", t + h, 4], "dtype": "float32"},
         {"name": "profile", "shape": ["batch"], "dtype": "int64"}],
        [{"name": "quantiles", "shape": ["batch", h, k, 3], "dtype": "float32"},
         {"name": "var_weights", "shape": ["batch", n], "dtype": "float32"},
         {"name": "attention", "shape": ["batch", t], "dtype": "float32"}],
    )


def model_version(onnx_path: str) -> str:
    digest = hashlib.sha256(open(onnx_path, "rb").read()).hexdigest()[:8]
    return f"tft-{dt.datetime.now(dt.timezone.utc):%Y%m%d}-{digest}"


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{os.cpu_count()} cores {cpu}{gpu}, torch {torch.__version__}"


def write_manifest(path: str, model: TFT, onnx_name: str, version: str, min_history: int, training: dict,
                   evaluation: dict, extra: dict = None):
    inputs, outputs = io_spec(model.cfg)
    manifest = {
        "version": version,
        "onnx": onnx_name,
        "encoder_steps": model.cfg.encoder_steps,
        "horizon_steps": model.cfg.horizon,
        "min_history_steps": int(min_history),
        "step_ms": schema.STEP_MS,
        "metrics": schema.METRICS,
        "targets": schema.TARGETS,
        "profiles": schema.PROFILES,
        "quantiles": schema.QUANTILES,
        "opset": OPSET,
        "inputs": inputs,
        "outputs": outputs,
        "notes": {
            "var_weights": "past variable-selection weights of the 14 metrics, averaged over the past steps "
                           "that had any observed metric, renormalised over the metrics (calendar inputs excluded)",
            "attention": "decoder-to-past attention averaged over heads and the 96 future steps, renormalised "
                         "over the past steps (left-padding steps get 0)",
            "unobserved_targets": "a target whose metric has no observed value in the window gets a forecast "
                                  "anyway; it is meaningless and must not be shown",
        },
        "model": {"config": model.cfg.to_dict(), "parameters": int(sum(p.numel() for p in model.parameters()))},
        "training": training,
        "evaluation": evaluation,
    }
    if extra:
        manifest.update(extra)
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1, allow_nan=False)
        f.write("\n")
    return manifest


def golden_batch(fleet: Fleet, t: int, seed: int = 3):
    """A few windows exercising the contract's edge cases: a full window, a warm-up server (left
    padding), a server with missing metrics, and a single-metric server."""
    rng = np.random.default_rng(seed)
    s = fleet.values.shape[0]
    n = fleet.n_steps
    servers = rng.integers(0, s, 4)
    origins = rng.integers(t, n - schema.HORIZON - 1, 4)
    b = make_batch(fleet, servers, origins, t)
    b.past_mask[1, : t - 40] = 0.0  # warm-up: only the last 40 steps known
    b.past_mask[2, :, [4, 9, 10]] = 0.0  # java, net_out, back_close_wait not reported
    keep = schema.METRICS.index("cpu_idle_pct")
    b.past_mask[3] = 0.0
    b.past_mask[3, :, keep] = 1.0
    b.past[b.past_mask == 0] = 0.0
    return b


def write_golden(path: str, model: TFT, batch, version: str):
    model.eval()
    with torch.no_grad():
        outs = model(*[torch.from_numpy(getattr(batch, k)) for k in INPUTS])
    lst = lambda a: np.asarray(a).tolist()
    golden = {
        "model_version": version,
        "atol": GOLDEN_ATOL,
        "rtol": GOLDEN_ATOL,
        "tolerance": "|onnx - expected| <= atol + rtol * |expected|, elementwise",
        "inputs": {k: {"shape": list(getattr(batch, k).shape), "dtype": str(getattr(batch, k).dtype),
                       "data": lst(getattr(batch, k).ravel())} for k in INPUTS},
        "outputs": {k: {"shape": list(v.shape), "dtype": "float32", "data": lst(v.numpy().ravel())}
                    for k, v in zip(OUTPUTS, outs)},
    }
    with open(path, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
    return golden


def load_golden(path: str):
    g = json.load(open(path))
    arr = lambda e: np.asarray(e["data"], dtype=e["dtype"]).reshape(e["shape"])
    return {k: arr(v) for k, v in g["inputs"].items()}, {k: arr(v) for k, v in g["outputs"].items()}, g
