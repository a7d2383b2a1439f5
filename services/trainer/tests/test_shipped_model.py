"""The committed model in models/: manifest per CONTRACT.md, graph I/O as the manifest says, one
self-contained file under 10 MB, and ONNX Runtime reproducing the PyTorch golden outputs."""

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import REPO
from fleetcast_trainer import export, schema

MODELS = os.path.join(REPO, "models")
MANIFEST = os.path.join(MODELS, "tft.json")



def test_the_shipped_model_is_there():
    # The model is committed; a checkout without it must fail, not skip (the other tests here
    # would error on the missing files anyway, this names the cause).
    assert os.path.exists(MANIFEST), f"{MANIFEST} is missing"
    assert os.path.exists(os.path.join(MODELS, "tft.onnx")), "models/tft.onnx is missing"


@pytest.fixture(scope="module")
def manifest():
    return json.load(open(MANIFEST))


def test_manifest_follows_the_contract(manifest):
    assert manifest["metrics"] == schema.METRICS
    assert manifest["targets"] == schema.TARGETS
    assert manifest["profiles"] == schema.PROFILES
    assert manifest["quantiles"] == [0.1, 0.5, 0.9]
    assert manifest["horizon_steps"] == 96 and manifest["step_ms"] == 300_000
    assert 0 < manifest["min_history_steps"] <= manifest["encoder_steps"]
    assert manifest["version"].startswith("tft-")
    assert manifest["training"]["data_fingerprint"].startswith("sha256:")
    for key in ("qrisk_p50", "qrisk_p90", "coverage"):
        assert key in manifest["evaluation"]["generated"]


def test_graph_matches_manifest(manifest):
    path = os.path.join(MODELS, manifest["onnx"])
    assert os.path.getsize(path) < 10 * 1024 * 1024
    assert not [f for f in os.listdir(MODELS) if f.endswith(".data")]
    proto = onnx.load(path, load_external_data=False)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17

    def dims(vi):
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
    assert [(i.name, dims(i)) for i in proto.graph.input] == [(i["name"], i["shape"]) for i in manifest["inputs"]]
    assert [(o.name, dims(o)) for o in proto.graph.output] == [(o["name"], o["shape"]) for o in manifest["outputs"]]


def test_onnx_runtime_reproduces_the_golden_outputs(manifest):
    inputs, expected, g = export.load_golden(os.path.join(MODELS, "golden.json"))
    assert g["model_version"] == manifest["version"]
    sess = ort.InferenceSession(os.path.join(MODELS, manifest["onnx"]), providers=["CPUExecutionProvider"])
    got = dict(zip(export.OUTPUTS, sess.run(export.OUTPUTS, inputs)))
    for name in export.OUTPUTS:
        np.testing.assert_allclose(got[name], expected[name], atol=g["atol"], rtol=g["rtol"], err_msg=name)
    q = got["quantiles"]
    assert np.all(q[..., 0] <= q[..., 1]) and np.all(q[..., 1] <= q[..., 2])


def test_evaluate_scores_the_shipped_model_again_and_keeps_what_ships(tmp_path):
    # `train.sh --evaluate`: the card's numbers are renewed on another held-out file; the model
    # (graph, weights, version, minimum history) and its training record are not touched.
    import shutil

    from fleetcast_trainer import cli
    from fleetcast_trainer.data import file_fingerprint

    from conftest import synth_fleet

    # Four days: the evaluation's first origin is three days in (Holt-Winters' season).
    fleet_path = synth_fleet(str(tmp_path / "held-out.parquet"), servers=3, days=4, seed=5)
    out = tmp_path / "models"
    shutil.copytree(MODELS, out)
    before = json.load(open(out / "tft.json"))
    onnx_bytes = (out / "tft.onnx").read_bytes()
    cli.main(["evaluate", "--eval-data", fleet_path, "--out", str(out), "--eval-every", "72"])
    after = json.load(open(out / "tft.json"))
    assert after["eval_data"]["data_fingerprint"] == file_fingerprint(fleet_path)
    assert after["eval_data"]["data_fingerprint"] != before["eval_data"]["data_fingerprint"]
    for key in ("version", "min_history_steps", "training", "model", "encoder_steps"):
        assert after[key] == before[key], key
    assert (out / "tft.onnx").read_bytes() == onnx_bytes
    evaluation = json.load(open(out / "evaluation.json"))
    assert after["evaluation"]["generated"]["qrisk_p50"] == pytest.approx(
        evaluation["generated"]["overall"]["tft"]["qrisk_p50"], abs=1e-5)
    assert after["evaluation"]["generated"] != before["evaluation"]["generated"]
    card_text = open(out / "README.md").read()
    assert os.path.basename(fleet_path) in card_text and "train.sh --evaluate" in card_text
