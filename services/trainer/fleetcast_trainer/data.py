"""Loading metric data into one dense array per fleet: `values[server, step, metric]`, NaN where a
metric was not reported. Everything downstream (windows, baselines, evaluation) indexes this.

Sources: the generator's parquet export, and the NAB CloudWatch CSVs (each file becomes a server
that reports a single metric; see NAB_MAPPING for why each file maps where it does).
"""

import csv
import datetime as dt
import hashlib
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq

from . import schema

SCENARIOS = ["healthy", "degrading", "critical", "cascade"]


@dataclass
class Fleet:
    servers: list
    profiles: np.ndarray  # [S] int64 index into schema.PROFILES
    ts0_ms: int  # start of step 0
    values: np.ndarray  # [S, N, 14] float32, NaN = not reported
    scenario: np.ndarray = None  # [S, N] int8 index into SCENARIOS (-1 unknown)
    name: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return self.values.shape[1]

    def ts_ms(self, steps):
        return self.ts0_ms + np.asarray(steps, dtype=np.int64) * schema.STEP_MS

    def target_series(self) -> np.ndarray:
        """[S, N, 8] target values in raw units (CPU used = 100 - idle), NaN when unknown."""
        v = self.values[:, :, schema.TARGET_METRIC_INDEX]
        return np.asarray(schema.TARGET_OFFSET, np.float32) + np.asarray(schema.TARGET_SIGN, np.float32) * v


