"""Baselines and metrics: Holt-Winters agrees with statsmodels, naive forecasts are what they say,
and the scores compute the textbook quantities."""

import numpy as np
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from fleetcast_trainer import baselines, metrics


def test_holt_winters_matches_statsmodels():
    rng = np.random.default_rng(0)
    m, n = 24, 24 * 6
    t = np.arange(n)
    y = 10 + 3 * np.sin(2 * np.pi * t / m) + 0.02 * t + rng.normal(0, 0.3, n)
    y[50] = np.nan  # a gap is carried by the prediction, as statsmodels cannot; keep it out of the check
    y2 = y.copy()
    y2[50] = 0.5 * (y[49] + y[51])
    level0, trend0, seas0 = baselines._hw_init(y2[None], m)
    a, b, g = 0.3, 0.05, 0.2
    level, trend, seas, _, _ = baselines.hw_filter(y2[None], a, b, g, baselines.PHI, m, m, n, level0, trend0, seas0)
    hh = np.arange(1, 11)
    ours = level[0] + np.cumsum(baselines.PHI ** hh) * trend[0] + seas[0][(n - 1 + hh) % m]
    fit = ExponentialSmoothing(y2[m:], trend="add", damped_trend=True, seasonal="add", seasonal_periods=m,
                               initialization_method="known", initial_level=level0[0], initial_trend=0.0,
                               initial_seasonal=seas0[0]).fit(smoothing_level=a, smoothing_trend=b,
                                                              smoothing_seasonal=g, damping_trend=baselines.PHI,
                                                              optimized=False)
    np.testing.assert_allclose(ours, fit.forecast(10), rtol=1e-9, atol=1e-9)


def test_naive_baselines():
    n = 288 * 3
    series = np.tile(np.arange(288, dtype=float), 3)[None] + 5.0
    series[0, 700] = np.nan
    origins = np.array([600, 700])
    upper = np.array([1e9])
    sn = baselines.seasonal_naive(series, origins, upper)
    np.testing.assert_allclose(sn[0, 0, :, 1], series[0, 601 - 288:601 - 288 + 96])
    lv = baselines.last_value(series, origins, upper)
    assert np.all(lv[0, 1, :, 1] == series[0, 699])  # unknown at the origin: the last known value
    assert np.all(lv[..., 0] <= lv[..., 1]) and np.all(lv[..., 1] <= lv[..., 2])
    hw, params = baselines.holt_winters(series, origins, upper)
    assert hw.shape == (1, 2, 96, 3) and np.isfinite(hw).all()
    np.testing.assert_allclose(hw[0, 0, :, 1], sn[0, 0, :, 1], atol=0.5)  # a clean season is learnt


def test_scores():
    y = np.array([[1.0, 2.0, np.nan]])
    q = np.stack([y - 1, np.array([[1.0, 1.0, 0.0]]), y + 1], -1)
    # P50 errors: 0, 1 -> pinball .5 each -> 2*0.5/3
    assert abs(metrics.q_risk(y, q, 0.5) - 2 * 0.5 / 3) < 1e-12
    assert metrics.coverage(y, q) == 1.0
    c = metrics.breach_counts(np.array([[80.0, 95.0], [80.0, 85.0], [95.0, 96.0]]),
                              np.array([[91.0, 91.0], [91.0, 91.0], [99.0, 99.0]]),
                              np.array([85.0, 85.0, 95.0]), 90.0, 2)
    assert c == {"tp": 1, "fp": 1, "fn": 0, "windows": 2}
    assert metrics.precision_recall(c) == (0.5, 1.0)
