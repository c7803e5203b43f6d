"""The four mixers, computing what birdie_jax's do (see birdie_jax/models/ for the maths)."""

import torch
from torch import nn

from birdie_jax_torch.layers import (CausalConv, Dense, Params, gelu, parameter, positions_from_segments,
                                     recurrence, scan, segment_starts)

_MASKED = -1e30


class GatedSSM(nn.Module):
    """i, z, o = W x; f = σ(W_f x); h_t = f_t h_{t−1} + σ(i_t) z_t; y = W_out(GeLU(o) h)."""

    def __init__(self, p: Params, model: dict, bidirectional: bool):
        super().__init__()
        self.in_proj, self.forget_gate, self.out_proj = Dense(p.sub("in_proj")), Dense(p.sub("forget_gate")), Dense(
            p.sub("out_proj"))
        self.bidirectional = bidirectional

    def forward(self, x, segment_ids, prefix_mask):
        i, z, o = self.in_proj(x).chunk(3, dim=-1)
        h = recurrence(torch.sigmoid(self.forget_gate(x)), torch.sigmoid(i) * z, segment_ids, prefix_mask,
                       self.bidirectional)
        return self.out_proj(gelu(o) * h)


class BlockDiagonal(nn.Module):
    def __init__(self, p: Params):
        super().__init__()
        self.kernel, self.bias = parameter(p["kernel"]), parameter(p["bias"])

    def forward(self, x):
        h, w, _ = self.kernel.shape
        return (torch.einsum("...hi,hio->...ho", x.reshape(*x.shape[:-1], h, w), self.kernel) + self.bias).reshape(
            x.shape)


class Hawk(nn.Module):
    """Griffin's recurrent block with the RG-LRU."""

    def __init__(self, p: Params, model: dict, bidirectional: bool):
        super().__init__()
        self.gate_proj, self.in_proj, self.out_proj = (Dense(p.sub(n)) for n in ("gate_proj", "in_proj", "out_proj"))
        self.conv = CausalConv(p.sub("conv"))
        gates = BlockDiagonal if p["rg_lru.a_gate.kernel"].dim() == 3 else Dense
        self.a_gate, self.x_gate = gates(p.sub("rg_lru.a_gate")), gates(p.sub("rg_lru.x_gate"))
        self.a_param = parameter(p["rg_lru.a_param"])
        self.c, self.reset_multiplier = model["rglru_c"], model["rglru_reset_multiplier"]
        self.bidirectional = bidirectional

    def forward(self, x, segment_ids, prefix_mask):
        g = gelu(self.gate_proj(x))
        u = self.conv(self.in_proj(x), segment_ids)
        log_a = -self.c * torch.sigmoid(self.a_gate(u)) * nn.functional.softplus(self.a_param)
        beta = torch.sqrt(1.0 - torch.exp(2.0 * log_a))
        if self.reset_multiplier:  # β = 1 at a document's first token (the row starts one)
            starts = segment_starts(segment_ids)
            starts[:, 0] = True
            beta = torch.where(starts[..., None], torch.ones_like(beta), beta)
        h = recurrence(torch.exp(log_a), beta * torch.sigmoid(self.x_gate(u)) * u, segment_ids, prefix_mask,
                       self.bidirectional)
        return self.out_proj(g * h)


def rope(x: torch.Tensor, positions: torch.Tensor, base: float, scaling: float) -> torch.Tensor:
    """Rotary embedding of x [b t h k] (half-split) at positions / scaling."""
    half = x.shape[-1] // 2
    freq = base ** (-torch.arange(half, dtype=torch.float32) / half)
    angle = (positions.float() / scaling)[..., None, None] * freq
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * torch.cos(angle) - x2 * torch.sin(angle), x2 * torch.cos(angle) + x1 * torch.sin(angle)], -1)


class Attention(nn.Module):
    """Softmax attention within segments: causal, or (prefix attention) both ways inside a prefix."""

    def __init__(self, p: Params, model: dict, bidirectional: bool):
        super().__init__()
        self.qkv_proj, self.out_proj = Dense(p.sub("qkv_proj")), Dense(p.sub("out_proj"))
        self.heads, self.head_dim, self.base = model["num_heads"], model["head_dim"], model["rope_base"]
        self.scaling = model.get("rope_scaling", 1.0)
        self.bidirectional = bidirectional

    def forward(self, x, segment_ids, prefix_mask):
        b, t, _ = x.shape
        q, k, v = self.qkv_proj(x).reshape(b, t, 3 * self.heads, self.head_dim).chunk(3, dim=2)
        positions = positions_from_segments(segment_ids)
        q, k = rope(q, positions, self.base, self.scaling), rope(k, positions, self.base, self.scaling)
        index = torch.arange(t)
        allowed = (index[None, :] <= index[:, None]).expand(b, t, t)
        if self.bidirectional and prefix_mask is not None:
            prefix = prefix_mask.bool()
            allowed = allowed | (prefix[:, :, None] & prefix[:, None, :])
        mask = ((segment_ids[:, :, None] == segment_ids[:, None, :]) & allowed) | torch.eye(t, dtype=torch.bool)
        scores = torch.einsum("bthk,bshk->bhts", q, k) / self.head_dim**0.5
        weights = torch.softmax(torch.where(mask[:, None], scores, torch.full_like(scores, _MASKED)), dim=-1)
        return self.out_proj(torch.einsum("bhts,bshk->bthk", weights, v).reshape(b, t, -1))


