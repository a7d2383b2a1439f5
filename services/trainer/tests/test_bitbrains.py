"""The Bitbrains loader (real VMs as `generic` servers reporting cpu, mem and network only), the
hold-out rule (vm % 5 == 0 never reaches training), mixed generated + real training and the
real-data evaluation, on a small synthetic parquet in the trace's format."""

import argparse

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_T
from fleetcast_trainer import cli, evaluate, schema
from fleetcast_trainer.data import bitbrains_part, is_holdout_vm, load_bitbrains, observed_origins
from fleetcast_trainer.model import TFTConfig
from fleetcast_trainer.train import TrainConfig, train
from fleetcast_trainer.windows import Augment, make_batch

T0 = 1_372_636_800  # 2013-07-01 00:00 UTC
VMS = {2: (0, 3), 3: (1, 4), 5: (0, 4), 7: (0, 4), 10: (2, 4), 11: (0, 4), 13: (0, 2)}  # vm -> (first, last day)


def _rows(vm, d0, d1, rng):
    n = (d1 - d0) * 288
    ts = T0 + d0 * 86400 + np.arange(n) * 300 + 17  # not on :00, as in the trace
    k = np.arange(n)
    cpu = 30 + 20 * np.sin(2 * np.pi * k / 288) + rng.normal(0, 2, n) + vm
    return pd.DataFrame({
        "vm": np.int16(vm), "ts": ts.astype(np.int64), "cores": np.int16(4),
        "cpu_pct": cpu.astype(np.float32), "mem_prov_kb": np.float32(8e6),
        "mem_used_kb": (4e6 + 1e5 * np.cos(2 * np.pi * k / 288)).astype(np.float32),
        "disk_read_kbs": np.float32(1.0), "disk_write_kbs": np.float32(2.0),
        "net_rx_kbs": np.float32(1500.0 + vm), "net_tx_kbs": np.float32(250.0),
    })


