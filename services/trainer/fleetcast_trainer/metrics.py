"""Forecast accuracy measures used in the model card.

All functions take `y` `[W, H]` (actuals, NaN = unknown) and quantile forecasts `[W, H, 3]`
(P10, P50, P90) for one target over W windows, and ignore unknown actuals.
"""

import warnings

import numpy as np

from . import schema


def q_risk(y, q, quantile: float) -> float:
    """Normalised quantile loss of the TFT paper: 2 * sum(pinball) / sum(|y|)."""
    ok = np.isfinite(y)
    k = schema.QUANTILES.index(quantile)
    e = (y - q[..., k])[ok]
    loss = np.maximum(quantile * e, (quantile - 1.0) * e).sum()
    denom = np.abs(y[ok]).sum()
    return float(2.0 * loss / denom) if denom > 0 else float("nan")


def coverage(y, q) -> float:
    """Share of actuals inside [P10, P90] (nominal 80 %)."""
    ok = np.isfinite(y)
    inside = (y >= q[..., 0]) & (y <= q[..., 2])
    return float(inside[ok].mean()) if ok.any() else float("nan")


def mase(y, p50, scale) -> float:
    """Mean absolute scaled error: |y - P50| over each window's series scale (the in-sample MAE of
    the one-step naive forecast), averaged over windows whose scale is meaningful."""
    ok = np.isfinite(y)
    err = np.where(ok, np.abs(y - p50), 0.0).sum(1) / np.maximum(ok.sum(1), 1)
    good = (ok.sum(1) > 0) & np.isfinite(scale) & (scale > 1e-6)
    return float((err[good] / scale[good]).mean()) if good.any() else float("nan")


def breach_counts(y, p90, last, threshold: float, steps: int):
    """Confusion counts of "P90 crosses the threshold within `steps`" against "the actual crosses it",
    over windows whose last observed value was still below the threshold (new breaches only)."""
    eligible = np.isfinite(last) & (last <= threshold) & np.isfinite(y[:, :steps]).any(1)
    actual = (np.nan_to_num(y[:, :steps], nan=-np.inf) > threshold).any(1)
    pred = (p90[:, :steps] > threshold).any(1)
    a, p = actual[eligible], pred[eligible]
    return {"tp": int((a & p).sum()), "fp": int((~a & p).sum()), "fn": int((a & ~p).sum()),
            "windows": int(eligible.sum())}


def precision_recall(c):
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    return prec, rec


def naive_scale(series, end: int) -> np.ndarray:
    """[S] mean |y_t - y_{t-1}| over steps < end, per series (series [S, N])."""
    d = np.abs(np.diff(series[:, :end], axis=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(d, axis=1)