def file_fingerprint(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def load_parquet(path: str) -> Fleet:
    """Reads the generator's export (columns: server, profile, ts_ms, 14 metrics, scenario, ...)."""
    table = pq.read_table(path)
    cols = set(table.column_names)
    missing = [c for c in ["server", "profile", "ts_ms", *schema.METRICS] if c not in cols]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    server = np.asarray(table.column("server").to_pylist(), dtype=object)
    ts = table.column("ts_ms").to_numpy().astype(np.int64)
    names, s_idx = np.unique(server, return_inverse=True)
    ts0 = int(ts.min())
    if np.any((ts - ts0) % schema.STEP_MS):
        raise ValueError(f"{path}: ts_ms not on a {schema.STEP_MS} ms grid")
    step = (ts - ts0) // schema.STEP_MS
    n = int(step.max()) + 1
    values = np.full((len(names), n, len(schema.METRICS)), np.nan, np.float32)
    for j, m in enumerate(schema.METRICS):
        col = table.column(m).to_numpy(zero_copy_only=False)
        values[s_idx, step, j] = np.asarray(col, dtype=np.float32)  # nulls arrive as NaN
    prof_names = np.asarray(table.column("profile").to_pylist(), dtype=object)
    profiles = np.full(len(names), schema.PROFILES.index("generic"), np.int64)
    for i, p in zip(s_idx, prof_names):
        if p not in schema.PROFILES:
            raise ValueError(f"{path}: unknown profile {p!r}")
        profiles[i] = schema.PROFILES.index(p)
    scenario = np.full((len(names), n), -1, np.int8)
    if "scenario" in cols:
        sc = np.asarray(table.column("scenario").to_pylist(), dtype=object)
        codes = np.array([SCENARIOS.index(x) if x in SCENARIOS else -1 for x in sc], np.int8)
        scenario[s_idx, step] = codes
    return Fleet(list(names), profiles, ts0, values, scenario, name=os.path.basename(path))


# NAB file kind -> (metric it is fed as, conversion from the file's unit).
# - CPU utilisation (%) is the CPU-used target, and CPU used = 100 - idle, so it is fed as idle.
# - network_in is bytes per 5-minute period -> MB/s.
# - disk_write_bytes is bytes written per 5 minutes. There is no disk-throughput metric in the
#   schema; on EC2 the disk is EBS, which is network-attached, so written bytes leave the host as
#   network traffic: it is fed as net_out (MB/s), the closest metric in both unit and behaviour.
NAB_MAPPING = {
    "cpu_utilization": ("cpu_idle_pct", lambda v: 100.0 - v),
    "network_in": ("net_in_mb_s", lambda v: v / 300.0 / 1.0e6),
    "disk_write_bytes": ("net_out_mb_s", lambda v: v / 300.0 / 1.0e6),
}


def nab_kind(filename: str) -> str:
    for kind in NAB_MAPPING:
        if kind in filename:
            return kind
    raise ValueError(f"no NAB mapping for {filename}")


def load_nab(path: str) -> Fleet:
    """One NAB CSV as a one-server fleet that reports only the mapped metric (profile generic)."""
    kind = nab_kind(os.path.basename(path))
    metric, conv = NAB_MAPPING[kind]
    ts, vals = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            t = dt.datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
            ts.append(int(t.timestamp() * 1000))
            vals.append(float(row["value"]))
    ts = np.asarray(ts, np.int64)
    # Round to the 5-minute grid anchored at the first sample (NAB series start at e.g. hh:27).
    ts0 = int(ts[0])
    step = np.rint((ts - ts0) / schema.STEP_MS).astype(np.int64)
    n = int(step.max()) + 1
    values = np.full((1, n, len(schema.METRICS)), np.nan, np.float32)
    values[0, step, schema.METRICS.index(metric)] = conv(np.asarray(vals, np.float64)).astype(np.float32)
    name = os.path.splitext(os.path.basename(path))[0]
    fleet = Fleet([name], np.array([schema.PROFILES.index("generic")]), ts0, values, None, name=name)
    fleet.meta = {"kind": kind, "metric": metric, "target": target_of_metric(metric)}
    return fleet


def target_of_metric(metric: str) -> str:
    for t, (m, _, _) in schema.TARGET_SOURCE.items():
        if m == metric:
            return t
    raise ValueError(metric)


def global_scales(fleet: Fleet) -> np.ndarray:
    """Per-metric standard deviation over all observed values: the fixed unit the loss is
    measured in and the reference for the static level features (baked into the graph)."""
    with warnings.catch_warnings():  # a metric no server reports (real VMs) has no std: unit 1
        warnings.simplefilter("ignore", RuntimeWarning)
        s = np.nanstd(fleet.values.reshape(-1, fleet.values.shape[-1]).astype(np.float64), axis=0)
    return np.where(np.isfinite(s) & (s > 1e-3), s, 1.0).astype(np.float32)


# ----- Bitbrains (real VMs) ------------------------------------------------------------------------

# The Bitbrains "Rnd" trace (GWA-T-12) as a fleet of `generic` servers that report only what the
# trace has: CPU used (fed as idle), memory used %, network in/out. Everything else stays NaN
# (unknown, masked), never zero.
# Two VM-level splits, both by VM id so no VM is on two sides:
# - hold-out (`vm % holdout_every == 0`): the lead's real validation set. Never trained on, never
#   used for early stopping; evaluated in the card when the given file has any (the shipped
#   training file has none: the trace's publisher keeps them out of it);
# - card evaluation (`vm % eval_every == eval_rem`): VMs of the training file set aside the same way
#   (no training, no early stopping) so the card has a real-data evaluation on unseen VMs.
BITBRAINS_METRICS = ("cpu_idle_pct", "mem_used_pct", "net_in_mb_s", "net_out_mb_s")
BITBRAINS_COLUMNS = ("vm", "ts", "cpu_pct", "mem_prov_kb", "mem_used_kb", "net_rx_kbs", "net_tx_kbs")
BITBRAINS_PARTS = ("train", "holdout", "eval", "all")


def is_holdout_vm(vm, every: int):
    """True for the held-out VMs (`vm % every == 0`); `every <= 0` holds nothing out."""
    vm = np.asarray(vm, np.int64)
    return (vm % every == 0) if every and every > 0 else np.zeros(vm.shape, bool)


def bitbrains_part(vm, holdout_every: int = 5, eval_every: int = 10, eval_rem: int = 1):
    """Which part each VM id belongs to: "holdout", "eval" or "train" (array of str)."""
    vm = np.asarray(vm, np.int64)
    hold = is_holdout_vm(vm, holdout_every)
    ev = ~hold & ((vm % eval_every == eval_rem) if eval_every and eval_every > 0 else np.zeros(vm.shape, bool))
    return np.where(hold, "holdout", np.where(ev, "eval", "train"))


def bitbrains_metrics(cpu_pct, mem_prov_kb, mem_used_kb, net_rx_kbs, net_tx_kbs):
    """The trace's columns in Fleetcast's metrics: {metric: float64 array}, NaN where unknown."""
    cpu = np.clip(np.asarray(cpu_pct, np.float64), 0.0, 100.0)
    prov = np.asarray(mem_prov_kb, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mem = np.where(prov > 0, np.clip(100.0 * np.asarray(mem_used_kb, np.float64) / prov, 0.0, 100.0), np.nan)
    return {
        "cpu_idle_pct": 100.0 - cpu,
        "mem_used_pct": mem,
        "net_in_mb_s": np.asarray(net_rx_kbs, np.float64) / 1000.0,
        "net_out_mb_s": np.asarray(net_tx_kbs, np.float64) / 1000.0,
    }


def load_bitbrains(path: str, part: str = "train", holdout_every: int = 5, eval_every: int = 10,
                   eval_rem: int = 1, allow_empty: bool = False) -> Fleet:
    """The Bitbrains parquet as one fleet on the union time axis of its VMs (5-minute grid,
    `ts // 300`, duplicates in a step averaged), NaN outside each VM's span and in its gaps.

    `part` (see `bitbrains_part`): "train" = neither held out nor set aside for the card,
    "holdout" = `vm % holdout_every == 0`, "eval" = `vm % eval_every == eval_rem` (and not held
    out), "all" = every VM. A part without VMs is an error, or None with `allow_empty`."""
    if part not in BITBRAINS_PARTS:
        raise ValueError(f"part must be one of {BITBRAINS_PARTS}, not {part!r}")
    table = pq.read_table(path, columns=list(BITBRAINS_COLUMNS))
    vm = table.column("vm").to_numpy().astype(np.int64)
    parts = bitbrains_part(np.unique(vm), holdout_every, eval_every, eval_rem)
    chosen = np.unique(vm) if part == "all" else np.unique(vm)[parts == part]
    keep = np.isin(vm, chosen)
    if not keep.any():
        if allow_empty:
            return None
        raise ValueError(f"{path}: no VMs in part {part!r} (holdout_every={holdout_every}, "
                         f"eval: vm % {eval_every} == {eval_rem})")
    col = lambda c: table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)[keep]
    vm = vm[keep]
    cell = table.column("ts").to_numpy().astype(np.int64)[keep] // (schema.STEP_MS // 1000)
    mets = bitbrains_metrics(col("cpu_pct"), col("mem_prov_kb"), col("mem_used_kb"), col("net_rx_kbs"),
                             col("net_tx_kbs"))
    names, s_idx = np.unique(vm, return_inverse=True)
    c0 = int(cell.min())
    step = cell - c0
    n = int(step.max()) + 1
    values = np.full((len(names), n, len(schema.METRICS)), np.nan, np.float32)
    flat = s_idx * n + step  # one id per (VM, step): duplicates in a step are averaged
    uniq, inv = np.unique(flat, return_inverse=True)
    for m, v in mets.items():
        ok = np.isfinite(v)
        tot = np.bincount(inv[ok], weights=v[ok], minlength=len(uniq))
        cnt = np.bincount(inv[ok], minlength=len(uniq))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
        values[uniq // n, uniq % n, schema.METRICS.index(m)] = mean.astype(np.float32)
    profiles = np.full(len(names), schema.PROFILES.index("generic"), np.int64)
    fleet = Fleet([f"bitbrains-vm{int(v)}" for v in names], profiles, c0 * schema.STEP_MS, values, None,
                  name=os.path.basename(path))
    fleet.meta = {"source": "bitbrains", "part": part, "holdout_every": holdout_every, "eval_every": eval_every,
                  "eval_rem": eval_rem, "vms": [int(v) for v in names], "rows": int(keep.sum())}
    return fleet


def observed_origins(fleet: Fleet, lo: int, hi: int, metric: str = "cpu_idle_pct"):
    """(server, origin) pairs with origin in [lo, hi] where `metric` was observed at the origin:
    training windows of a sparse fleet (real VMs with different spans) are drawn from these."""
    j = schema.METRICS.index(metric)
    lo, hi = max(int(lo), 0), min(int(hi), fleet.n_steps - 1)
    if hi < lo:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    s, o = np.nonzero(np.isfinite(fleet.values[:, lo:hi + 1, j]))
    return s.astype(np.int64), (o + lo).astype(np.int64)
