"""Cutting model inputs out of a fleet: the past window with its mask, the calendar features of
past and future steps (exactly as models/CONTRACT.md defines them), and the future targets.

Training augmentation lives here too, because it is only a matter of masking: random history
truncation (left padding, so warm-up servers are in the training distribution), whole-metric
dropout (servers with partial records), single-metric servers (like the NAB series) and sporadic
missing points.
"""

from dataclasses import dataclass

import numpy as np

from . import schema
from .data import Fleet

DAY_MS = 86_400_000
# Physical zero of each metric (idle's "nothing used" is 100 %), the fixed point of rescaling.
_ZERO = np.array([100.0 if m == "cpu_idle_pct" else 0.0 for m in schema.METRICS], np.float32)


def calendar_features(ts_ms: np.ndarray) -> np.ndarray:
    """[..., 4] = sin/cos of time of day and day of week (UTC, Monday = 0), per the contract."""
    ts = np.asarray(ts_ms, np.int64)
    tod = (ts % DAY_MS).astype(np.float64) / DAY_MS
    dow = ((ts // DAY_MS + 3) % 7).astype(np.float64) / 7.0
    two_pi = 2.0 * np.pi
    return np.stack([np.sin(two_pi * tod), np.cos(two_pi * tod),
                     np.sin(two_pi * dow), np.cos(two_pi * dow)], -1).astype(np.float32)


@dataclass
class Batch:
    past: np.ndarray  # [B, T, 14]
    past_mask: np.ndarray  # [B, T, 14]
    time_feat: np.ndarray  # [B, T+H, 4]
    profile: np.ndarray  # [B] int64
    y: np.ndarray  # [B, H, 8] raw target values (0 where unknown)
    y_mask: np.ndarray  # [B, H, 8]
    y_unit: np.ndarray = None  # [B] factor the sample was rescaled by (1 = as recorded)

    def inputs(self):
        return {"past": self.past, "past_mask": self.past_mask, "time_feat": self.time_feat, "profile": self.profile}


@dataclass
class Augment:
    min_history: int = 12
    p_truncate: float = 0.3
    p_metric_dropout: float = 0.3
    metric_drop_rate: float = 0.3
    p_single_metric: float = 0.1
    p_sporadic: float = 0.2
    sporadic_rate: float = 0.03
    # Servers far smaller than the generated fleet (NAB's network series are ~1e-4 of it): scale a
    # sample's metrics by 10^U(lo, 0) around their physical zero (100 for cpu_idle, else 0).
    p_rescale: float = 0.25
    rescale_log10: tuple = (-5.0, 0.0)
    # Bursty servers (mostly idle, short large bursts, like NAB's byte counters): one metric of the
    # sample gets sparse spikes in past and future alike, half the time over a near-zero baseline.
    p_spikes: float = 0.15


def make_batch(fleet: Fleet, servers, origins, t: int, h: int = schema.HORIZON,
               rng: np.random.Generator = None, augment: Augment = None, history=None) -> Batch:
    """Windows ending at `origins` (index of the last closed step) for `servers`.

    `history` (int or [B]) keeps only that many most recent past steps, as for a server that has
    just started reporting. Steps before the data start are left padding (mask 0)."""
    servers = np.asarray(servers, np.int64)
    origins = np.asarray(origins, np.int64)
    b, n = len(servers), fleet.n_steps
    steps = origins[:, None] + np.arange(-t + 1, h + 1)[None, :]  # [B, T+H]
    inside = (steps >= 0) & (steps < n)
    win = fleet.values[servers[:, None], np.clip(steps, 0, n - 1)]  # [B, T+H, 14]
    win = np.where(inside[..., None], win, np.nan)
    if augment is not None and augment.p_spikes > 0:
        win = _spikes(win, rng, augment.p_spikes)
    unit = np.ones(b, np.float32)
    if augment is not None and augment.p_rescale > 0:
        pick = rng.random(b) < augment.p_rescale
        unit[pick] = 10.0 ** rng.uniform(*augment.rescale_log10, pick.sum())
        win = _ZERO + (win - _ZERO) * unit[:, None, None]
    past, fut = win[:, :t], win[:, t:]
    mask = np.isfinite(past)

    if history is not None:
        hist = np.broadcast_to(np.asarray(history, np.int64), (b,))
        mask &= (np.arange(t)[None, :] >= (t - hist)[:, None])[..., None]
    if augment is not None:
        mask = _augment_mask(mask, rng, augment, t)

    time_feat = calendar_features(fleet.ts_ms(steps))
    fut_t = fut[:, :, schema.TARGET_METRIC_INDEX]
    y = np.asarray(schema.TARGET_OFFSET, np.float32) + np.asarray(schema.TARGET_SIGN, np.float32) * fut_t
    seen_metric = mask.any(1)[:, schema.TARGET_METRIC_INDEX]  # [B, 8]
    y_mask = np.isfinite(y) & seen_metric[:, None, :]
    return Batch(
        past=np.where(mask, np.nan_to_num(past), 0.0).astype(np.float32),
        past_mask=mask.astype(np.float32),
        time_feat=time_feat,
        profile=fleet.profiles[servers].astype(np.int64),
        y=np.where(y_mask, np.nan_to_num(y), 0.0).astype(np.float32),
        y_mask=y_mask.astype(np.float32),
        y_unit=unit,
    )


_SPIKY = [schema.METRICS.index(m) for m in ("net_in_mb_s", "net_out_mb_s", "load_average", "cpu_iowait_pct",
                                               "back_close_wait", "front_close_wait")]


def _spikes(win, rng, p):
    win = win.copy()
    for i in np.nonzero(rng.random(win.shape[0]) < p)[0]:
        # among the spiky metrics this server reports (a real VM reports only network of these)
        have = [j for j in _SPIKY if np.isfinite(win[i, :, j]).any()]
        if not have:
            continue
        j = int(rng.choice(have))
        col = win[i, :, j]
        level = np.nanmean(np.abs(col))
        if not np.isfinite(level) or level <= 0:
            continue
        if rng.random() < 0.5:
            col = col * 0.02
        hits = rng.random(col.shape[0]) < rng.uniform(0.01, 0.08)
        col = np.where(hits, col + level * 10.0 ** rng.uniform(0.0, 1.5, col.shape[0]), col)
        if schema.METRICS[j] in schema.PERCENT_METRICS:
            col = np.minimum(col, 100.0)
        win[i, :, j] = col
    return win


def _augment_mask(mask, rng, a: Augment, t: int):
    b, _, v = mask.shape
    mask = mask.copy()
    trunc = rng.random(b) < a.p_truncate
    if trunc.any():
        lo, hi = np.log(a.min_history), np.log(t)
        keep = np.exp(rng.uniform(lo, hi, trunc.sum())).astype(np.int64)
        cut = np.arange(t)[None, :] < (t - keep)[:, None]
        mask[trunc] &= ~cut[..., None]
    drop = rng.random(b) < a.p_metric_dropout
    if drop.any():
        dropped = rng.random((drop.sum(), v)) < a.metric_drop_rate
        mask[drop] &= ~dropped[:, None, :]
    single = rng.random(b) < a.p_single_metric
    if single.any():
        only = rng.choice(schema.TARGET_METRIC_INDEX, single.sum())
        keep = np.zeros((single.sum(), v), bool)
        keep[np.arange(single.sum()), only] = True
        mask[single] &= keep[:, None, :]
    spor = rng.random(b) < a.p_sporadic
    if spor.any():
        mask[spor] &= rng.random((spor.sum(), t, v)) >= a.sporadic_rate
    return mask


def rolling_origins(n_steps: int, first: int, every: int, h: int = schema.HORIZON) -> np.ndarray:
    """Forecast origins `first, first+every, ...` whose whole horizon lies inside the data."""
    return np.arange(first, n_steps - h, every, dtype=np.int64)
