"""The Temporal Fusion Transformer that Fleetcast ships (inputs/outputs per models/CONTRACT.md).

Why the normalisation looks the way it does: a server's metrics are scaled inside the graph by the
server's own window (centred on the metric's last observed value, scaled by the window's masked
mean absolute deviation with a per-metric floor from the training data), so a caller passes raw values and gets raw units back, and one model serves
machines whose levels differ by orders of magnitude (0.1 % CPU on one NAB instance, 50 % on another).
The absolute level is not thrown away: it goes into the static covariates, next to the profile.
"""

from dataclasses import dataclass, asdict

import torch
from torch import nn
import torch.nn.functional as F

from . import schema
from .layers import GRN, GateAddNorm, InterpretableAttention, VariableSelection


@dataclass
class TFTConfig:
    encoder_steps: int = 96
    horizon: int = schema.HORIZON
    hidden: int = 16
    var_hidden: int = 16
    heads: int = 2
    dropout: float = 0.1
    clamp: float = 10.0
    # Future steps per decoder position: the decoder runs horizon / patch positions and each
    # emits `patch` consecutive steps (their calendar input is the first step's). 1 = one
    # position per step, as in the TFT paper; 2 halves the decoder-side work of every forecast.
    patch: int = 1

    @property
    def positions(self) -> int:
        """Decoder positions."""
        return self.horizon // self.patch

    def to_dict(self):
        return asdict(self)


N_METRICS = len(schema.METRICS)
N_TARGETS = len(schema.TARGETS)
N_CAL = 2  # known inputs: time of day (sin, cos) and day of week (sin, cos)


