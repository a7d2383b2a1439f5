"""Loading and windowing: parquet/NAB conversions, contract calendar features, masks and targets."""

import datetime as dt
import os

import numpy as np
import pytest

from conftest import REPO
from fleetcast_trainer import schema
from fleetcast_trainer.data import load_nab, load_parquet
from fleetcast_trainer.windows import Augment, calendar_features, make_batch

# The first 300 rows (25 h) of three NAB files (MIT licence, see fixtures/nab/LICENSE.txt), committed
# so the loader test runs on every clone: the full files live outside the repository (../shared).
NAB_DIR = os.path.join(os.path.dirname(__file__), "fixtures", "nab")


def _ms(*args):
    return int(dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp() * 1000)


def test_calendar_features_follow_the_contract():
    # 2026-01-05 is a Monday: dow 0; 06:00 is a quarter of the day.
    f = calendar_features(np.array([_ms(2026, 1, 5, 6, 0), _ms(2026, 1, 11, 0, 0)]))
    np.testing.assert_allclose(f[0], [1.0, 0.0, 0.0, 1.0], atol=1e-6)
    sunday = 6 / 7 * 2 * np.pi
    np.testing.assert_allclose(f[1], [0.0, 1.0, np.sin(sunday), np.cos(sunday)], atol=1e-6)


def test_parquet_loads_into_a_dense_grid(fleet, fleet_path):
    assert fleet.values.shape == (7, 2 * 288, 14)
    assert set(fleet.profiles.tolist()) == set(range(7))
    assert np.isnan(fleet.values).any()  # nulls stay unknown, never zero
    cpu = fleet.target_series()[..., 0]
    idle = fleet.values[..., schema.METRICS.index("cpu_idle_pct")]
    np.testing.assert_allclose(cpu[np.isfinite(idle)], 100 - idle[np.isfinite(idle)], rtol=1e-6)


def test_missing_column_is_a_clear_error(tmp_path, fleet_path):
    import pyarrow.parquet as pq
    t = pq.read_table(fleet_path).drop(["swap_used_pct"])
    pq.write_table(t, tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="swap_used_pct"):
        load_parquet(str(tmp_path / "bad.parquet"))


def test_windows_left_pad_and_mask_targets(fleet):
    t = 48
    b = make_batch(fleet, [0, 1], [10, 300], t)
    assert b.past.shape == (2, t, 14) and b.time_feat.shape == (2, t + 96, 4)
    assert b.past_mask[0, : t - 11].max() == 0.0  # before the data starts: left padding
    assert b.past_mask[0, t - 11:].mean() > 0.5
    assert np.all(b.past[b.past_mask == 0] == 0.0)
    # ts of the first future step is last + 300 s
    ts_last = fleet.ts_ms(300)
    np.testing.assert_allclose(b.time_feat[1, t], calendar_features(np.array([ts_last + 300_000]))[0], atol=1e-6)


def test_history_truncation_and_augmentation(fleet):
    b = make_batch(fleet, [2, 3], [400, 400], 48, history=10)
    assert b.past_mask[:, :38].max() == 0.0 and b.past_mask[:, 38:].mean() > 0.8
    rng = np.random.default_rng(0)
    aug = Augment(min_history=6, p_truncate=1.0, p_metric_dropout=1.0, metric_drop_rate=0.5)
    b = make_batch(fleet, np.arange(7), np.full(7, 400), 48, rng=rng, augment=aug)
    dropped = b.past_mask.max(1) == 0  # [B, 14] metrics fully unknown
    assert dropped.any()
    # a target whose metric was dropped is not scored
    for i, j in zip(*np.nonzero(dropped[:, schema.TARGET_METRIC_INDEX])):
        assert b.y_mask[i, :, j].max() == 0.0


def test_nab_files_become_single_metric_servers():
    cpu = load_nab(os.path.join(NAB_DIR, "ec2_cpu_utilization_5f5533.csv"))
    assert cpu.meta["target"] == "cpu"
    observed = np.isfinite(cpu.values[0]).any(0)
    assert observed.tolist() == [m == "cpu_idle_pct" for m in schema.METRICS]
    assert cpu.n_steps == 300  # 300 rows, 5 minutes apart, from 14:27 one day to 15:22 the next
    assert abs(cpu.target_series()[0, 0, 0] - 51.846) < 1e-3  # CPU used comes back as the file's value
    net = load_nab(os.path.join(NAB_DIR, "ec2_network_in_257a54.csv"))
    j = schema.METRICS.index("net_in_mb_s")
    assert abs(net.values[0, 0, j] - 251643.0 / 300 / 1e6) < 1e-6
    disk = load_nab(os.path.join(NAB_DIR, "ec2_disk_write_bytes_c0d644.csv"))
    assert disk.meta["metric"] == "net_out_mb_s"


def test_the_held_out_fleet_path_is_the_generators_export():
    # `just backtest` replays this file through the predictor: it must be the trainer's held-out
    # fleet (seed 11, 14 days from 2026-03-02, 200 servers), made without the Python side.
    import subprocess

    def held_out_path():
        out = subprocess.run(["bash", os.path.join(REPO, "services", "trainer", "train.sh"), "--held-out-path"],
                             check=True, capture_output=True, text=True, timeout=600)
        return out.stdout.strip(), out.stderr

    path, _ = held_out_path()
    # A cached file made by another generator (its sources' hash differs) is made again.
    with open(path + ".source", "w") as f:
        f.write("another generator\n")
    assert held_out_path()[0] == path
    assert open(path + ".source").read().strip() != "another generator"
    assert "generating" not in held_out_path()[1], "a file of today's generator is reused"
    assert path.endswith("data/trainer/fleet-s11-2026-03-02-d14-n200.parquet"), path
    held_out = load_parquet(path)
    assert held_out.values.shape == (200, 14 * 288, 14)
    assert held_out.ts0_ms == _ms(2026, 3, 2)