class Mamba2(nn.Module):
    """Mamba-2's mixer as its recurrence: h_t = exp(dt_t A) h_{t−1} + dt_t x_t B_tᵀ, y_t = h_t C_t + D x_t."""

    def __init__(self, p: Params, model: dict, bidirectional: bool):
        super().__init__()
        self.in_proj, self.out_proj = Dense(p.sub("in_proj")), Dense(p.sub("out_proj"))
        self.conv = CausalConv(p.sub("conv"))
        self.A_log, self.dt_bias, self.D = (parameter(p[n]) for n in ("A_log", "dt_bias", "D"))
        self.norm_scale = parameter(p["norm.scale"])
        self.d_inner = model["mamba_expand"] * model["d_model"]
        self.head_dim, self.groups, self.d_state = model["mamba_head_dim"], model["mamba_groups"], model["mamba_d_state"]
        self.eps = model["norm_eps"]

    def forward(self, x, segment_ids, prefix_mask):
        b, t, _ = x.shape
        heads = self.d_inner // self.head_dim
        z, xbc, dt_raw = self.in_proj(x).split([self.d_inner, self.d_inner + 2 * self.groups * self.d_state, heads], -1)
        xbc = nn.functional.silu(self.conv(xbc, segment_ids))
        xs, bs, cs = xbc.split([self.d_inner, self.groups * self.d_state, self.groups * self.d_state], -1)
        xs = xs.reshape(b, t, heads, self.head_dim)
        per_group = heads // self.groups
        bs = bs.reshape(b, t, self.groups, 1, self.d_state).expand(-1, -1, -1, per_group, -1).reshape(b, t, heads, -1)
        cs = cs.reshape(b, t, self.groups, 1, self.d_state).expand(-1, -1, -1, per_group, -1).reshape(b, t, heads, -1)
        dt = nn.functional.softplus(dt_raw + self.dt_bias)  # [b t h]
        decay = torch.exp(dt * -torch.exp(self.A_log))
        inputs = (dt[..., None] * xs)[..., None] * bs[..., None, :]  # [b t h p n]
        shape = inputs.shape
        states = scan(decay[..., None, None].expand(shape).reshape(b, t, -1), inputs.reshape(b, t, -1),
                      segment_starts(segment_ids)).reshape(shape)
        y = torch.einsum("bthpn,bthn->bthp", states, cs) + self.D[:, None] * xs
        gated = (y.reshape(b, t, self.d_inner) * nn.functional.silu(z)).reshape(b, t, self.groups, -1)
        normed = gated * torch.rsqrt((gated * gated).mean(-1, keepdim=True) + self.eps)
        return self.out_proj(normed.reshape(b, t, self.d_inner) * self.norm_scale)


MIXERS = {"gated_ssm": GatedSSM, "hawk": Hawk, "transformer": Attention, "mamba2": Mamba2}


def _runs(segment_ids: torch.Tensor) -> torch.Tensor:
    """int[b t]: index of the maximal stretch of equal segment ids holding each token."""
    return torch.cumsum(segment_starts(segment_ids).long(), dim=1)


def taylor_features(x: torch.Tensor) -> torch.Tensor:
    """Based's φ(x) = [1, x/f^{1/4}, vec(x⊗x)/(√2·√f)] over the last axis (f wide)."""
    f = x.shape[-1]
    outer = (x[..., :, None] * x[..., None, :]).reshape(*x.shape[:-1], f * f)
    return torch.cat([torch.ones_like(x[..., :1]), x / f**0.25, outer / (2.0**0.5 * f**0.5)], -1)


