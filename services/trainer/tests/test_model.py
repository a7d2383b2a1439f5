"""The TFT's contract-level behaviour: shapes, non-crossing quantiles, masking and left padding."""

import numpy as np
import torch

from conftest import TINY_T, random_inputs, run_torch
from fleetcast_trainer import schema
from fleetcast_trainer.layers import GRN, StackedGRN, VariableSelection


def test_output_shapes(tiny_model):
    q, vw, att = run_torch(tiny_model, random_inputs(5, TINY_T))
    assert q.shape == (5, 96, 8, 3)
    assert vw.shape == (5, 14)
    assert att.shape == (5, TINY_T)


def test_quantiles_never_cross_and_stay_in_range(tiny_model):
    torch.manual_seed(1)
    for p in tiny_model.head.parameters():  # exaggerate the head so offsets are large and varied
        p.data.normal_(0, 3.0)
    inputs = random_inputs(16, TINY_T, seed=2)
    inputs["past"] *= np.random.default_rng(0).choice([0.01, 1.0, 50.0], size=(16, 1, 14)).astype(np.float32)
    q, _, _ = run_torch(tiny_model, inputs)
    assert np.all(q[..., 0] <= q[..., 1]) and np.all(q[..., 1] <= q[..., 2])
    assert np.all(q >= 0)
    pct = [i for i, t in enumerate(schema.TARGETS) if schema.TARGET_UPPER[i] == 100.0]
    assert np.all(q[:, :, pct] <= 100.0)


def test_masked_values_do_not_matter(tiny_model):
    a = random_inputs(4, TINY_T, seed=3)
    a["past_mask"][:, :, [4, 9]] = 0.0  # java and net_out unknown
    a["past_mask"][1, :10] = 0.0  # left padding for server 1
    b = {k: v.copy() for k, v in a.items()}
    b["past"][a["past_mask"] == 0] = 12345.0  # garbage where unknown
    for x, y in zip(run_torch(tiny_model, a), run_torch(tiny_model, b)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_unknown_metrics_get_zero_weight_and_weights_sum_to_one(tiny_model):
    a = random_inputs(3, TINY_T, seed=4)
    a["past_mask"][:, :, [0, 4, 13]] = 0.0
    _, vw, att = run_torch(tiny_model, a)
    assert np.all(vw[:, [0, 4, 13]] < 1e-6)
    np.testing.assert_allclose(vw.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(att.sum(1), 1.0, atol=1e-5)


def test_left_padded_warm_up_server_is_finite_and_ignores_padding(tiny_model):
    a = random_inputs(2, TINY_T, seed=5)
    a["past_mask"][0, : TINY_T - 6] = 0.0
    a["past"][0, : TINY_T - 6] = 0.0
    q, vw, att = run_torch(tiny_model, a)
    assert np.isfinite(q).all() and np.isfinite(vw).all() and np.isfinite(att).all()
    assert att[0, : TINY_T - 6].max() < 1e-6  # padding steps get no attention
    # A server with no data at all still yields finite numbers (the predictor marks it warming up).
    a["past_mask"][1] = 0.0
    q, vw, att = run_torch(tiny_model, a)
    assert np.isfinite(q).all() and np.isfinite(vw).all() and np.isfinite(att).all()


def test_normalisation_is_inside_the_graph(tiny_model):
    """Scaling a server's load_average window scales its load forecast (raw units in and out)."""
    a = random_inputs(1, TINY_T, seed=6)
    a["past_mask"][:] = 0.0
    j = schema.METRICS.index("load_average")
    a["past_mask"][:, :, j] = 1.0
    a["past"][0, :, j] = 2.0 + np.sin(np.arange(TINY_T) / 3.0)
    tiny_model.static_w.data.zero_()  # remove the absolute-level covariate for this check
    b = {k: v.copy() for k, v in a.items()}
    b["past"][0, :, j] *= 10.0
    qa, qb = run_torch(tiny_model, a)[0], run_torch(tiny_model, b)[0]
    k = schema.TARGETS.index("load")
    np.testing.assert_allclose(qb[0, :, k], 10.0 * qa[0, :, k], rtol=2e-3, atol=2e-3)


def test_stacked_grn_equals_separate_grns():
    torch.manual_seed(0)
    v, d, n = 3, 4, 5
    st = StackedGRN(v, d, d).eval()
    x = torch.randn(v, n, d)
    out = st(x)
    for i in range(v):
        g = GRN(d, d, d).eval()
        g.fc1.weight.data, g.fc1.bias.data = st.w1[i].T, st.b1[i, 0]
        g.fc2.weight.data, g.fc2.bias.data = st.w2[i].T, st.b2[i, 0]
        g.gate.glu.value.weight.data, g.gate.glu.value.bias.data = st.wa[i].T, st.ba[i, 0]
        g.gate.glu.gate.weight.data, g.gate.glu.gate.bias.data = st.wg[i].T, st.bg[i, 0]
        g.gate.norm.weight.data, g.gate.norm.bias.data = st.norm.weight[i, 0], st.norm.bias[i, 0]
        torch.testing.assert_close(g(x[i]), out[i], rtol=1e-5, atol=1e-5)


def test_variable_selection_weights_are_a_distribution():
    torch.manual_seed(0)
    vsn = VariableSelection(5, 4, 4, d_context=4).eval()
    emb, ctx = torch.randn(5, 7, 4), torch.randn(7, 4)
    allow = torch.ones(7, 5)
    allow[:, 2] = 0
    sel, w = vsn(emb, ctx, allow)
    assert sel.shape == (7, 4) and w.shape == (7, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(7))
    assert float(w[:, 2].max().detach()) < 1e-6
