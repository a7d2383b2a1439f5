"""A small synthetic fleet in the generator's export format, for the trainer's own tests (and for
`--synthetic` dry runs): same columns and types as `generator export`, with profile baselines, a
diurnal cycle, AR(1) noise, degrading/critical episodes and missing values. It is NOT the training
data; the shipped model is trained on the Rust generator's output.
"""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.signal import lfilter

from . import schema

_PREFIX = {"ml_compute": "ppml", "database": "ppdb", "web_api": "ppweb", "conductor_mgmt": "ppcon",
           "data_ingest": "ppetl", "risk_analytics": "pprisk", "generic": "ppgen"}
# Baseline mean per profile for (cpu_user, iowait, mem, net_in, net_out, load).
_BASE = {
    "ml_compute": (55, 2, 70, 20, 15, 6), "database": (30, 15, 65, 40, 40, 4),
    "web_api": (25, 1, 50, 60, 120, 2), "conductor_mgmt": (15, 1, 40, 10, 10, 1),
    "data_ingest": (35, 5, 55, 150, 40, 3), "risk_analytics": (45, 2, 60, 15, 10, 8.2),
    "generic": (20, 2, 40, 10, 10, 1),
}


def _diurnal(hours):
    f = np.select([hours < 7, hours < 9, hours < 16, hours < 19], [0.8, 1.0, 1.1, 1.2], 1.0)
    return f


def synth_fleet(path: str, servers: int = 14, days: float = 4, seed: int = 0,
                start_ms: int = 1_767_225_600_000) -> str:
    rng = np.random.default_rng(seed)
    n = int(days * schema.DAY_STEPS)
    steps = np.arange(n)
    ts = start_ms + steps * schema.STEP_MS
    hours = (ts % 86_400_000) / 3_600_000
    cols = {k: [] for k in ["server", "profile", "ts_ms", "step", *schema.METRICS, "state", "scenario",
                            "problem_child", "cascade_impact"]}
    profiles = list(_PREFIX)
    for i in range(servers):
        prof = profiles[i % len(profiles)]
        name = f"{_PREFIX[prof]}{i + 1:04d}"
        cpu, iow, mem, nin, nout, load = _BASE[prof]
        diurnal = _diurnal(hours) * rng.uniform(0.9, 1.1)
        ramp = np.zeros(n)
        scenario = np.array(["healthy"] * n, dtype=object)
        for _ in range(rng.poisson(days / 2)):
            s0 = rng.integers(0, n - 48)
            length = rng.integers(24, 120)
            up = np.clip((steps - s0) / 24.0, 0, 1) * (steps < s0 + length)
            ramp = np.maximum(ramp, up)
            scenario[(steps >= s0) & (steps < s0 + length)] = "degrading" if rng.random() < 0.6 else "critical"

        def ar(mean, sd):  # x[k] = 0.85 x[k-1] + 0.15 mean[k] + eps[k]
            mean = np.broadcast_to(mean, (n,))
            drive = 0.15 * mean + rng.normal(0, sd, n)
            return lfilter([1.0], [1.0, -0.85], drive, zi=[0.85 * mean[0]])[0]

        cpu_u = np.clip(ar(cpu * diurnal * (1 - ramp) + 80 * ramp, 2.0), 0, 100)
        cpu_s = np.clip(ar(np.full(n, 5.0), 0.5), 0, 100)
        io = np.clip(ar(iow * diurnal * (1 + 2 * ramp), 0.5), 0, 100)
        idle = np.clip(100 - cpu_u - cpu_s - io, 0, 100)
        vals = {
            "cpu_user_pct": cpu_u, "cpu_sys_pct": cpu_s, "cpu_iowait_pct": io, "cpu_idle_pct": idle,
            "java_cpu_pct": np.clip(cpu_u * 0.6, 0, 100),
            "mem_used_pct": np.clip(ar(mem * (1 - ramp) + 85 * ramp, 0.8), 0, 100),
            "swap_used_pct": np.clip(ar(2 + 20 * ramp, 0.3), 0, 100),
            "disk_usage_pct": np.clip(40 + steps * 0.001 + rng.normal(0, 0.05, n), 0, 100),
            "net_in_mb_s": np.clip(ar(nin * diurnal * (1 - 0.6 * ramp), nin * 0.05), 0, None),
            "net_out_mb_s": np.clip(ar(nout * diurnal * (1 - 0.6 * ramp), nout * 0.05), 0, None),
            "back_close_wait": np.round(np.clip(ar(3 + 20 * ramp, 0.5), 0, None)),
            "front_close_wait": np.round(np.clip(ar(2 + 10 * ramp, 0.5), 0, None)),
            "load_average": np.clip(ar(load * diurnal * (1 + ramp), 0.2), 0, None),
            "uptime_days": 5 + steps / schema.DAY_STEPS,
        }
        no_java = prof not in ("ml_compute", "risk_analytics")
        for m in schema.METRICS:
            v = vals[m].astype(np.float32).astype(object)
            v[rng.random(n) < 0.01] = None
            if m == "java_cpu_pct" and no_java:
                v[:] = None
            cols[m].extend(v.tolist())
        cols["server"].extend([name] * n)
        cols["profile"].extend([prof] * n)
        cols["ts_ms"].extend(ts.tolist())
        cols["step"].extend(steps.tolist())
        cols["state"].extend(np.where(ramp > 0.5, "critical_issue", "healthy").tolist())
        cols["scenario"].extend(scenario.tolist())
        cols["problem_child"].extend([bool(i % 10 == 0)] * n)
        cols["cascade_impact"].extend([0.0] * n)
    fields = [pa.field("server", pa.string()), pa.field("profile", pa.string()), pa.field("ts_ms", pa.int64()),
              pa.field("step", pa.int64())]
    fields += [pa.field(m, pa.float32()) for m in schema.METRICS]
    fields += [pa.field("state", pa.string()), pa.field("scenario", pa.string()),
               pa.field("problem_child", pa.bool_()), pa.field("cascade_impact", pa.float32())]
    table = pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in fields})
    pq.write_table(table, path)
    return path
