"""Training loop: random windows from the first 80 % of the training fleet's time axis, early stopping
on fixed windows from the last 20 %, a wall-clock budget, a fixed seed, and a tqdm progress bar.

With a `real` fleet (real VMs, e.g. Bitbrains' training VMs), every batch mixes generated windows and
real windows (`real_fraction` of them), the real ones drawn where the VM reported at the origin, with
the same time split (first 80 % of the real time axis trains, the last 20 % early-stops) and the same
augmentation. Held-out real VMs never reach this module: the caller passes only training VMs.
"""

import copy
import math
import time
from dataclasses import dataclass, asdict

import numpy as np
import torch
from tqdm import tqdm

from . import schema
from .data import Fleet, global_scales, observed_origins
from .model import TFT, TFTConfig, quantile_loss
from .windows import Augment, Batch, make_batch


@dataclass
class TrainConfig:
    seed: int = 7
    batch_size: int = 256
    steps_per_epoch: int = 100
    max_epochs: int = 60
    patience: int = 4
    lr: float = 3e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    time_budget_s: float = 25 * 60
    val_windows: int = 2048
    val_fraction: float = 0.2
    floor_fraction: float = 1e-4
    threads: int = 2
    real_fraction: float = 0.5  # share of each batch (and of the validation set) from the real fleet
    real_own_units: bool = True  # real windows' loss in the real fleet's global std (else the generated one's)

    def to_dict(self):
        return asdict(self)


@dataclass
class TrainResult:
    model: TFT
    history: list
    seconds: float
    epochs: int
    best_val: float
    device: str
    stopped: str


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def set_seed(seed: int):
    np.random.seed(seed)
    torch.manual_seed(seed)


def _to_torch(batch, device):
    t = lambda a: torch.from_numpy(a).to(device)
    return (t(batch.past), t(batch.past_mask), t(batch.time_feat), t(batch.profile), t(batch.y), t(batch.y_mask),
            t(batch.y_unit))


def _split(fleet: Fleet, t: int, h: int, val_fraction: float):
    """Origins for training (whole horizon before the split) and validation (after it)."""
    n = fleet.n_steps
    split = int(n * (1.0 - val_fraction))
    train_hi = split - h - 1
    if train_hi <= 12:
        raise ValueError(f"training fleet too short: {n} steps")
    return (11, train_hi), (max(split, 11), n - h - 1)


def _concat(batches):
    """One Batch from several (the generated and the real part of a mixed batch)."""
    if len(batches) == 1:
        return batches[0]
    return Batch(**{k: np.concatenate([getattr(b, k) for b in batches]) for k in
                    ("past", "past_mask", "time_feat", "profile", "y", "y_mask", "y_unit")})


def _source_units(batch: Batch, ratio: np.ndarray) -> Batch:
    """The loss unit of a real window's targets: the real fleet's global std instead of the
    generated fleet's (`ratio` = real / generated, per target), so a target that is tiny on real
    VMs (network: KB/s where the generated fleet has MB/s) still carries loss there."""
    batch.y_unit = (batch.y_unit[:, None] * ratio[None, :]).astype(np.float32)
    return batch


def _real_pairs(real: Fleet, t: int, h: int, val_fraction: float):
    """Training and validation (server, origin) pairs of the real fleet: origins where the VM
    reported, whole horizon before the time split for training, after it for validation."""
    n = real.n_steps
    split = int(n * (1.0 - val_fraction))
    tr = observed_origins(real, 11, split - h - 1)
    va = observed_origins(real, max(split, 11), n - h - 1)
    if len(tr[0]) == 0 or len(va[0]) == 0:
        raise ValueError(f"real fleet has no training or validation windows ({n} steps)")
    return tr, va


def build_model(fleet: Fleet, cfg: TFTConfig, floor_fraction: float) -> TFT:
    g = global_scales(fleet)
    return TFT(cfg, g, g * floor_fraction)


