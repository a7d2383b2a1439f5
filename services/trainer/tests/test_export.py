"""ONNX export of a tiny model: one self-contained file, dynamic batch, ORT == PyTorch within 1e-4."""

import glob
import os

import numpy as np
import onnx
import onnxruntime as ort

from conftest import TINY_T, random_inputs, run_torch
from fleetcast_trainer import bench, export


def test_export_is_self_contained_and_matches_torch(tiny_model, tmp_path):
    path = str(tmp_path / "tiny.onnx")
    export.export_onnx(tiny_model, path)
    assert glob.glob(str(tmp_path / "*")) == [path]  # no external .data file
    proto = onnx.load(path, load_external_data=False)
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in proto.graph.input] == export.INPUTS
    assert [o.name for o in proto.graph.output] == export.OUTPUTS
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for b in (1, 5):  # dynamic batch
        inputs = random_inputs(b, TINY_T, seed=b)
        inputs["past_mask"][0, :5] = 0.0
        inputs["past_mask"][-1, :, [3, 8]] = 0.0
        got = sess.run(export.OUTPUTS, inputs)
        for g, e in zip(got, run_torch(tiny_model, inputs)):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, atol=1e-4, rtol=1e-4)


def test_golden_roundtrip_and_cost(tiny_model, fleet, tmp_path):
    path = str(tmp_path / "tiny.onnx")
    export.export_onnx(tiny_model, path)
    batch = export.golden_batch(fleet, TINY_T)
    export.write_golden(str(tmp_path / "golden.json"), tiny_model, batch, "test")
    inputs, expected, g = export.load_golden(str(tmp_path / "golden.json"))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for name, got in zip(export.OUTPUTS, sess.run(export.OUTPUTS, inputs)):
        np.testing.assert_allclose(got, expected[name], atol=g["atol"], rtol=g["rtol"])
    cost = bench.count_macs(path)
    assert cost["macs"] > 0 and cost["elementwise_outputs"] > 0
    rows = bench.throughput(path, TINY_T, batches=(1, 8), min_seconds=0.05)
    assert [r["batch"] for r in rows] == [1, 8] and all(r["servers_per_s"] > 0 for r in rows)