class TFT(nn.Module):
    def __init__(self, cfg: TFTConfig, global_scale, floor):
        super().__init__()
        self.cfg = cfg
        assert cfg.horizon % cfg.patch == 0, "the horizon must be a whole number of patches"
        d, t, h = cfg.hidden, cfg.encoder_steps, cfg.positions
        self.register_buffer("global_scale", torch.as_tensor(global_scale, dtype=torch.float32))
        self.register_buffer("floor", torch.as_tensor(floor, dtype=torch.float32))
        self.register_buffer("target_idx", torch.tensor(schema.TARGET_METRIC_INDEX, dtype=torch.long))
        self.register_buffer("target_sign", torch.tensor(schema.TARGET_SIGN))
        self.register_buffer("target_offset", torch.tensor(schema.TARGET_OFFSET))
        # [8, 3]: same upper bound for the three quantiles of a target, laid out so the clip
        # broadcasts over leading axes only (a size-1 inner axis is a slow path in ONNX Runtime).
        self.register_buffer("target_upper", torch.tensor(schema.TARGET_UPPER)[:, None].repeat(1, 3))
        # Decoder step i (position t + i) may attend to every key j <= t + i.
        keys = torch.arange(t + h)[None, :]
        queries = torch.arange(t, t + h)[:, None]
        self.register_buffer("step_index", torch.arange(1, t + 1, dtype=torch.float32)[None, :, None])
        self.register_buffer("causal_bias", ((keys > queries).float() * -1.0e4)[None])

        # Per-variable input embeddings (scalar -> d); unknown metrics get a learnt "missing" vector.
        # Metric rows: weight of the value, bias when observed, vector when unknown, applied to
        # [z*m, m, 1-m]; calendar rows: weights of sin and cos, bias, applied to [sin, cos, 1].
        # One batched matmul embeds all 16 past variables (cheaper in ONNX than broadcasts).
        self.metric_emb = nn.Parameter(torch.cat([torch.randn(N_METRICS, 1, d) * 0.5,
                                                  torch.zeros(N_METRICS, 1, d),
                                                  torch.randn(N_METRICS, 1, d) * 0.1], 1))
        self.cal_emb = nn.Parameter(torch.cat([torch.randn(N_CAL, 2, d) * 0.5, torch.zeros(N_CAL, 1, d)], 1))
        # Static covariates: the profile, and per metric (level, log-scale, observed fraction,
        # window mean relative to the last value).
        self.profile_emb = nn.Embedding(len(schema.PROFILES), d)
        self.static_w = nn.Parameter(torch.randn(N_METRICS, 4, d) * 0.5)
        self.static_b = nn.Parameter(torch.zeros(N_METRICS, 1, d))

        self.static_vsn = VariableSelection(N_METRICS + 1, d, d, dropout=cfg.dropout)
        self.ctx_select = GRN(d, d, d, dropout=cfg.dropout)
        self.ctx_enrich = GRN(d, d, d, dropout=cfg.dropout)
        self.ctx_h = GRN(d, d, d, dropout=cfg.dropout)
        self.ctx_c = GRN(d, d, d, dropout=cfg.dropout)
        self.past_vsn = VariableSelection(N_METRICS + N_CAL, d, cfg.var_hidden, d_context=d, dropout=cfg.dropout)
        self.future_vsn = VariableSelection(N_CAL, d, cfg.var_hidden, d_context=d, dropout=cfg.dropout)

        self.encoder = nn.LSTM(d, d, batch_first=True)
        self.decoder = nn.LSTM(d, d, batch_first=True)
        self.lstm_gate = GateAddNorm(d, d, cfg.dropout)
        self.enrich = GRN(d, d, d, d_context=d, dropout=cfg.dropout)
        self.attention = InterpretableAttention(d, cfg.heads, cfg.dropout)
        self.attn_gate = GateAddNorm(d, d, cfg.dropout)
        self.pos_grn = GRN(d, d, d, dropout=cfg.dropout)
        self.out_gate = GateAddNorm(d, d)
        self.head = nn.Linear(d, cfg.patch * N_TARGETS * len(schema.QUANTILES))

    # --- pieces -----------------------------------------------------------------------------

    def _window_stats(self, x, m):
        """Per metric: the last observed value (the anchor forecasts are made relative to, robust
        to old spikes), the window's masked mean absolute deviation (floored; unlike the std, one
        burst in a quiet window barely moves it) and the observed count."""
        cnt = m.sum(1)
        denom = cnt.clamp(min=1.0)
        mean = (x * m).sum(1) / denom
        mad = ((x - mean[:, None, :]).abs() * m).sum(1) / denom
        scale = torch.sqrt(mad**2 + self.floor**2)
        last_idx = (m * self.step_index).argmax(1, keepdim=True)  # [B, 1, 14]
        last = torch.gather(x, 1, last_idx)[:, 0]
        return last, mean, scale, cnt

    @staticmethod
    def _calendar_feats(feat):  # [B, L, 4] -> [2, B*L, 3]: (sin, cos, 1) per calendar variable
        pairs = feat.reshape(-1, N_CAL, 2).transpose(0, 1)
        return torch.cat([pairs, torch.ones_like(pairs[..., :1])], -1)

    def normalise(self, past, m):
        """The window in the server's own units: (z, loc, mean, scale, cnt), see `_window_stats`."""
        x = torch.where(m > 0.5, past, torch.zeros_like(past))
        loc, mean, scale, cnt = self._window_stats(x, m)
        z = ((x - loc[:, None, :]) / scale[:, None, :]).clamp(-self.cfg.clamp, self.cfg.clamp)
        return z, loc, mean, scale, cnt

    def forward(self, past, past_mask, time_feat, profile):
        cfg = self.cfg
        b = past.shape[0]
        t, h, d = cfg.encoder_steps, cfg.positions, cfg.hidden
        m = past_mask
        z, loc, mean, scale, cnt = self.normalise(past, m)
        c_s, c_e, c_h, c_c = self.static_contexts(loc, mean, scale, cnt, profile)

        # Past variable selection: 14 metrics + 2 calendar variables per step.
        feats = torch.stack([z * m, m, 1.0 - m], -1).permute(2, 0, 1, 3).reshape(N_METRICS, -1, 3)
        feats = torch.cat([feats, self._calendar_feats(time_feat[:, :t])], 0)  # [16, B*T, 3]
        past_emb = torch.matmul(feats, torch.cat([self.metric_emb, self.cal_emb], 0))
        allow_past = torch.cat([m.reshape(-1, N_METRICS), torch.ones_like(m.reshape(-1, N_METRICS)[:, :N_CAL])], -1)
        ctx_past = c_s[:, None, :].expand(-1, t, -1).reshape(-1, d)
        past_sel, past_w = self.past_vsn(past_emb, ctx_past, allow_past)
        past_sel = past_sel.reshape(b, t, d)
        ctx_fut = c_s[:, None, :].expand(-1, h, -1).reshape(-1, d)
        fut_emb = torch.matmul(self._calendar_feats(self.future_calendar(time_feat)), self.cal_emb)
        fut_sel, _ = self.future_vsn(fut_emb, ctx_fut)
        fut_sel = fut_sel.reshape(b, h, d)

        # Sequence-to-sequence LSTM, seeded with the static context, then a gated skip.
        enc, state = self.encoder(past_sel, (c_h[None], c_c[None]))
        dec, _ = self.decoder(fut_sel, state)
        lstm_feat = self.lstm_gate(torch.cat([enc, dec], 1), torch.cat([past_sel, fut_sel], 1))

        # Static enrichment, then masked interpretable attention from the decoder steps.
        enriched = self.enrich(lstm_feat, c_e[:, None, :])
        step_seen = m.amax(-1)  # [B, T]: 0 on left padding
        pad = torch.cat([(step_seen - 1.0) * 1.0e4, torch.zeros_like(step_seen[:, :1]).expand(-1, h)], 1)
        query = enriched[:, t:]
        att, attn = self.attention(query, enriched, self.causal_bias + pad[:, None, :])  # bias [B, H, T+H]
        y = self.pos_grn(self.attn_gate(att, query))
        y = self.out_gate(y, lstm_feat[:, t:])

        past_attn = attn.mean(1)[:, :t]
        return self.outputs(y, loc, scale, past_w[:, :N_METRICS].reshape(b, t, N_METRICS), step_seen, past_attn)

    def future_calendar(self, time_feat):
        """The calendar input of each decoder position: its first step's."""
        return time_feat[:, self.cfg.encoder_steps::self.cfg.patch]

    def static_contexts(self, loc, mean, scale, cnt, profile):
        """Static covariate encoders: the four context vectors (selection, enrichment, LSTM h, c)."""
        cfg = self.cfg
        seen = (cnt > 0).float()
        g = self.global_scale
        stat = torch.stack([loc / g, torch.log(scale / g).clamp(-14.0, 5.0), cnt / cfg.encoder_steps,
                            ((mean - loc) / scale).clamp(-cfg.clamp, cfg.clamp)], dim=-1) * seen[..., None]
        stat_emb = torch.matmul(stat.transpose(0, 1), self.static_w) + self.static_b  # [14, B, d]
        stat_emb = torch.cat([stat_emb, self.profile_emb(profile)[None]], 0)
        allow_static = torch.cat([seen, torch.ones_like(seen[:, :1])], -1)
        static, _ = self.static_vsn(stat_emb, allow=allow_static)
        return self.ctx_select(static), self.ctx_enrich(static), self.ctx_h(static), self.ctx_c(static)

    def outputs(self, y, loc, scale, past_w, step_seen, past_attn, softplus=F.softplus):
        """Quantile head and the explanations. `past_w` [B, T, 14] metric selection weights,
        `past_attn` [B, T] attention mass on each past step (any positive scale)."""
        b, h = y.shape[0], self.cfg.horizon
        # Quantile head: P50 plus positive offsets, so P10 <= P50 <= P90 by construction.
        raw = self.head(y).reshape(b, h, N_TARGETS, 3)
        t_loc = self.target_offset + self.target_sign * loc[:, self.target_idx]
        t_scale = scale[:, self.target_idx]
        p50 = t_loc[:, None, :] + t_scale[:, None, :] * raw[..., 1]
        p10 = p50 - t_scale[:, None, :] * softplus(raw[..., 0])
        p90 = p50 + t_scale[:, None, :] * softplus(raw[..., 2])
        q = torch.stack([p10, p50, p90], -1)
        q = torch.minimum(torch.clamp(q, min=0.0), self.target_upper)

        w = past_w * step_seen[..., None]
        var_weights = w.sum(1) / w.sum((1, 2)).clamp(min=1e-9)[:, None]
        attention = past_attn / past_attn.sum(-1, keepdim=True).clamp(min=1e-9)
        return q, var_weights, attention


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def quantile_loss(q, y, y_mask, global_scale_t, y_unit=None):
    """Pinball loss over P10/P50/P90 in units of each target's global scale (matches q-risk's
    weighting: absolute errors, not errors relative to each window). `y_mask` selects the
    future values that exist and whose metric the input window had. `y_unit` [B] undoes a
    training rescale, so a shrunken copy of a server weighs as much as the original; a [B, 8]
    `y_unit` also puts a window in its source fleet's units (real VMs: their own global std)."""
    unit = global_scale_t[None, None, :, None]
    if y_unit is not None:
        # [B] one factor per window, or [B, 8] per window and target (windows of another source
        # fleet, measured in that fleet's global std)
        unit = unit * (y_unit[:, None, :, None] if y_unit.dim() == 2 else y_unit[:, None, None, None])
    err = (y[..., None] - q) / unit
    qs = torch.tensor(schema.QUANTILES, dtype=q.dtype, device=q.device)
    loss = torch.maximum(qs * err, (qs - 1.0) * err).sum(-1)
    return (loss * y_mask).sum() / y_mask.sum().clamp(min=1.0)
