"""The baselines the TFT has to beat, each with P10/P50/P90 so they can be scored like the model:

- last value: P50 = last observed value; P10/P90 from the empirical h-step changes of the previous day;
- seasonal naive (daily): P50 = the value one day before the target step; P10/P90 from the
  empirical day-over-day changes of the previous day;
- Holt-Winters / ETS(A,Ad,A): additive damped trend and additive daily season, smoothing parameters
  picked per series by one-step squared error on the data before the first origin, analytic
  prediction intervals. Vectorised over all series so a fleet takes seconds (statsmodels would fit
  each series separately; tests check this implementation against statsmodels' ExponentialSmoothing).

Every function takes `series` `[M, N]` (NaN = unknown) and `origins` `[O]` and returns `[M, O, H, 3]`.
"""

import warnings
from itertools import product

import numpy as np

from . import schema

Z90 = 1.2815515655446004  # standard normal 0.9 quantile
H_GRID = np.array([1, 2, 3, 6, 12, 24, 48, 72, 96])


def ffill(series):
    """Last observed value at or before each step (NaN before the first observation)."""
    m, n = series.shape
    idx = np.where(np.isfinite(series), np.arange(n)[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    out = series[np.arange(m)[:, None], idx]
    return out


def _trailing_quantiles(diff_end, origins, window: int):
    """Quantiles (0.1, 0.9) of `diff_end[:, t]` over t in (o - window, o] for every origin."""
    m, n = diff_end.shape
    pad = np.concatenate([np.full((m, window), np.nan, diff_end.dtype), diff_end], 1)
    view = np.lib.stride_tricks.sliding_window_view(pad, window, axis=1)  # [M, n+1, W]
    sel = view[:, origins + 1]  # windows ending at o  -> [M, O, W]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(sel, [0.1, 0.9], axis=-1)  # [2, M, O]


def _assemble(p50, lo, hi, upper):
    q = np.stack([np.minimum(p50 + lo, p50), p50, np.maximum(p50 + hi, p50)], -1)
    return np.clip(q, 0.0, upper[:, None, None, None]).astype(np.float32)


def last_value(series, origins, upper, h: int = schema.HORIZON, window: int = schema.DAY_STEPS):
    filled = ffill(series)
    base = filled[:, origins]  # [M, O]
    qs_lo, qs_hi = [], []
    for k in H_GRID:
        d = np.full_like(series, np.nan)
        d[:, k:] = series[:, k:] - series[:, :-k]  # change ending at t over k steps
        qlo, qhi = _trailing_quantiles(d, origins, window)
        qs_lo.append(qlo)
        qs_hi.append(qhi)
    steps = np.arange(1, h + 1)
    lo = _interp_h(np.stack(qs_lo, -1), steps)
    hi = _interp_h(np.stack(qs_hi, -1), steps)
    p50 = np.broadcast_to(base[..., None], lo.shape)
    return _assemble(p50, np.nan_to_num(lo), np.nan_to_num(hi), upper)


def _interp_h(vals, steps):  # vals [M, O, len(H_GRID)] -> [M, O, H], linear in h
    k = np.clip(np.searchsorted(H_GRID, steps, side="right") - 1, 0, len(H_GRID) - 2)
    w = (steps - H_GRID[k]) / (H_GRID[k + 1] - H_GRID[k])
    return vals[..., k] * (1 - w) + vals[..., k + 1] * w


def seasonal_naive(series, origins, upper, h: int = schema.HORIZON, season: int = schema.DAY_STEPS,
                   window: int = schema.DAY_STEPS):
    m, n = series.shape
    steps = origins[:, None] + np.arange(1, h + 1)[None, :] - season  # [O, H]
    p50 = series[:, np.clip(steps, 0, n - 1)]
    p50 = np.where(steps[None] >= 0, p50, np.nan)
    fallback = ffill(series)[:, origins][..., None]
    p50 = np.where(np.isfinite(p50), p50, fallback)
    d = np.full_like(series, np.nan)
    d[:, season:] = series[:, season:] - series[:, :-season]
    qlo, qhi = _trailing_quantiles(d, origins, window)
    lo = np.broadcast_to(np.nan_to_num(qlo)[..., None], p50.shape)
    hi = np.broadcast_to(np.nan_to_num(qhi)[..., None], p50.shape)
    return _assemble(p50, lo, hi, upper)


# ----- Holt-Winters ---------------------------------------------------------------------------

ALPHAS = (0.05, 0.15, 0.3, 0.5, 0.8)
BETAS = (0.0, 0.05)
GAMMAS = (0.05, 0.2, 0.5)
PHI = 0.95


def _hw_init(series, season):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        level = np.nanmean(series[:, :season], axis=1)
    level = np.nan_to_num(level)
    seas = np.nan_to_num(series[:, :season] - level[:, None])
    return level, np.zeros_like(level), seas


def hw_filter(series, alpha, beta, gamma, phi, season, start, stop, level, trend, seas, record=None):
    """Runs the component-form recursions (statsmodels' Holt-Winters form) from step `start` to
    `stop`; parameters and states broadcast over leading axes. `seas[..., j]` is the seasonal
    state for steps congruent to j mod season. Missing values keep the predicted state.
    Returns (level, trend, seas, sse, count); `record` (dict origin -> list) collects states."""
    level, trend, seas = level.copy(), trend.copy(), seas.copy()
    sse = np.zeros(np.broadcast_shapes(level.shape, np.shape(alpha)))
    cnt = np.zeros(series.shape[0])
    for t in range(start, stop):
        y = series[:, t]
        j = t % season
        s_old = seas[..., j]
        pred_level = level + phi * trend
        yhat = pred_level + s_old
        ok = np.isfinite(y)
        err = np.where(ok, y - yhat, 0.0)
        sse = sse + err**2
        cnt += ok
        new_level = np.where(ok, alpha * (np.nan_to_num(y) - s_old) + (1 - alpha) * pred_level, pred_level)
        trend = np.where(ok, beta * (new_level - level) + (1 - beta) * phi * trend, phi * trend)
        seas[..., j] = np.where(ok, gamma * (np.nan_to_num(y) - pred_level) + (1 - gamma) * s_old, s_old)
        level = new_level
        if record is not None and t in record:
            record[t] = (level.copy(), trend.copy(), seas.copy())
    return level, trend, seas, sse, cnt


def holt_winters(series, origins, upper, h: int = schema.HORIZON, season: int = schema.DAY_STEPS):
    """Fits on steps [season, origins[0]] and forecasts from every origin; returns [M, O, H, 3]
    and the chosen parameters [M, 4] (alpha, beta, gamma, sigma)."""
    series = series.astype(np.float64)
    m = series.shape[0]
    fit_end = int(origins[0]) + 1
    if fit_end <= season + 12:
        raise ValueError("Holt-Winters needs more than a season of data before the first origin")
    level0, trend0, seas0 = _hw_init(series, season)
    grid = np.array(list(product(ALPHAS, BETAS, GAMMAS)))  # [C, 3]
    a, b, g = (grid[:, k][:, None] for k in range(3))
    C = len(grid)
    _, _, _, sse, cnt = hw_filter(series, a, b, g, PHI, season, season, fit_end,
                                  np.broadcast_to(level0, (C, m)), np.broadcast_to(trend0, (C, m)),
                                  np.broadcast_to(seas0, (C, m, season)))
    best = np.argmin(sse, axis=0)
    alpha, beta, gamma = grid[best, 0], grid[best, 1], grid[best, 2]
    sigma = np.sqrt(sse[best, np.arange(m)] / np.maximum(cnt, 1))
    record = {int(o): None for o in origins}
    hw_filter(series, alpha, beta, gamma, PHI, season, season, int(origins[-1]) + 1,
              level0, trend0, seas0, record)
    steps = np.arange(1, h + 1)
    phi_h = np.cumsum(PHI ** steps)  # phi + ... + phi^h
    # Variance multiplier for h < season: 1 + sum_{j<h} (alpha (1 + beta phi_j))^2.
    c = alpha[:, None] * (1 + beta[:, None] * phi_h[None, :])  # [M, H] for j = 1..H
    var_mult = 1 + np.concatenate([np.zeros((m, 1)), np.cumsum(c[:, :-1] ** 2, axis=1)], 1)
    half = Z90 * sigma[:, None] * np.sqrt(var_mult)  # [M, H]
    out = np.empty((m, len(origins), h, 3), np.float32)
    for i, o in enumerate(origins):
        level, trend, seas = record[int(o)]
        idx = (o + steps) % season
        p50 = level[:, None] + phi_h[None, :] * trend[:, None] + seas[:, idx]
        out[:, i] = np.stack([p50 - half, p50, p50 + half], -1)
    out = np.clip(out, 0.0, upper[:, None, None, None])
    return out, np.stack([alpha, beta, gamma, sigma], 1)


def all_baselines(series, origins, upper):
    hw, _ = holt_winters(series, origins, upper)
    return {
        "last_value": last_value(series, origins, upper),
        "seasonal_naive": seasonal_naive(series, origins, upper),
        "holt_winters": hw,
    }
