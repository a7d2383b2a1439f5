"""Rebuild the trained PyTorch model from a shipped `tft.onnx` (+ its `tft.json`).

The ONNX file is the only artefact a release keeps, so re-exporting a shipped model (a faster
graph, a newer opset) starts here. The exporter is deterministic: a fresh model of the same config
exported the same way names its initializers identically, so each torch parameter is found by name,
or, where the exporter renamed it (`onnx::MatMul_*` holds a transposed Linear weight), by exporting
a fresh model with known values and seeing where each parameter lands.
"""

import json
import os
import tempfile

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from . import export
from .model import TFT, TFTConfig


class RecoverError(Exception):
    pass


def _initializers(path):
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}


def _consumers(path):
    """Initializer name -> the nodes (and input slots) reading it (scope names such as
    `/enrich/fc1/MatMul` follow the module tree, unlike the exporter's `onnx::MatMul_<n>` numbers)."""
    graph = onnx.load(path).graph
    inits = {i.name for i in graph.initializer}
    out = {}
    for node in graph.node:
        for name in node.input:
            if name in inits:
                out.setdefault(name, []).append(f"{node.name}:{list(node.input).index(name)}")
    return {k: tuple(sorted(v)) for k, v in out.items()}


def _lstm_from_onnx(w, r, b):
    """ONNX LSTM gates are (i, o, f, c); torch's are (i, f, g, o); ONNX bias is [W_b | R_b]."""
    def reorder(a):
        i, o, f, c = np.split(a, 4, axis=0)
        return np.concatenate([i, f, c, o], 0)
    wb, rb = np.split(b[0], 2)
    return reorder(w[0]), reorder(r[0]), reorder(wb), reorder(rb)


def _where_params_land(cfg):
    """Map the nodes reading a renamed initializer -> (parameter, how it was stored), by exporting
    known random values."""
    probe = TFT(cfg, np.linspace(1.0, 2.0, 14), np.linspace(3.0, 4.0, 14))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in probe.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    with tempfile.TemporaryDirectory() as tmp:
        path = export.export_onnx(probe, os.path.join(tmp, "probe.onnx"))
        inits = _initializers(path)
        consumers = _consumers(path)
    params = {n: p.detach().numpy() for n, p in probe.named_parameters()}
    where = {}
    for name, arr in inits.items():
        if name in params:
            continue
        for pn, a in params.items():
            if a.ndim == 2 and a.T.shape == arr.shape and np.array_equal(a.T, arr):
                where[name] = (pn, True)
            elif a.shape == arr.shape and np.array_equal(a, arr):
                where[name] = (pn, False)
        n_metric = probe.metric_emb.shape[0]
        emb = torch.cat([probe.metric_emb, probe.cal_emb], 0).detach().numpy()
        if arr.shape == emb.shape and np.array_equal(arr, emb):
            where[name] = ("metric_emb", slice(0, n_metric))
        for prefix in ("encoder", "decoder"):
            lstm = getattr(probe, prefix)
            w_ih = lstm.weight_ih_l0.detach().numpy()
            if arr.shape == (1,) + w_ih.shape:
                w, _, _, _ = _lstm_from_onnx(arr, arr, np.zeros((1, 2 * w_ih.shape[0]), np.float32))
                if np.array_equal(w, w_ih):
                    where[name] = (prefix, "W")
                elif np.array_equal(w, lstm.weight_hh_l0.detach().numpy()):
                    where[name] = (prefix, "R")
            b = np.concatenate([lstm.bias_ih_l0.detach().numpy(), lstm.bias_hh_l0.detach().numpy()])
            if arr.shape == (1, b.shape[0]):
                _, _, wb, rb = _lstm_from_onnx(np.zeros((1,) + w_ih.shape, np.float32),
                                              np.zeros((1,) + w_ih.shape, np.float32), arr)
                if np.array_equal(np.concatenate([wb, rb]), b):
                    where[name] = (prefix, "B")
    return {consumers[name]: v for name, v in where.items()}


WEIGHTS = "tft.pt"


def save_weights(model: TFT, model_dir: str) -> str:
    """The training-form weights next to the ONNX file (which holds the inference form)."""
    path = os.path.join(model_dir, WEIGHTS)
    torch.save({"config": model.cfg.to_dict(), "state": model.state_dict()}, path)
    return path


def load_shipped(model_dir: str) -> TFT:
    """The trained model behind `model_dir`: from `tft.pt` when present, else rebuilt from a
    training-form `tft.onnx`; either way checked against the golden windows."""
    manifest = json.load(open(os.path.join(model_dir, "tft.json")))
    cfg = TFTConfig(**manifest["model"]["config"])
    weights = os.path.join(model_dir, WEIGHTS)
    if os.path.exists(weights):
        saved = torch.load(weights, weights_only=True)
        model = TFT(TFTConfig(**saved["config"]), torch.zeros(14), torch.zeros(14)).eval()
        model.load_state_dict(saved["state"])
        check_golden(model, os.path.join(model_dir, "golden.json"))
        return model
    if "graph" in manifest:
        raise RecoverError(f"{model_dir}: tft.onnx is the compiled form and {WEIGHTS} is missing; "
                           "retrain (just train) to get training-form weights")
    path = os.path.join(model_dir, manifest["onnx"])
    inits = _initializers(path)
    by_consumer = {v: k for k, v in _consumers(path).items()}
    model = TFT(cfg, inits["global_scale"], inits["floor"]).eval()
    state = {}
    for name, arr in inits.items():
        state[name] = arr
    lstm = {}
    for consumer, (target, how) in _where_params_land(cfg).items():
        if consumer not in by_consumer:
            raise RecoverError(f"{target}: no initializer read by {consumer} in the ONNX file")
        arr = inits[by_consumer[consumer]]
        if how is True:
            state[target] = arr.T
        elif how is False:
            state[target] = arr
        elif isinstance(how, slice):
            state[target] = arr[how]
        else:
            lstm.setdefault(target, {})[how] = arr
    for prefix, parts in lstm.items():
        if set(parts) != {"W", "R", "B"}:
            raise RecoverError(f"{prefix}: LSTM weights incomplete in the ONNX file ({sorted(parts)})")
        w, r, wb, rb = _lstm_from_onnx(parts["W"], parts["R"], parts["B"])
        state.update({f"{prefix}.weight_ih_l0": w, f"{prefix}.weight_hh_l0": r,
                      f"{prefix}.bias_ih_l0": wb, f"{prefix}.bias_hh_l0": rb})
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise RecoverError(f"parameters not found in the ONNX file: {missing}")
    model.load_state_dict({k: torch.as_tensor(np.ascontiguousarray(state[k])).reshape(own[k].shape).to(own[k].dtype)
                           for k in own})
    check_golden(model, os.path.join(model_dir, "golden.json"))
    return model


def check_golden(model: TFT, golden_path: str) -> float:
    inputs, expected, g = export.load_golden(golden_path)
    with torch.no_grad():
        got = model(*[torch.from_numpy(inputs[k]) for k in export.INPUTS])
    worst = 0.0
    for name, t in zip(export.OUTPUTS, got):
        diff = np.abs(t.numpy() - expected[name])
        worst = max(worst, float(diff.max()))
        if not np.all(diff <= g["atol"] + g["rtol"] * np.abs(expected[name])):
            raise RecoverError(f"recovered model differs from the golden {name} by {diff.max():.3g}")
    return worst
