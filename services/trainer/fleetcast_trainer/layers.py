"""TFT building blocks (Lim et al., 2019, section 4): GLU, gated residual networks, variable
selection networks and interpretable multi-head attention.

Per-variable networks keep their weights stacked as `[V, ...]` and run as one batched matmul over a
`[V, N, d]` layout: the same maths as V separate GRNs, but a single MatMul node each in ONNX, which
is what makes the exported graph fast on a CPU.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F


class GLU(nn.Module):
    """Gated linear unit: lets the network suppress a whole block (eq. 5). Value and gate are two
    matmuls rather than one split in half, which saves two Slice copies in the ONNX graph."""

    def __init__(self, d_in: int, d_out: int, dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.value = nn.Linear(d_in, d_out)
        self.gate = nn.Linear(d_in, d_out)

    def forward(self, x):
        x = self.drop(x)
        return self.value(x) * torch.sigmoid(self.gate(x))


class GateAddNorm(nn.Module):
    """LayerNorm(skip + GLU(x)): the gated residual used around every TFT block."""

    def __init__(self, d_in: int, d_out: int, dropout: float = 0.0):
        super().__init__()
        self.glu = GLU(d_in, d_out, dropout)
        self.norm = nn.LayerNorm(d_out)

    def forward(self, x, skip):
        return self.norm(skip + self.glu(x))


class GRN(nn.Module):
    """Gated residual network (eqs. 2-4) with an optional static context."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, d_context: int = 0, dropout: float = 0.0):
        super().__init__()
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else None
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.ctx = nn.Linear(d_context, d_hidden, bias=False) if d_context else None
        self.fc2 = nn.Linear(d_hidden, d_hidden)
        self.gate = GateAddNorm(d_hidden, d_out, dropout)

    def forward(self, x, c=None):
        skip = x if self.skip is None else self.skip(x)
        h = self.fc1(x)
        if self.ctx is not None and c is not None:
            h = h + self.ctx(c)
        h = self.fc2(F.elu(h))
        return self.gate(h, skip)


def _stacked(v: int, d_in: int, d_out: int) -> nn.Parameter:
    w = torch.empty(v, d_in, d_out)
    bound = 1.0 / math.sqrt(d_in)
    nn.init.uniform_(w, -bound, bound)
    return nn.Parameter(w)


class StackedLayerNorm(nn.Module):
    """A separate LayerNorm per variable, over the last axis of `[V, N, d]`."""

    def __init__(self, v: int, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(v, 1, d))
        self.bias = nn.Parameter(torch.zeros(v, 1, d))
        self.d = d

    def forward(self, x):
        return F.layer_norm(x, (self.d,)) * self.weight + self.bias


class StackedGRN(nn.Module):
    """V independent GRNs (one per input variable, eq. 7) evaluated as batched matmuls on `[V, N, d]`."""

    def __init__(self, v: int, d: int, d_hidden: int, dropout: float = 0.0):
        super().__init__()
        self.w1, self.b1 = _stacked(v, d, d_hidden), nn.Parameter(torch.zeros(v, 1, d_hidden))
        self.w2, self.b2 = _stacked(v, d_hidden, d_hidden), nn.Parameter(torch.zeros(v, 1, d_hidden))
        self.wa, self.ba = _stacked(v, d_hidden, d), nn.Parameter(torch.zeros(v, 1, d))
        self.wg, self.bg = _stacked(v, d_hidden, d), nn.Parameter(torch.zeros(v, 1, d))
        self.drop = nn.Dropout(dropout)
        self.norm = StackedLayerNorm(v, d)

    def forward(self, x):  # x: [V, N, d]
        h = F.elu(torch.matmul(x, self.w1) + self.b1)
        h = self.drop(torch.matmul(h, self.w2) + self.b2)
        a = torch.matmul(h, self.wa) + self.ba
        g = torch.sigmoid(torch.matmul(h, self.wg) + self.bg)
        return self.norm(x + a * g)


class VariableSelection(nn.Module):
    """Variable selection network (eqs. 6-8) over V embedded variables laid out as `[V, N, d]`.

    `allow` (`[N, V]`, 1 = may be selected) removes unknown variables from the softmax, so a metric
    the server never reported gets exactly zero weight instead of a learned guess.
    Returns the selected features `[N, d]` and the weights `[N, V]`.
    """

    def __init__(self, v: int, d: int, d_hidden: int, d_context: int = 0, dropout: float = 0.0):
        super().__init__()
        self.v, self.d = v, d
        # Flattened-input GRN whose first layer is split per variable (sum of V matmuls == one
        # matmul on the concatenation), so no [N, V*d] reshuffle is needed.
        self.flat_w1 = _stacked(v, d, d_hidden)
        self.flat_b1 = nn.Parameter(torch.zeros(d_hidden))
        self.flat_skip = _stacked(v, d, v)
        self.flat_ctx = nn.Linear(d_context, d_hidden, bias=False) if d_context else None
        self.flat_fc2 = nn.Linear(d_hidden, d_hidden)
        self.flat_gate = GateAddNorm(d_hidden, v, dropout)
        self.per_var = StackedGRN(v, d, d_hidden, dropout) if v > 1 else None

    def forward(self, emb, context=None, allow=None):  # emb: [V, N, d]
        h = torch.matmul(emb, self.flat_w1).sum(0) + self.flat_b1
        if self.flat_ctx is not None and context is not None:
            h = h + self.flat_ctx(context)
        h = self.flat_fc2(F.elu(h))
        logits = self.flat_gate(h, torch.matmul(emb, self.flat_skip).sum(0))  # [N, V]
        if allow is not None:
            logits = logits + (allow - 1.0) * 1.0e4
        weights = torch.softmax(logits, dim=-1)
        processed = self.per_var(emb) if self.per_var is not None else emb
        selected = (processed * weights.transpose(0, 1).unsqueeze(-1)).sum(0)  # [N, d]
        return selected, weights


class InterpretableAttention(nn.Module):
    """Interpretable multi-head attention (eqs. 13-16): per-head queries/keys, one value projection
    shared by all heads, head-averaged attention. Queries are only the decoder positions (the
    only ones whose outputs are used), keys are all past + future positions."""

    def __init__(self, d: int, heads: int, dropout: float = 0.0):
        super().__init__()
        assert d % heads == 0, "hidden size must be divisible by heads"
        self.heads, self.dk = heads, d // heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, self.dk)
        self.out = nn.Linear(self.dk, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, query, key, bias):
        # query [B, H, d], key [B, L, d], bias [B, H, L] additive (causal + padding mask).
        # Heads lead ([heads, B, ...]) so the mask broadcasts over the leading axis, which ONNX
        # Runtime adds at memory speed (a mid-axis broadcast was the graph's slowest node).
        b, hq, _ = query.shape
        q = self.q(query).reshape(b, hq, self.heads, self.dk).permute(2, 0, 1, 3)  # [h, B, H, dk]
        k = self.k(key).reshape(b, -1, self.heads, self.dk).permute(2, 0, 3, 1)  # [h, B, dk, L]
        scores = torch.matmul(q, k) * (1.0 / math.sqrt(self.dk)) + bias
        attn = torch.softmax(scores, dim=-1).mean(0)  # [B, H, L]
        out = torch.matmul(self.drop(attn), self.v(key))  # [B, H, dk]
        return self.out(out), attn
