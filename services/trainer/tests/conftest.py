"""Shared fixtures: a tiny synthetic fleet (generator export format) and a tiny model."""

import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fleetcast_trainer.data import global_scales, load_parquet  # noqa: E402
from fleetcast_trainer.model import TFT, TFTConfig  # noqa: E402
from fleetcast_trainer.synth import synth_fleet  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TINY_T = 24

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def fleet_path(tmp_path_factory):
    return synth_fleet(str(tmp_path_factory.mktemp("data") / "fleet.parquet"), servers=7, days=2, seed=3)


@pytest.fixture(scope="session")
def fleet(fleet_path):
    return load_parquet(fleet_path)


@pytest.fixture()
def tiny_model(fleet):
    torch.manual_seed(0)
    g = global_scales(fleet)
    return TFT(TFTConfig(encoder_steps=TINY_T, hidden=8, var_hidden=8, heads=2, dropout=0.0), g, g * 0.01).eval()


def random_inputs(b, t, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "past": (rng.random((b, t, 14)) * 80).astype(np.float32),
        "past_mask": np.ones((b, t, 14), np.float32),
        "time_feat": (rng.random((b, t + 96, 4)) * 2 - 1).astype(np.float32),
        "profile": rng.integers(0, 7, b).astype(np.int64),
    }


def run_torch(model, inputs):
    with torch.no_grad():
        return [o.numpy() for o in model(*[torch.from_numpy(inputs[k]) for k in ("past", "past_mask", "time_feat", "profile")])]


def pytest_sessionfinish(session, exitstatus):
    """A skipped test fails the run: every test here has what it needs on a machine that runs the
    suite (the shipped model in models/, the test data in tests/fixtures/), so a skip would
    only hide a missing file behind a green result."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and session.exitstatus == pytest.ExitCode.OK:
        reporter.ensure_newline()
        reporter.write_line(f"{len(skipped)} test(s) skipped; skips fail this suite: "
                            + ", ".join(r.nodeid for r in skipped), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
