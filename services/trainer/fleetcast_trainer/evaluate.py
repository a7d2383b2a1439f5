"""Rolling-origin evaluation of the model against the baselines on data it never saw.

At every origin every method forecasts the next 96 steps from what was known then. The model sees
its encoder window (all metrics, as the predictor would feed it); the baselines see the whole
target series up to the origin. Scores are per target, then averaged over targets ("overall").
"""

import numpy as np
import onnxruntime as ort
import torch

from . import metrics, schema
from .baselines import all_baselines, ffill, last_value, seasonal_naive
from .data import Fleet
from .windows import make_batch, rolling_origins

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


# ----- real held-out VMs (Bitbrains) -------------------------------------------------------------

REAL_METHODS = ["tft", "last_value", "seasonal_naive"]
REAL_TARGETS = ("cpu", "mem")


def real_eligible(fleet: Fleet, origins, target: str, min_observed: float = 0.5):
    """[S, O] windows that count for `target` on a fleet of VMs with different spans: the target's
    metric was observed at the origin and on at least `min_observed` of the day before it (so
    seasonal naive has its season and the model a real window, not a VM that has just appeared)."""
    j = schema.METRICS.index(schema.TARGET_SOURCE[target][0])
    obs = np.isfinite(fleet.values[:, :, j]).astype(np.float64)  # [S, N]
    csum = np.concatenate([np.zeros((obs.shape[0], 1)), np.cumsum(obs, 1)], 1)
    o = np.asarray(origins, np.int64)
    day = csum[:, o + 1] - csum[:, np.maximum(o + 1 - schema.DAY_STEPS, 0)]
    return (obs[:, o] > 0) & (day >= min_observed * schema.DAY_STEPS)


def evaluate_real(predict, fleet: Fleet, t: int, every: int = 36, targets=REAL_TARGETS, batch: int = 1000):
    """Rolling origins every `every` steps over each held-out VM's span (only eligible windows,
    see `real_eligible`); the TFT against last value and seasonal naive on the given targets.
    Scores pooled over all windows per target, then averaged over the targets ("overall"); per-VM
    scores give how many VMs the TFT is not worse than each baseline on."""
    origins = rolling_origins_real(fleet.n_steps, t, every)
    s = fleet.values.shape[0]
    tser = fleet.target_series().astype(np.float64)  # [S, N, 8]
    upper = np.asarray(schema.TARGET_UPPER)
    elig = {tg: real_eligible(fleet, origins, tg) for tg in targets}
    any_elig = np.logical_or.reduce(list(elig.values()))
    ss, oi = np.nonzero(any_elig)
    q_model = np.empty((len(ss), schema.HORIZON, len(targets), 3), np.float32)
    idx = [schema.TARGETS.index(tg) for tg in targets]
    for lo in range(0, len(ss), batch):
        b = make_batch(fleet, ss[lo:lo + batch], origins[oi[lo:lo + batch]], t)
        q_model[lo:lo + batch] = predict(b.inputs())[:, :, idx]
    per_target, per_vm, arrays = {}, {}, {}
    for k, tg in enumerate(targets):
        j = schema.TARGETS.index(tg)
        series = tser[:, :, j]
        ub = np.full(s, upper[j])
        base = {"last_value": last_value(series, origins, ub), "seasonal_naive": seasonal_naive(series, origins, ub)}
        actual = _windows(series, origins)  # [S, O, H]
        sel = elig[tg][ss, oi]  # pairs that count for this target
        y = actual[ss, oi][sel]
        preds = {"tft": q_model[sel, :, k], **{m: q[ss, oi][sel] for m, q in base.items()}}
        per_target[tg] = {m: {"qrisk_p50": metrics.q_risk(y, q, 0.5), "qrisk_p90": metrics.q_risk(y, q, 0.9),
                              "coverage": metrics.coverage(y, q)} for m, q in preds.items()}
        per_target[tg]["windows"] = int(sel.sum())
        vms = ss[sel]
        per_vm[tg] = {}
        for v in np.unique(vms):
            w = vms == v
            per_vm[tg][fleet.servers[v]] = {m: {"qrisk_p50": metrics.q_risk(y[w], q[w], 0.5),
                                                "qrisk_p90": metrics.q_risk(y[w], q[w], 0.9)} for m, q in preds.items()}
        arrays[tg] = {"y": y, "preds": preds, "server": vms, "origin": origins[oi[sel]], "series": series}
    overall = {m: {key: float(np.mean([per_target[tg][m][key] for tg in targets]))
                   for key in ("qrisk_p50", "qrisk_p90", "coverage")} for m in REAL_METHODS}
    wins = {}
    for b in REAL_METHODS[1:]:
        wins[b] = {}
        for key in ("qrisk_p50", "qrisk_p90"):
            cnt = tot = 0
            for tg in targets:
                for r in per_vm[tg].values():
                    if np.isfinite(r["tft"][key]) and np.isfinite(r[b][key]):
                        tot += 1
                        cnt += int(r["tft"][key] <= r[b][key])
            wins[b][key] = {"not_worse": cnt, "of": tot}
    result = {"overall": overall, "per_target": per_target, "tft_not_worse_per_vm": wins,
              "vms": s, "vm_names": list(fleet.servers), "origins_every": every,
              "windows": int(any_elig.sum()), "targets": list(targets)}
    return result, arrays


def rolling_origins_real(n_steps: int, t: int, every: int):
    """Origins from one day in (seasonal naive needs a day) on the union time axis."""
    return rolling_origins(n_steps, max(schema.DAY_STEPS, t), every)


def real_plot_items(arrays, t: int, names, per_target: int = 2):
    """For the card's plot: per target, the windows at the 50th and 90th percentile of the TFT's
    relative P50 error (picked by the error, not by hand)."""
    items = []
    for tg, a in arrays.items():
        y, q = a["y"], a["preds"]["tft"]
        ok = np.isfinite(y)
        err = np.where(ok, np.abs(y - q[..., 1]), 0.0).sum(-1) / np.maximum(np.where(ok, np.abs(y), 0.0).sum(-1), 1e-6)
        err = np.where(ok.sum(-1) >= schema.HORIZON // 2, err, np.nan)
        order = np.argsort(np.where(np.isfinite(err), err, np.inf))
        n_ok = int(np.isfinite(err).sum())
        if n_ok == 0:
            continue
        for pct in (50, 90)[:per_target]:
            k = int(order[min(n_ok - 1, n_ok * pct // 100)])
            items.append((f"{tg} - {names[a['server'][k]]} ({pct}th pct. error {err[k]:.2f})", a["series"][a["server"][k]],
                          int(a["origin"][k]), q[k], a["preds"]["seasonal_naive"][k]))
    return items
