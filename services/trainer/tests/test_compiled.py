"""The inference form (compiled.py) computes the training form's function, in PyTorch and in ONNX
Runtime, on the contract's edge cases; and a shipped ONNX file gives its weights back (recover.py)."""

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch

from conftest import TINY_T, run_torch
from fleetcast_trainer import bench, compiled, export, recover
from fleetcast_trainer.windows import calendar_features

STEP_MS = 300_000


def calendar_inputs(b, t, seed=0):
    """Random windows with real calendar features (the compiled form reads the phase of each
    sin/cos pair, so the pairs must lie on the unit circle, as the contract says they do)."""
    rng = np.random.default_rng(seed)
    start = rng.integers(1_700_000_000_000, 1_800_000_000_000, b) // STEP_MS * STEP_MS
    stamps = start[:, None] + np.arange(t + 96)[None, :] * STEP_MS
    past = (rng.random((b, t, 14)) * rng.choice([1.0, 80.0, 5000.0], (1, 1, 14))).astype(np.float32)
    mask = np.ones((b, t, 14), np.float32)
    mask[0, :5] = 0.0  # warm-up
    mask[-1, :, [3, 8]] = 0.0  # metrics never reported
    if b > 2:
        mask[1] = 0.0
        mask[1, :, 3] = 1.0  # a single metric
        past[2, -1] *= 40.0  # a spike far outside the window's scale (z clamps)
    past[mask == 0] = 0.0
    return {"past": past, "past_mask": mask, "time_feat": calendar_features(stamps),
            "profile": rng.integers(0, 7, b).astype(np.int64)}


# The tiny model's random weights bend its per-variable networks far more than trained ones do, so
# its tables need more knots than the shipped model's for the same error.
KNOTS = 4096


def assert_close(got, want, tol=1e-4):
    """Quantiles within `tol` of each forecast curve's magnitude (float32 rounding in a P10 that is
    P50 minus a wide band is relative to the band, not to the small P10), the rest elementwise."""
    for g, e in zip(got, want):
        assert g.shape == e.shape
        if g.ndim == 4:
            mag = np.maximum(1.0, np.abs(e).max(axis=(1, 3), keepdims=True))
            assert (np.abs(g - e) <= tol * mag).all(), float((np.abs(g - e) / (tol * mag)).max())
        else:
            np.testing.assert_allclose(g, e, atol=tol, rtol=tol)


def test_compiled_matches_training_form_in_torch(tiny_model):
    fast = compiled.CompiledTFT(tiny_model, KNOTS).eval()
    for b, seed in ((1, 1), (5, 2), (9, 3)):
        inputs = calendar_inputs(b, TINY_T, seed)
        assert_close(run_torch(fast, inputs), run_torch(tiny_model, inputs))


def test_compiled_onnx_matches_training_form_and_is_cheaper(tiny_model, tmp_path):
    plain, fast = str(tmp_path / "plain.onnx"), str(tmp_path / "fast.onnx")
    export.export_onnx(tiny_model, plain)
    export.export_onnx(compiled.CompiledTFT(tiny_model, KNOTS), fast)
    sess = ort.InferenceSession(fast, providers=["CPUExecutionProvider"])
    inputs = calendar_inputs(7, TINY_T, 4)
    assert_close(sess.run(export.OUTPUTS, inputs), run_torch(tiny_model, inputs))

    # Less work, counted rather than timed (timings belong to `just bench`): fewer
    # multiply-accumulates and fewer elements written by the elementwise nodes.
    plain_cost, fast_cost = bench.count_macs(plain), bench.count_macs(fast)
    assert fast_cost["macs"] < 0.8 * plain_cost["macs"]
    assert fast_cost["elementwise_outputs"] < 0.9 * plain_cost["elementwise_outputs"]


def test_table_error_shrinks_with_knots(tiny_model):
    inputs = calendar_inputs(5, TINY_T, 6)
    want = run_torch(tiny_model, inputs)[0]
    err = lambda k: np.abs(run_torch(compiled.CompiledTFT(tiny_model, knots=k), inputs)[0] - want).max()
    assert err(65) > 5 * err(1024)


def trained_like(model):
    """Distinct values everywhere, as after training (the exporter shares identical constant
    initializers, such as the zero biases and unit norms of a freshly initialised model)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def shipped(model, fleet, tmp_path, golden_model=None):
    """A models/ directory as a training run leaves it: training-form ONNX, manifest, golden
    (from `golden_model`, default the same model)."""
    out = tmp_path / "models"
    out.mkdir()
    export.export_onnx(model, str(out / "tft.onnx"))
    export.write_manifest(str(out / "tft.json"), model, "tft.onnx", "v-test", 12, {}, {})
    export.write_golden(str(out / "golden.json"), golden_model or model, export.golden_batch(fleet, TINY_T), "v-test")
    return out


def test_recover_rebuilds_the_training_weights_from_onnx(tiny_model, fleet, tmp_path):
    tiny_model = trained_like(tiny_model)
    out = shipped(tiny_model, fleet, tmp_path)
    back = recover.load_shipped(str(out))
    want = tiny_model.state_dict()
    for name, value in back.state_dict().items():
        torch.testing.assert_close(value, want[name], rtol=0, atol=0, msg=name)
    # Once saved, the weights come from tft.pt, even after tft.onnx is replaced by the compiled form.
    recover.save_weights(back, str(out))
    export.export_onnx(compiled.CompiledTFT(back), str(out / "tft.onnx"))
    again = recover.load_shipped(str(out))
    torch.testing.assert_close(again.state_dict()["head.weight"], want["head.weight"])


def test_recover_refuses_a_model_it_cannot_reproduce(tiny_model, fleet, tmp_path):
    tiny_model = trained_like(tiny_model)
    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        other.head.bias += 1.0  # the golden no longer belongs to the shipped weights
    out = shipped(tiny_model, fleet, tmp_path, golden_model=other)
    with pytest.raises(recover.RecoverError, match="golden"):
        recover.load_shipped(str(out))


def test_zero_padding_and_nan_never_break_the_batch(tiny_model, tmp_path):
    """All-zero calendar rows (padding) and a NaN must not turn into an out-of-range gather index:
    that would fail every server in the chunk, not only the odd one."""
    path = str(tmp_path / "fast.onnx")
    export.export_onnx(compiled.CompiledTFT(tiny_model, KNOTS), path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = calendar_inputs(3, TINY_T, 7)
    inputs["time_feat"][0] = 0.0
    inputs["past"][1, 3, 2] = np.nan
    q = sess.run(export.OUTPUTS, inputs)[0]
    assert np.isfinite(q[[0, 2]]).all()


def test_patch_decoder_compiles_to_the_same_function(fleet):
    """A model whose decoder positions emit two steps each (TFTConfig.patch): full 96-step
    outputs, and the inference form still matches it."""
    from fleetcast_trainer.data import global_scales
    from fleetcast_trainer.model import TFT, TFTConfig
    torch.manual_seed(1)
    g = global_scales(fleet)
    model = trained_like(TFT(TFTConfig(encoder_steps=TINY_T, hidden=8, var_hidden=8, heads=2, dropout=0.0, patch=2), g, g * 0.01).eval())
    inputs = calendar_inputs(5, TINY_T, 8)
    want = run_torch(model, inputs)
    assert want[0].shape == (5, 96, 8, 3)
    assert (want[0][..., 0] <= want[0][..., 1]).all() and (want[0][..., 1] <= want[0][..., 2]).all()
    assert_close(run_torch(compiled.CompiledTFT(model, KNOTS), inputs), want)
