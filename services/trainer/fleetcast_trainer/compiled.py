"""The inference form of a trained TFT: the same function, rearranged so ONNX Runtime does less work.

Training wants the textbook graph (autograd, dropout, per-variable networks). Serving 1,000 servers
a tick wants few passes over `[servers x steps x variables x hidden]` tensors, because at hidden 8
the graph is bound by elementwise memory traffic, not by matmuls. So, at export:

- The variable-selection "flat" GRN's first layer and skip are linear in the raw per-variable
  features, so the embedding matmuls fold into them: one `[steps, 32] x [32, k]` matmul each.
- Every per-variable GRN sees one scalar: a metric its normalised value (clamped to +-clamp), a
  calendar variable its phase (its inputs are the sin and cos of it). So each is a 1-D function,
  tabulated on a grid as one quadratic per interval, read back by one gather and one batched matmul
  that also applies the selection weights. An unobserved metric's weight is exactly zero.
- Attention heads run as separate matmuls with the score scale and the head mean folded into the
  projections, so no `[heads, B, H, L]` tensor is built or reduced.
- Softplus is written as Exp/Log (ONNX Runtime's Softplus kernel is ~4x slower).

The result matches the training form to ~1e-5 of each output's scale; `tests/test_compiled.py`
and the golden parity check hold it to the contract's tolerance.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

from .model import TFT, N_METRICS, N_CAL

TABLE_KNOTS = 2048


def _stacked_grn(grn, x, v):
    """Variable `v` of a StackedGRN on `x` [..., d] (the exact network)."""
    h = F.elu(x @ grn.w1[v] + grn.b1[v])
    h = h @ grn.w2[v] + grn.b2[v]
    y = x + (h @ grn.wa[v] + grn.ba[v]) * torch.sigmoid(h @ grn.wg[v] + grn.bg[v])
    return F.layer_norm(y, (grn.norm.d,)) * grn.norm.weight[v] + grn.norm.bias[v]


def _quadratic_table(fns, ranges, knots):
    """Per function, per grid interval: (f0, linear, square) so f(x0 + s h) ~ f0 + s lin + s^2 sq,
    exact at both ends and the midpoint. Returns [V * (knots - 1), 3 * d]."""
    parts = []
    for fn, (lo, hi) in zip(fns, ranges):
        grid = torch.linspace(lo, hi, knots, dtype=torch.float64)
        mid = (grid[:-1] + grid[1:]) / 2
        f0, fm, f1 = fn(grid[:-1].float()), fn(mid.float()), fn(grid[1:].float())
        parts.append(torch.stack([f0, 4 * fm - 3 * f0 - f1, 2 * f1 + 2 * f0 - 4 * fm], 1))
    table = torch.cat(parts, 0)
    return table.reshape(table.shape[0], -1).contiguous()


def _phase(feat):
    """[B, L, 4] (sin, cos) pairs -> [B, L, 2] phase angles in [-pi/2, 3pi/2)."""
    pairs = feat.reshape(feat.shape[0], feat.shape[1], N_CAL, 2)
    sin, cos = pairs[..., 0], pairs[..., 1]
    # A zero cos becomes a tiny positive one, so (0, 0) (zero padding) reads as phase 0, not NaN.
    a = torch.atan(sin / torch.where(cos.abs() < 1e-30, torch.full_like(cos, 1e-30), cos))
    return torch.where(cos < 0, a + math.pi, a)


def _softplus(x):
    """torch's softplus (linear above 20) as Exp/Log."""
    return torch.where(x > 20.0, x, torch.log(1.0 + torch.exp(torch.clamp(x, max=20.0))))


