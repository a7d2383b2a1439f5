"""Rolling-origin evaluation of the model against the baselines on data it never saw.

At every origin every method forecasts the next 96 steps from what was known then. The model sees
its encoder window (all metrics, as the predictor would feed it); the baselines see the whole
target series up to the origin. Scores are per target, then averaged over targets ("overall").
"""

import numpy as np
import onnxruntime as ort
import torch

from . import metrics, schema
from .baselines import all_baselines, ffill
from .data import Fleet
from .windows import make_batch

METHODS = ["tft", "last_value", "seasonal_naive", "holt_winters"]
BASELINES = METHODS[1:]


def ort_predictor(path: str, threads: int = 2):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return lambda inputs: sess.run(["quantiles"], inputs)[0]


def torch_predictor(model):
    model.eval()

    def predict(inputs):
        with torch.no_grad():
            args = [torch.from_numpy(inputs[k]) for k in ("past", "past_mask", "time_feat", "profile")]
            return model(*args)[0].numpy()
    return predict


def forecast(predict, fleet: Fleet, origins, t: int, history=None, batch: int = 1000):
    """Model quantiles [S, O, H, 8, 3] for every server at every origin."""
    s = fleet.values.shape[0]
    ss, oo = np.meshgrid(np.arange(s), origins, indexing="ij")
    ss, oo = ss.ravel(), oo.ravel()
    out = []
    for lo in range(0, len(ss), batch):
        b = make_batch(fleet, ss[lo:lo + batch], oo[lo:lo + batch], t, history=history)
        out.append(predict(b.inputs()))
    return np.concatenate(out).reshape(s, len(origins), schema.HORIZON, len(schema.TARGETS), 3)


def _windows(series, origins, h=schema.HORIZON):
    """Actuals [M, O, H] after each origin."""
    idx = origins[:, None] + np.arange(1, h + 1)[None, :]
    return series[:, idx]


def evaluate_fleet(predict, fleet: Fleet, origins, t: int, with_breaches: bool = True, keep_arrays: bool = False):
    origins = np.asarray(origins, np.int64)
    s = fleet.values.shape[0]
    k = len(schema.TARGETS)
    targets = fleet.target_series()  # [S, N, 8]
    series = targets.transpose(2, 0, 1).reshape(k * s, -1).astype(np.float64)  # [8*S, N]
    upper = np.repeat(np.asarray(schema.TARGET_UPPER), s)
    model_q = forecast(predict, fleet, origins, t)  # [S, O, H, 8, 3]
    preds = {"tft": model_q.transpose(3, 0, 1, 2, 4).reshape(k * s, len(origins), schema.HORIZON, 3)}
    preds.update(all_baselines(series, origins, upper))

    actual = _windows(series, origins)  # [M, O, H]
    # A window counts for a target only if the target's metric was seen in the model's input window.
    past_idx = origins[:, None] + np.arange(-t + 1, 1)[None, :]
    seen = np.isfinite(series[:, np.clip(past_idx, 0, None)]).any(-1)  # [M, O]
    actual = np.where(seen[..., None], actual, np.nan)
    last = ffill(series)[:, origins]  # [M, O] value at the origin, for 'new breach' windows
    scale = metrics.naive_scale(series, int(origins[0]) + 1)

    per_target = {}
    for j, name in enumerate(schema.TARGETS):
        rows = slice(j * s, (j + 1) * s)
        y = actual[rows]
        if not np.isfinite(y).any():
            continue
        per_target[name] = {}
        for meth, q in preds.items():
            qq = q[rows]
            sc = np.repeat(scale[rows], len(origins))
            per_target[name][meth] = {
                "qrisk_p50": metrics.q_risk(y, qq, 0.5),
                "qrisk_p90": metrics.q_risk(y, qq, 0.9),
                "coverage": metrics.coverage(y, qq),
                "mase": metrics.mase(y.reshape(-1, y.shape[-1]), qq[..., 1].reshape(-1, y.shape[-1]), sc),
            }
    overall = {meth: {key: float(np.nanmean([per_target[tg][meth][key] for tg in per_target]))
                      for key in ("qrisk_p50", "qrisk_p90", "coverage", "mase")} for meth in preds}
    result = {"per_target": per_target, "overall": overall, "windows": int(s * len(origins)),
              "servers": s, "origins": len(origins)}

    if fleet.scenario is not None and (fleet.scenario >= 0).any():
        result["by_scenario"] = _by_scenario(fleet, origins, actual, preds, s)
    if with_breaches:
        result["breaches"] = _breaches(actual, preds, last, s)
    if keep_arrays:
        result["arrays"] = {"actual": actual, "preds": preds, "series": series, "origins": origins, "s": s}
    return result