def train(fleet: Fleet, cfg: TFTConfig, tc: TrainConfig, augment: Augment = None, device: str = None,
          progress: bool = True, model: TFT = None, real: Fleet = None) -> TrainResult:
    device = device or pick_device()
    torch.set_num_threads(tc.threads)
    set_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    augment = augment or Augment()
    t, h = cfg.encoder_steps, cfg.horizon
    (tr_lo, tr_hi), (va_lo, va_hi) = _split(fleet, t, h, tc.val_fraction)
    s = fleet.values.shape[0]

    frac = tc.real_fraction if real is not None else 0.0
    n_real = int(round(tc.batch_size * frac))
    n_gen = tc.batch_size - n_real
    if real is not None:
        (rs_tr, ro_tr), (rs_va, ro_va) = _real_pairs(real, t, h, tc.val_fraction)
        gen_g = global_scales(fleet)[schema.TARGET_METRIC_INDEX]
        ratio = (global_scales(real)[schema.TARGET_METRIC_INDEX] / gen_g).astype(np.float32)
        ratio = np.where(np.isfinite(ratio) & (ratio > 0), ratio, 1.0).astype(np.float32)
        one = np.ones_like(ratio)
        if not tc.real_own_units:
            ratio = one
        if progress:
            print("[trainer] real windows' loss unit / generated, per target: "
                  + ", ".join(f"{k} {r:.3g}" for k, r in zip(schema.TARGETS, ratio)), flush=True)
    else:
        ratio = one = None

    # Fixed validation set: half clean windows, half with the training augmentation; with a real
    # fleet, each validation batch has the training batches' mix of generated and real windows.
    vrng = np.random.default_rng(tc.seed + 1)
    vs, vo = vrng.integers(0, s, tc.val_windows), vrng.integers(va_lo, va_hi + 1, tc.val_windows)
    if real is not None:
        k = vrng.integers(0, len(rs_va), tc.val_windows)
        rvs, rvo = rs_va[k], ro_va[k]
    half = tc.val_windows // 2
    val_batches = []
    for lo in range(0, tc.val_windows, tc.batch_size):
        hi = min(lo + tc.batch_size, tc.val_windows)
        aug = augment if lo >= half else None
        cut = lo + int(round((hi - lo) * (1.0 - frac)))
        parts = [make_batch(fleet, vs[lo:cut], vo[lo:cut], t, h, vrng, aug)]
        if real is not None and hi > cut:
            parts = [_source_units(parts[0], one),
                     _source_units(make_batch(real, rvs[cut:hi], rvo[cut:hi], t, h, vrng, aug), ratio)]
        val_batches.append(_to_torch(_concat(parts), device))

    model = (model or build_model(fleet, cfg, tc.floor_fraction)).to(device)
    g_t = model.global_scale[model.target_idx]
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)

    def evaluate():
        model.eval()
        tot, cnt = 0.0, 0.0
        with torch.no_grad():
            for past, mask, tf, prof, y, ym, yu in val_batches:
                q, _, _ = model(past, mask, tf, prof)
                n = float(ym.sum())
                tot += float(quantile_loss(q, y, ym, g_t, yu)) * n
                cnt += n
        model.train()
        return tot / max(cnt, 1.0)

    best, best_state, bad, history = math.inf, None, 0, []
    start = time.time()
    stopped = "max_epochs"
    total = tc.max_epochs * tc.steps_per_epoch
    bar = tqdm(total=total, desc="train", unit="batch", disable=not progress, dynamic_ncols=True)
    epoch = 0
    for epoch in range(1, tc.max_epochs + 1):
        model.train()
        run = 0.0
        for _ in range(tc.steps_per_epoch):
            bs = rng.integers(0, s, n_gen)
            bo = rng.integers(tr_lo, tr_hi + 1, n_gen)
            parts = [make_batch(fleet, bs, bo, t, h, rng, augment)]
            if n_real:
                k = rng.integers(0, len(rs_tr), n_real)
                parts = [_source_units(parts[0], one),
                         _source_units(make_batch(real, rs_tr[k], ro_tr[k], t, h, rng, augment), ratio)]
            past, mask, tf, prof, y, ym, yu = _to_torch(_concat(parts), device)
            q, _, _ = model(past, mask, tf, prof)
            loss = quantile_loss(q, y, ym, g_t, yu)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            run += float(loss.detach())
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.4f}", best_val=f"{best:.4f}")
        val = evaluate()
        sched.step(val)
        history.append({"epoch": epoch, "train_loss": run / tc.steps_per_epoch, "val_loss": val,
                        "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - start, 1)})
        if val < best - 1e-5:
            best, best_state, bad = val, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
        if bad >= tc.patience:
            stopped = "early_stopping"
            break
        elapsed = time.time() - start
        if elapsed + elapsed / epoch > tc.time_budget_s:
            stopped = "time_budget"
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model.cpu(), history, time.time() - start, epoch, best, device, stopped)
