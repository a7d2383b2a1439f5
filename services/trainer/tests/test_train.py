"""Optimisation works: a few steps lower the loss on a tiny set, and `train` runs end to end."""

import numpy as np
import torch

from conftest import TINY_T
from fleetcast_trainer.model import TFTConfig, quantile_loss
from fleetcast_trainer.train import TrainConfig, _to_torch, build_model, train
from fleetcast_trainer.windows import Augment, make_batch


def test_a_few_steps_lower_the_loss(fleet):
    torch.manual_seed(0)
    model = build_model(fleet, TFTConfig(encoder_steps=TINY_T, hidden=8, var_hidden=8, heads=2, dropout=0.0), 0.01)
    rng = np.random.default_rng(0)
    batch = _to_torch(make_batch(fleet, rng.integers(0, 7, 32), rng.integers(TINY_T, 400, 32), TINY_T), "cpu")
    g = model.global_scale[model.target_idx]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        q, _, _ = model(*batch[:4])
        loss = quantile_loss(q, batch[4], batch[5], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_train_loop_runs_and_restores_the_best_model(fleet):
    cfg = TFTConfig(encoder_steps=TINY_T, hidden=8, var_hidden=8, heads=2)
    tc = TrainConfig(batch_size=16, steps_per_epoch=3, max_epochs=2, val_windows=32, time_budget_s=120)
    res = train(fleet, cfg, tc, Augment(min_history=6), device="cpu", progress=False)
    assert len(res.history) == res.epochs >= 1
    assert np.isfinite(res.best_val)
    assert res.best_val == min(h["val_loss"] for h in res.history)
    assert not res.model.training


def test_quantile_loss_ignores_masked_targets():
    q = torch.zeros(1, 96, 8, 3)
    y = torch.ones(1, 96, 8)
    m = torch.zeros(1, 96, 8)
    m[..., 0] = 1
    full = quantile_loss(q, y, m, torch.ones(8))
    y2 = y.clone()
    y2[..., 1:] = 1e6  # huge errors where masked
    assert torch.isclose(full, quantile_loss(q, y2, m, torch.ones(8)))
    # pinball at y=1, q=0 for quantiles .1/.5/.9 sums to 1.5
    assert torch.isclose(full, torch.tensor(1.5))


def test_quantile_loss_per_target_units():
    """A [B, 8] unit (a real window in its own fleet's units) divides each target's error."""
    q = torch.zeros(2, 96, 8, 3)
    y = torch.ones(2, 96, 8)
    m = torch.ones(2, 96, 8)
    g = torch.ones(8)
    base = quantile_loss(q, y, m, g)
    unit = torch.ones(2, 8)
    assert torch.isclose(quantile_loss(q, y, m, g, unit), base)
    unit[1, :] = 0.5  # the second window's errors count double
    assert torch.isclose(quantile_loss(q, y, m, g, unit), base * 1.5)
    assert torch.isclose(quantile_loss(q, y, m, g, torch.tensor([1.0, 0.5])), base * 1.5)