class LinearAttention(nn.Module):
    """Based (causal Taylor linear attention) or, with encoder projections, JRT-RNN's PLA, whose
    queries also read every prefix position of their sample (written here in quadratic form)."""

    EPS = 1e-12

    def __init__(self, p: Params, model: dict, bidirectional: bool):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (Dense(p.sub(n)) for n in (
            "q_proj", "k_proj", "v_proj", "out_proj"))
        self.prefix = "k_enc_proj.kernel" in p
        if self.prefix:
            self.k_enc_proj, self.v_enc_proj = Dense(p.sub("k_enc_proj")), Dense(p.sub("v_enc_proj"))
        self.heads, self.f, self.p = model["num_heads"], model["la_feature_dim"], model["head_dim"]

    def _heads(self, x, proj, width):
        return proj(x).reshape(*x.shape[:2], self.heads, width)

    def forward(self, x, segment_ids, prefix_mask):
        b, t, _ = x.shape
        valid = segment_ids != 0
        run = _runs(segment_ids)
        same_run = run[:, :, None] == run[:, None, :]
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        phi_q = taylor_features(self._heads(x, self.q_proj, self.f))
        phi_k = taylor_features(self._heads(x, self.k_proj, self.f)) * valid[..., None, None]
        weights = torch.einsum("bihF,bjhF->bhij", phi_q, phi_k) * (same_run & causal)[:, None]
        num = torch.einsum("bhij,bjhp->bihp", weights, self._heads(x, self.v_proj, self.p))
        den = weights.sum(-1).transpose(1, 2)  # [b i h]
        if self.prefix and prefix_mask is not None:
            encoder = (valid & prefix_mask.bool())[..., None, None]
            phi_e = taylor_features(self._heads(x, self.k_enc_proj, self.f)) * encoder
            enc = torch.einsum("bihF,bjhF->bhij", phi_q, phi_e) * same_run[:, None]
            num = num + torch.einsum("bhij,bjhp->bihp", enc, self._heads(x, self.v_enc_proj, self.p))
            den = den + enc.sum(-1).transpose(1, 2)
        y = num / (den + self.EPS)[..., None] * valid[..., None, None]
        return self.out_proj(y.reshape(b, t, -1))


class SlidingWindowAttention(nn.Module):
    """Causal softmax attention over the ``swa_window`` tokens before each one (and itself), per document;
    ``n_kv_heads`` key/value heads shared by groups of query heads, RoPE on the first ``rotary_fraction``
    of each head (RecurrentGemma's local attention)."""

    def __init__(self, p: Params, model: dict, bidirectional: bool):
        super().__init__()
        self.qkv_proj, self.out_proj = Dense(p.sub("qkv_proj")), Dense(p.sub("out_proj"))
        self.heads, self.head_dim, self.base = model["num_heads"], model["head_dim"], model["rope_base"]
        self.kv_heads = model.get("n_kv_heads") or self.heads
        self.rotary_dim = int(self.head_dim * model.get("rotary_fraction", 1.0))
        self.window = model["swa_window"]

    def _rope(self, x, positions):
        r = self.rotary_dim
        return torch.cat([rope(x[..., :r], positions, self.base, 1.0), x[..., r:]], -1)

    def forward(self, x, segment_ids, prefix_mask):
        b, t, _ = x.shape
        q, k, v = self.qkv_proj(x).reshape(b, t, self.heads + 2 * self.kv_heads, self.head_dim).split(
            [self.heads, self.kv_heads, self.kv_heads], dim=2)
        k, v = (y.repeat_interleave(self.heads // self.kv_heads, dim=2) for y in (k, v))
        positions = positions_from_segments(segment_ids)
        q, k = self._rope(q, positions), self._rope(k, positions)
        run = _runs(segment_ids)
        index = torch.arange(t)
        near = (positions[:, :, None] - positions[:, None, :]) <= self.window
        own = (run[:, :, None] == run[:, None, :]) & (index[:, None] >= index[None, :]) & near
        mask = (own & (segment_ids != 0)[:, None, :]) | torch.eye(t, dtype=torch.bool)
        scores = torch.einsum("bthk,bshk->bhts", q, k) / self.head_dim**0.5
        weights = torch.softmax(torch.where(mask[:, None], scores, torch.full_like(scores, _MASKED)), dim=-1)
        return self.out_proj(torch.einsum("bhts,bshk->bthk", weights, v).reshape(b, t, -1))


class GatedConv(nn.Module):
    """Based's gated short convolution: out_proj(SiLU(conv(u1)) ⊙ u2), (u1, u2) = in_proj(x)."""

    def __init__(self, p: Params, model: dict, bidirectional: bool):
        super().__init__()
        self.in_proj, self.out_proj = Dense(p.sub("in_proj")), Dense(p.sub("out_proj"))
        self.conv = CausalConv(p.sub("conv"))

    def forward(self, x, segment_ids, prefix_mask):
        u1, u2 = self.in_proj(x).chunk(2, dim=-1)
        return self.out_proj(nn.functional.silu(self.conv(u1, segment_ids)) * u2)


class GatedSSMPlus(GatedSSM):
    """The Gated SSM reading a short causal convolution of its input."""

    def __init__(self, p: Params, model: dict, bidirectional: bool):
        super().__init__(p, model, bidirectional)
        self.conv = CausalConv(p.sub("conv"))

    def forward(self, x, segment_ids, prefix_mask):
        return super().forward(self.conv(x, segment_ids), segment_ids, prefix_mask)


MIXERS.update({"based": LinearAttention, "pla": LinearAttention, "swa": SlidingWindowAttention,
               "gated_conv": GatedConv, "gated_ssm_plus": GatedSSMPlus})