def _by_scenario(fleet, origins, actual, preds, s):
    """P50/P90 q-risk split by whether an episode (degrading/critical/cascade) touches the window."""
    idx = origins[:, None] + np.arange(0, schema.HORIZON + 1)[None, :]
    sc = fleet.scenario[:, idx]  # [S, O, H+1]
    episode = (sc > 0).any(-1)  # [S, O]
    k = len(schema.TARGETS)
    out = {}
    for label, sel in (("healthy", ~episode), ("episode", episode)):
        if not sel.any():
            continue
        sel_m = np.tile(sel, (k, 1))  # [8*S, O]
        out[label] = {"windows": int(sel.sum())}
        for meth, q in preds.items():
            vals50, vals90 = [], []
            for j in range(k):
                rows = slice(j * s, (j + 1) * s)
                y = np.where(sel_m[rows][..., None], actual[rows], np.nan)
                if np.isfinite(y).any():
                    vals50.append(metrics.q_risk(y, q[rows], 0.5))
                    vals90.append(metrics.q_risk(y, q[rows], 0.9))
            out[label][meth] = {"qrisk_p50": float(np.nanmean(vals50)), "qrisk_p90": float(np.nanmean(vals90))}
    return out


def _breaches(actual, preds, last, s):
    out = {}
    for tg, thr in schema.BREACH_THRESHOLDS.items():
        j = schema.TARGETS.index(tg)
        rows = slice(j * s, (j + 1) * s)
        y = actual[rows].reshape(-1, schema.HORIZON)
        lst = last[rows].reshape(-1)
        for wname, steps in schema.BREACH_WINDOWS.items():
            key = f"{tg}>{thr:g}@{wname}"
            out[key] = {}
            for meth, q in preds.items():
                c = metrics.breach_counts(y, q[rows][..., 2].reshape(-1, schema.HORIZON), lst, thr, steps)
                p, r = metrics.precision_recall(c)
                out[key][meth] = {**c, "precision": p, "recall": r}
    return out


def history_curve(predict, fleet: Fleet, origins, t: int, lengths):
    """Model P50/P90 q-risk (mean over targets) when only the last L steps are known."""
    s = fleet.values.shape[0]
    series = fleet.target_series()
    actual = np.stack([_windows(series[:, :, j], np.asarray(origins)) for j in range(len(schema.TARGETS))], -1)
    rows = []
    for length in lengths:
        q = forecast(predict, fleet, origins, t, history=int(length))
        r50, r90 = [], []
        for j in range(len(schema.TARGETS)):
            y = actual[..., j]
            if np.isfinite(y).any():
                r50.append(metrics.q_risk(y, q[..., j, :], 0.5))
                r90.append(metrics.q_risk(y, q[..., j, :], 0.9))
        rows.append({"history_steps": int(length), "qrisk_p50": float(np.mean(r50)), "qrisk_p90": float(np.mean(r90))})
    return rows


def choose_min_history(curve, tolerance: float = 0.10) -> int:
    """Smallest history whose P50 q-risk is within `tolerance` of the full-window one."""
    full = curve[-1]["qrisk_p50"]
    for row in curve:
        if row["qrisk_p50"] <= full * (1 + tolerance):
            return row["history_steps"]
    return curve[-1]["history_steps"]


def nab_origins(n_steps: int, part: str, every: int = 12):
    """Final report: origins whose horizon lies in the last third (never used for choices).
    Dev: origins after two days whose horizon ends before the last third."""
    third = (2 * n_steps) // 3
    if part == "final":
        return np.arange(third - 1, n_steps - schema.HORIZON, every, dtype=np.int64)
    return np.arange(2 * schema.DAY_STEPS, third - schema.HORIZON, every, dtype=np.int64)


def evaluate_nab(predict, fleets, t: int, part: str):
    """Per-file scores of the mapped target, and their mean over files."""
    files = {}
    plot_items = []
    for fleet in fleets:
        origins = nab_origins(fleet.n_steps, part)
        res = evaluate_fleet(predict, fleet, origins, t, with_breaches=False, keep_arrays=True)
        tg = fleet.meta["target"]
        files[fleet.name] = {"target": tg, "metric": fleet.meta["metric"], "origins": len(origins),
                             **res["per_target"][tg]}
        arr = res["arrays"]
        j = schema.TARGETS.index(tg)
        y, q = arr["actual"][j], arr["preds"]["tft"][j]
        err = np.nansum(np.abs(y - q[..., 1]), -1)
        k = int(np.argsort(err)[len(err) // 2])
        plot_items.append((fleet.name, arr["series"][j], int(origins[k]), q[k], arr["preds"]["seasonal_naive"][j, k]))
    mean = {m: {key: float(np.mean([f[m][key] for f in files.values()]))
                for key in ("qrisk_p50", "qrisk_p90", "coverage", "mase")} for m in METHODS}
    wins = {key: int(sum(f["tft"][key] <= f["seasonal_naive"][key] for f in files.values()))
            for key in ("qrisk_p50", "qrisk_p90")}
    return {"files": files, "mean": mean, "tft_not_worse_than_seasonal_naive": wins, "part": part}, plot_items