class _FoldedFlat(nn.Module):
    """A VSN's flat GRN with its first layer and skip as matmuls on the raw features
    `[z*m (14), m (14), sin/cos (4)]` (metrics omitted for the future side); returns the weights."""

    def __init__(self, vsn, metric_emb, cal_emb):
        super().__init__()
        n_metrics = metric_emb.shape[0]
        emb = torch.cat([metric_emb, cal_emb], 0)  # [V, 3, d]
        self.w_h, self.b_h = self._fold(torch.matmul(emb, vsn.flat_w1), n_metrics, vsn.flat_b1)
        self.w_s, self.b_s = self._fold(torch.matmul(emb, vsn.flat_skip), n_metrics, None)
        self.ctx, self.fc2, self.gate = vsn.flat_ctx, vsn.flat_fc2, vsn.flat_gate

    @staticmethod
    def _fold(rows, n_metrics, bias):
        # metric v: (z*m) r0 + m r1 + (1-m) r2 = (z*m) r0 + m (r1 - r2) + r2; calendar: sin r0 + cos r1 + r2.
        met, cal = rows[:n_metrics], rows[n_metrics:]
        w = torch.cat([met[:, 0], met[:, 1] - met[:, 2], cal[:, :2].reshape(-1, rows.shape[-1])], 0)
        b = rows[:, 2].sum(0) + (bias if bias is not None else 0.0)
        return nn.Parameter(w.detach().clone()), nn.Parameter(b.detach().clone())

    def forward(self, feats, context, allow=None):
        h = feats @ self.w_h + self.b_h + self.ctx(context)
        logits = self.gate(self.fc2(F.elu(h)), feats @ self.w_s + self.b_s)
        if allow is not None:
            logits = logits + (allow - 1.0) * 1.0e4
        return torch.softmax(logits, dim=-1)


