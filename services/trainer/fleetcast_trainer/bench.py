"""Inference cost of the exported graph: multiply-accumulates per server-forecast counted from the
ONNX graph itself (shape inference at batch 1), and ONNX Runtime throughput at several batch sizes.
"""

import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import shape_inference

from . import schema


def _fixed_batch(model: onnx.ModelProto, b: int = 1) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in list(m.graph.input) + list(m.graph.output):
        dim = vi.type.tensor_type.shape.dim
        if dim and dim[0].dim_param:
            dim[0].ClearField("dim_param")
            dim[0].dim_value = b
    return shape_inference.infer_shapes(m, data_prop=True)


def count_macs(path: str) -> dict:
    """MACs of MatMul/Gemm/LSTM nodes and the number of elements written by all other nodes
    (a proxy for elementwise FLOPs), for one server-forecast."""
    m = _fixed_batch(onnx.load(path))
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)
    macs, elementwise, unknown = 0, 0, 0
    for node in m.graph.node:
        ins = [shapes.get(n) for n in node.input]
        out = shapes.get(node.output[0]) if node.output else None
        if node.op_type in ("MatMul", "FusedMatMul", "Gemm") and ins[0] and ins[1] and None not in ins[0] + ins[1]:
            a, bm = ins[0], ins[1]
            k = a[-1]
            n = bm[-1] if not (node.op_type == "Gemm" and any(x.name == "transB" and x.i for x in node.attribute)) else bm[0]
            lead = int(np.prod(out[:-1])) if out and None not in out else int(np.prod(a[:-1]))
            macs += lead * k * n
        elif node.op_type == "LSTM" and ins[0] and None not in ins[0]:
            seq, batch, inp = ins[0]
            hidden = next(x.i for x in node.attribute if x.name == "hidden_size")
            macs += seq * batch * 4 * hidden * (inp + hidden)
        elif out and None not in out:
            elementwise += int(np.prod(out))
        else:
            unknown += 1
    return {"macs": int(macs), "flops_matmul": int(2 * macs), "elementwise_outputs": int(elementwise),
            "nodes": len(m.graph.node), "nodes_without_shape": unknown}


def random_inputs(b: int, t: int, rng=None):
    rng = rng or np.random.default_rng(0)
    h = schema.HORIZON
    return {
        "past": (rng.random((b, t, 14)) * 50).astype(np.float32),
        "past_mask": (rng.random((b, t, 14)) > 0.05).astype(np.float32),
        "time_feat": (rng.random((b, t + h, 4)) * 2 - 1).astype(np.float32),
        "profile": rng.integers(0, len(schema.PROFILES), b).astype(np.int64),
    }


def throughput(path: str, t: int, batches=(1, 100, 1000), threads: int = 2, min_seconds: float = 3.0) -> list:
    """Server-forecasts per second per batch size: from the best (least disturbed) run, as timeit
    recommends, and from the median run; plus the process CPU time per run (what the work costs,
    whatever else the machine is doing) and the load average while measuring."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    rows = []
    for b in batches:
        feed = random_inputs(b, t)
        sess.run(None, feed)
        times, cpu = [], []
        start = time.perf_counter()
        while len(times) < 5 or (time.perf_counter() - start < min_seconds and len(times) < 200):
            t0, c0 = time.perf_counter(), time.process_time()
            sess.run(None, feed)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        med = float(np.median(times))
        rows.append({"batch": b, "runs": len(times), "median_ms": med * 1000, "best_ms": min(times) * 1000,
                     "servers_per_s": b / min(times), "servers_per_s_median": b / med,
                     "cpu_ms_per_server": float(np.median(cpu)) * 1000 / b, "load_avg_1m": _load()})
    return rows


def _load() -> float:
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except (OSError, ValueError):
        return float("nan")
