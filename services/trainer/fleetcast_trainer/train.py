"""Training loop: random windows from the first 80 % of the training fleet's time axis, early stopping
on fixed windows from the last 20 %, a wall-clock budget, a fixed seed, and a tqdm progress bar.
"""

import copy
import math
import time
from dataclasses import dataclass, asdict

import numpy as np
import torch
from tqdm import tqdm

from . import schema
from .data import Fleet, global_scales
from .model import TFT, TFTConfig, quantile_loss
from .windows import Augment, make_batch


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


def build_model(fleet: Fleet, cfg: TFTConfig, floor_fraction: float) -> TFT:
    g = global_scales(fleet)
    return TFT(cfg, g, g * floor_fraction)


def train(fleet: Fleet, cfg: TFTConfig, tc: TrainConfig, augment: Augment = None, device: str = None,
          progress: bool = True, model: TFT = None) -> TrainResult:
    device = device or pick_device()
    torch.set_num_threads(tc.threads)
    set_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    augment = augment or Augment()
    t, h = cfg.encoder_steps, cfg.horizon
    (tr_lo, tr_hi), (va_lo, va_hi) = _split(fleet, t, h, tc.val_fraction)
    s = fleet.values.shape[0]

    # Fixed validation set: half clean windows, half with the training augmentation.
    vrng = np.random.default_rng(tc.seed + 1)
    vs, vo = vrng.integers(0, s, tc.val_windows), vrng.integers(va_lo, va_hi + 1, tc.val_windows)
    half = tc.val_windows // 2
    val_batches = []
    for lo in range(0, tc.val_windows, tc.batch_size):
        sl = slice(lo, min(lo + tc.batch_size, tc.val_windows))
        aug = augment if lo >= half else None
        val_batches.append(_to_torch(make_batch(fleet, vs[sl], vo[sl], t, h, vrng, aug), device))

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
            bs = rng.integers(0, s, tc.batch_size)
            bo = rng.integers(tr_lo, tr_hi + 1, tc.batch_size)
            past, mask, tf, prof, y, ym, yu = _to_torch(make_batch(fleet, bs, bo, t, h, rng, augment), device)
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