class CompiledTFT(nn.Module):
    def __init__(self, model: TFT, knots: int = TABLE_KNOTS):
        super().__init__()
        self.m = model.eval()
        self.cfg = cfg = model.cfg
        self.knots = knots
        with torch.no_grad():
            self.past_flat = _FoldedFlat(model.past_vsn, model.metric_emb, model.cal_emb)
            self.fut_flat = _FoldedFlat(model.future_vsn, model.metric_emb[:0], model.cal_emb)
            metric = lambda v: lambda z: _stacked_grn(
                model.past_vsn.per_var, z[:, None] * model.metric_emb[v, 0] + model.metric_emb[v, 1], v)
            calendar = lambda grn, c, v: lambda a: _stacked_grn(
                grn, torch.sin(a)[:, None] * model.cal_emb[c, 0] + torch.cos(a)[:, None] * model.cal_emb[c, 1]
                + model.cal_emb[c, 2], v)
            past_fns = [metric(v) for v in range(N_METRICS)]
            past_fns += [calendar(model.past_vsn.per_var, c, N_METRICS + c) for c in range(N_CAL)]
            fut_fns = [calendar(model.future_vsn.per_var, c, c) for c in range(N_CAL)]
            z_range, a_range = (-cfg.clamp, cfg.clamp), (-math.pi / 2, 3 * math.pi / 2)
            self.register_buffer("past_table", _quadratic_table(past_fns, [z_range] * N_METRICS + [a_range] * N_CAL, knots))
            self.register_buffer("fut_table", _quadratic_table(fut_fns, [a_range] * N_CAL, knots))
            self.register_buffer("past_offset", torch.arange(N_METRICS + N_CAL) * (knots - 1))
            self.register_buffer("fut_offset", torch.arange(N_CAL) * (knots - 1))
            # Attention: per-head projections with the score scale and the head mean folded in.
            att = model.attention
            dk, heads, scale = att.dk, att.heads, 1.0 / math.sqrt(att.dk)
            self.heads = heads
            part = lambda w, i: w[i * dk:(i + 1) * dk].detach().clone()
            self.wq = nn.ParameterList([nn.Parameter(part(att.q.weight, i).T * scale) for i in range(heads)])
            self.bq = nn.ParameterList([nn.Parameter(part(att.q.bias, i) * scale) for i in range(heads)])
            self.wk = nn.ParameterList([nn.Parameter(part(att.k.weight, i).T.contiguous()) for i in range(heads)])
            self.bk = nn.ParameterList([nn.Parameter(part(att.k.bias, i)) for i in range(heads)])
            self.wv = nn.Parameter(att.v.weight.T / heads)
            self.bv = nn.Parameter(att.v.bias / heads)

    def _lookup(self, table, offset, u, w):
        """sum_v w_v f_v(x_v): `u` [B, L, V] grid coordinates, `w` [B, L, V] selection weights.
        One gather of each variable's quadratic piece, one batched matmul for the weighted sum."""
        # A NaN would become an out-of-range gather index and fail the whole batch; it reads
        # as grid point 0 instead (inputs are validated upstream, so this is a last line).
        u = torch.where(torch.isnan(u), torch.zeros_like(u), u)
        i0 = torch.clamp(torch.floor(u), 0, self.knots - 2)
        s = u - i0
        n, v = u.shape[0] * u.shape[1], u.shape[2]
        coef = torch.stack([w, w * s, w * s * s], -1).reshape(n, 1, 3 * v)
        rows = table[i0.long() + offset].reshape(n, 3 * v, self.cfg.hidden)
        return torch.matmul(coef, rows)

    def forward(self, past, past_mask, time_feat, profile):
        mdl, cfg = self.m, self.cfg
        b = past.shape[0]
        t, h, d = cfg.encoder_steps, cfg.positions, cfg.hidden
        m = past_mask
        z, loc, mean, scale, cnt = mdl.normalise(past, m)
        c_s, c_e, c_h, c_c = mdl.static_contexts(loc, mean, scale, cnt, profile)

        # Variable selection: weights from the folded flat GRNs, values from the tables.
        tf_past, tf_fut = time_feat[:, :t], mdl.future_calendar(time_feat)
        allow = torch.cat([m, torch.ones_like(m[..., :N_CAL])], -1)
        w = self.past_flat(torch.cat([z * m, m, tf_past], -1), c_s[:, None, :], allow)  # [B, T, 16]
        to_grid = lambda x, lo, hi: (x - lo) * ((self.knots - 1) / (hi - lo))
        u = torch.cat([to_grid(z, -cfg.clamp, cfg.clamp), to_grid(_phase(tf_past), -math.pi / 2, 1.5 * math.pi)], -1)
        past_sel = self._lookup(self.past_table, self.past_offset, u, w).reshape(b, t, d)
        w_f = self.fut_flat(tf_fut, c_s[:, None, :])
        u_f = to_grid(_phase(tf_fut), -math.pi / 2, 1.5 * math.pi)
        fut_sel = self._lookup(self.fut_table, self.fut_offset, u_f, w_f).reshape(b, h, d)

        enc, state = mdl.encoder(past_sel, (c_h[None], c_c[None]))
        dec, _ = mdl.decoder(fut_sel, state)
        lstm_feat = mdl.lstm_gate(torch.cat([enc, dec], 1), torch.cat([past_sel, fut_sel], 1))
        enriched = mdl.enrich(lstm_feat, c_e[:, None, :])
        step_seen = m.amax(-1)
        pad = torch.cat([(step_seen - 1.0) * 1.0e4, torch.zeros_like(step_seen[:, :1]).expand(-1, h)], 1)
        bias = mdl.causal_bias + pad[:, None, :]  # [B, H, T+H]
        query = enriched[:, t:]
        attn = 0.0
        for i in range(self.heads):
            q = query @ self.wq[i] + self.bq[i]
            k = enriched @ self.wk[i] + self.bk[i]
            attn = attn + torch.softmax(torch.matmul(q, k.transpose(1, 2)) + bias, -1)
        att = mdl.attention.out(torch.matmul(attn, enriched @ self.wv + self.bv))
        y = mdl.out_gate(mdl.pos_grn(mdl.attn_gate(att, query)), lstm_feat[:, t:])
        past_attn = attn.sum(1)[:, :t] * (1.0 / (self.heads * h))  # the head and step mean
        return mdl.outputs(y, loc, scale, w[..., :N_METRICS], step_seen, past_attn, softplus=_softplus)