@pytest.fixture(scope="module")
def bb_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    df = pd.concat([_rows(vm, a, b, rng) for vm, (a, b) in VMS.items()], ignore_index=True)
    # Edge cases on VM 2: CPU above 100 %, a step sampled twice, a missing step, no provisioned memory.
    first = df.index[df.vm == 2][0]
    df.loc[first + 10, "cpu_pct"] = 170.0
    dup = df.loc[[first + 20]].copy()
    dup["ts"] += 120  # same 5-minute step, two samples
    dup["cpu_pct"] = df.loc[first + 20, "cpu_pct"] + 10.0
    df = pd.concat([df.drop(index=first + 30), dup], ignore_index=True)
    df.loc[(df.vm == 2) & ((df.ts - T0) // 300 == 40), "mem_prov_kb"] = 0.0
    path = tmp_path_factory.mktemp("bb") / "bitbrains.parquet"
    df.sort_values("ts").to_parquet(path, index=False)
    return str(path), df


def _idx(m):
    return schema.METRICS.index(m)


def test_holdout_rule_splits_the_vms(bb_path):
    path, _ = bb_path
    tr = load_bitbrains(path, "train", 5)
    ho = load_bitbrains(path, "holdout", 5)
    ev = load_bitbrains(path, "eval", 5, eval_every=10, eval_rem=1)
    assert tr.meta["vms"] == [2, 3, 7, 13] and ho.meta["vms"] == [5, 10] and ev.meta["vms"] == [11]
    assert not is_holdout_vm(tr.meta["vms"], 5).any() and is_holdout_vm(ho.meta["vms"], 5).all()
    assert len(load_bitbrains(path, "all", 5).servers) == len(VMS)
    # without the card's set-aside VMs, every VM that is not held out trains
    assert load_bitbrains(path, "train", 5, eval_every=0).meta["vms"] == [2, 3, 7, 11, 13]
    # vm % 10 == 0 is held out, never set aside for the card (the hold-out rule comes first)
    assert bitbrains_part([10, 20, 21, 22], 5, 10, 0).tolist() == ["holdout", "holdout", "train", "train"]
    assert load_bitbrains(path, "eval", 5, eval_every=10, eval_rem=0, allow_empty=True) is None
    assert all(p == schema.PROFILES.index("generic") for p in tr.profiles)
    with pytest.raises(ValueError):
        load_bitbrains(path, "everything", 5)


def test_vms_report_only_cpu_mem_and_network(bb_path):
    path, df = bb_path
    fl = load_bitbrains(path, "all", 5)
    assert fl.ts0_ms % schema.STEP_MS == 0 and fl.ts0_ms == T0 * 1000
    assert fl.n_steps == 4 * 288
    seen = np.isfinite(fl.values).any((0, 1))
    assert [schema.METRICS[j] for j in np.nonzero(seen)[0]] == ["cpu_idle_pct", "mem_used_pct", "net_in_mb_s",
                                                                "net_out_mb_s"]
    v1 = fl.values[fl.servers.index("bitbrains-vm2")]
    idle, mem = v1[:, _idx("cpu_idle_pct")], v1[:, _idx("mem_used_pct")]
    assert idle[10] == 0.0  # 170 % CPU clipped to 100 % used
    assert np.nanmin(idle) >= 0.0 and np.nanmax(idle) <= 100.0
    raw = df[(df.vm == 2) & ((df.ts - T0) // 300 == 20)].cpu_pct.to_numpy(np.float64)
    assert len(raw) == 2 and abs(idle[20] - (100 - raw.mean())) < 1e-4  # duplicates averaged
    assert np.isnan(idle[30])  # a missing sample stays unknown
    assert np.isnan(mem[40]) and np.isfinite(idle[40])  # no provisioned memory: mem unknown, not zero
    np.testing.assert_allclose(np.nanmean(mem), 50.0, atol=1.0)
    np.testing.assert_allclose(v1[0, _idx("net_in_mb_s")], 1.502, rtol=1e-6)
    np.testing.assert_allclose(v1[0, _idx("net_out_mb_s")], 0.25, rtol=1e-6)
    # outside a VM's span everything is unknown (VM 3 starts on day 1, VM 13 ends after day 2)
    assert np.isnan(fl.values[fl.servers.index("bitbrains-vm3"), :288]).all()
    assert np.isnan(fl.values[fl.servers.index("bitbrains-vm13"), 2 * 288:]).all()


def test_real_windows_score_only_observed_targets(bb_path):
    fl = load_bitbrains(bb_path[0], "train", 5)
    s, o = observed_origins(fl, 0, fl.n_steps - 97)
    assert len(s) and np.isfinite(fl.values[s, o, _idx("cpu_idle_pct")]).all()
    b = make_batch(fl, s[:64], o[:64], 48)
    scored = b.y_mask.max((0, 1)) > 0
    assert [schema.TARGETS[j] for j in np.nonzero(scored)[0]] == ["cpu", "mem", "net_in", "net_out"]
    assert np.all(b.past[b.past_mask == 0] == 0.0)
    # a window running past a VM's end: targets after it are unscored
    vm13 = fl.servers.index("bitbrains-vm13")
    b = make_batch(fl, [vm13], [2 * 288 - 10], 48)
    assert b.y_mask[0, :9].max() == 1.0 and b.y_mask[0, 9:].max() == 0.0


def test_mixed_training_never_sees_held_out_vms(bb_path, fleet, monkeypatch):
    path, _ = bb_path
    args = argparse.Namespace(real_data=path, holdout_every=5, eval_vms_every=10, eval_vms_rem=1)
    real, evals = cli._load_real(args)
    assert set(evals) == {"holdout", "eval"}
    unseen = {n for f in evals.values() for n in f.servers}
    assert unseen == {"bitbrains-vm5", "bitbrains-vm10", "bitbrains-vm11"} and not unseen & set(real.servers)
    seen = []
    orig = make_batch

    def spy(fl, servers, *a, **k):
        seen.append((fl.name, [fl.servers[i] for i in np.asarray(servers)]))
        return orig(fl, servers, *a, **k)
    monkeypatch.setattr("fleetcast_trainer.train.make_batch", spy)
    cfg = TFTConfig(encoder_steps=TINY_T, hidden=8, var_hidden=8, heads=2)
    tc = TrainConfig(batch_size=16, steps_per_epoch=3, max_epochs=2, val_windows=32, time_budget_s=120,
                     real_fraction=0.5)
    res = train(fleet, cfg, tc, Augment(min_history=6), device="cpu", progress=False, real=real)
    assert np.isfinite(res.best_val)
    real_names = [n for name, ns in seen if name == real.name for n in ns]
    assert real_names and not set(real_names) & unseen
    assert any(name == fleet.name for name, _ in seen)


def test_real_evaluation_against_the_baselines(bb_path, tiny_model):
    hold = load_bitbrains(bb_path[0], "holdout", 5)
    res, arrays = evaluate.evaluate_real(evaluate.torch_predictor(tiny_model), hold, TINY_T, every=12)
    assert set(res["overall"]) == {"tft", "last_value", "seasonal_naive"}
    assert res["targets"] == ["cpu", "mem"] and res["vms"] == 2
    for tg in ("cpu", "mem"):
        for m in evaluate.REAL_METHODS:
            assert np.isfinite(res["per_target"][tg][m]["qrisk_p50"])
    # VM 10 starts on day 2: a window counts once half of the day before its origin was reported
    a = arrays["cpu"]
    vm10 = [o for s, o in zip(a["server"], a["origin"]) if hold.servers[s] == "bitbrains-vm10"]
    assert vm10 and min(vm10) >= 2 * 288 + 143
    assert evaluate.real_plot_items(arrays, TINY_T, hold.servers)
    # seasonal naive of a noiseless daily cycle would be exact; here it is at least finite and scored
    assert 0 < res["per_target"]["cpu"]["seasonal_naive"]["qrisk_p50"] < 1
