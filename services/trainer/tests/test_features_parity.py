"""The trainer builds the model inputs CONTRACT.md prescribes from the same records the
predictor's test (services/predictor/tests/parity.rs) ingests: services/predictor/tests/fixtures/
features_parity.json, whose expected tensors make_features_parity.py worked out from the contract
alone. The records go through the trainer's real path: a generator export (parquet, nulls for
unreported metrics) read by `load_parquet`, windows cut by `make_batch`.

Covered: calendar features across midnight UTC and Sunday -> Monday, a metric never reported,
a metric missing in one step, a missing step, a late record, left padding of a short server,
a server whose last step is earlier than the others'. Masks, padding and profiles exactly;
floats within the fixture's tolerance (1e-5)."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO
from fleetcast_trainer import schema
from fleetcast_trainer.data import load_parquet
from fleetcast_trainer.windows import make_batch

FIXTURE = os.path.join(REPO, "services", "predictor", "tests", "fixtures", "features_parity.json")


@pytest.fixture(scope="module")
def fx():
    return json.load(open(FIXTURE))


def _export(records, path):
    """The records as the generator's export writes them: one row per server and step."""
    cols = {"server": [], "profile": [], "ts_ms": [], **{m: [] for m in schema.METRICS}}
    for r in records:
        cols["server"].append(r["server"])
        cols["profile"].append(r["profile"])
        cols["ts_ms"].append(r["ts_ms"])
        for m in schema.METRICS:
            cols[m].append(r["metrics"].get(m))  # None -> null, as the export writes unknowns
    types = {"server": pa.string(), "profile": pa.string(), "ts_ms": pa.int64()}
    pq.write_table(pa.table({k: pa.array(v, types.get(k, pa.float32())) for k, v in cols.items()}), path)


def test_the_fixture_is_for_the_shipped_model(fx):
    manifest = json.load(open(os.path.join(REPO, "models", "tft.json")))
    assert (fx["encoder_steps"], fx["horizon_steps"]) == (manifest["encoder_steps"], manifest["horizon_steps"]), \
        "fixture made for another window: rerun services/predictor/tests/fixtures/make_features_parity.py"
    assert fx["metrics"] == schema.METRICS
    assert fx["step_ms"] == schema.STEP_MS


def test_trainer_features_match_the_contract_fixture(fx, tmp_path):
    t, h, tol = fx["encoder_steps"], fx["horizon_steps"], fx["float_tolerance"]
    records = [r for b in fx["batches"] for r in b["records"]]
    _export(records, tmp_path / "fleet.parquet")
    fleet = load_parquet(str(tmp_path / "fleet.parquet"))
    want = fx["servers"]
    servers = [fleet.servers.index(s["server"]) for s in want]
    origins = [(s["last_ts_ms"] - fleet.ts0_ms) // schema.STEP_MS for s in want]
    assert all((s["last_ts_ms"] - fleet.ts0_ms) % schema.STEP_MS == 0 for s in want)
    b = make_batch(fleet, servers, origins, t, h)

    exp = {k: np.array([s[k] for s in want]) for k in ("past", "past_mask", "time_feat", "profile")}
    past_mask = exp["past_mask"].reshape(len(want), t, 14)
    # Masks, left padding and profiles exactly.
    np.testing.assert_array_equal(b.past_mask, past_mask, err_msg="past_mask")
    np.testing.assert_array_equal(b.past[past_mask == 0], 0.0, err_msg="unknown and padding values are 0")
    np.testing.assert_array_equal(b.profile, exp["profile"], err_msg="profile")
    np.testing.assert_allclose(b.past, exp["past"].reshape(b.past.shape), rtol=0, atol=tol, err_msg="past")
    np.testing.assert_allclose(b.time_feat, exp["time_feat"].reshape(len(want), t + h, 4), rtol=0, atol=tol,
                               err_msg="time_feat")
    # The cases the fixture is there for are really in it.
    short = want.index(next(s for s in want if s["server"] == "ppgen003"))
    assert past_mask[short, 0].max() == 0 and past_mask[short, -1].max() == 1, "a left-padded server"
    assert (past_mask.max(1) == 0).any(), "a metric a server never reports"
    assert len({s["last_ts_ms"] for s in want}) == 2, "servers with different last steps"
