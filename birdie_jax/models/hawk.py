"""Hawk's recurrent block (Griffin, arXiv 2402.19427) with the RG-LRU.

g = GeLU(W_gate x); u = Conv1D_4(W_in x); r = σ(W_a u), i = σ(W_x u);
log a = −c·r·softplus(Λ); β = √(1 − a²) (bounded-gradient square root);
h_t = a_t ⊙ h_{t−1} + β_t ⊙ (i_t ⊙ u_t); out = W_out(g ⊙ h).
Segment starts zero the carry a_t; β keeps the unmasked a, or, with
``rglru_reset_multiplier`` (RecurrentGemma), is 1 at a document's first token (spec §7.2).
``linear_bias`` and ``rglru_heads`` (block-diagonal gates) are RecurrentGemma's layout too.
State: ``{"rnn": float32[b n], "conv": [b w-1 n]}`` (pre-conv inputs).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from birdie_jax.config import ModelConfig
from birdie_jax.models.bidirectional import recurrence, step_recurrence
from birdie_jax.models.conv import CausalConv1D
from birdie_jax.models.layers import BlockDiagonalLinear, dense, dtype_of, segment_starts
from birdie_jax.array_types import Array, Hidden, HiddenStep, PrefixMask, SegmentIds

SQRT_MAX_GRADIENT = 1000.0


@jax.custom_jvp
def sqrt_bounded_grad(x: Array) -> Array:
    """√x whose derivative is clamped to at most 1000 (argument floored at 1/(4·1000²))."""
    return jnp.sqrt(x)


@sqrt_bounded_grad.defjvp
def _sqrt_bounded_grad_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    floor = 1.0 / (4.0 * SQRT_MAX_GRADIENT**2)
    return jnp.sqrt(x), dx * 0.5 / jnp.sqrt(jnp.maximum(x, floor))


class RGLRU(nnx.Module):
    """The real-gated linear recurrent unit: gates, decay and input normalisation."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        n = cfg.state_dim
        self.c = cfg.rglru_c
        if cfg.rglru_heads == 1:
            self.a_gate = dense(cfg, n, n, rngs, bias=True)
            self.x_gate = dense(cfg, n, n, rngs, bias=True)
        else:
            self.a_gate = BlockDiagonalLinear(cfg, n, cfg.rglru_heads, rngs)
            self.x_gate = BlockDiagonalLinear(cfg, n, cfg.rglru_heads, rngs)
        # softplus(Λ) = −ln ρ with ρ² ~ U[0.81, 0.998]  (so a^c spans [0.9, 0.999] at r = 1).
        rho_sq = jax.random.uniform(rngs.params(), (n,), minval=0.81, maxval=0.998)
        neg_log_rho = -0.5 * jnp.log(rho_sq)
        self.a_param = nnx.Param((neg_log_rho + jnp.log(-jnp.expm1(-neg_log_rho))).astype(dtype_of(cfg.param_dtype)))

    def coefficients(self, u: Array, document_start: Array | None = None) -> tuple[Array, Array]:
        """Decay a and normalised input β⊙i⊙u, both float32; β = 1 where ``document_start`` [b t]."""
        r = jax.nn.sigmoid(self.a_gate(u).astype(jnp.float32))
        i = jax.nn.sigmoid(self.x_gate(u).astype(jnp.float32))
        log_a = -self.c * r * jax.nn.softplus(self.a_param[...].astype(jnp.float32))
        beta = sqrt_bounded_grad(1.0 - jnp.exp(2.0 * log_a))
        if document_start is not None:
            beta = jnp.where(document_start[..., None], 1.0, beta)
        return jnp.exp(log_a), beta * i * u.astype(jnp.float32)


class HawkMixer(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, *, bidirectional: bool = False):
        n = cfg.state_dim
        self.cfg = cfg
        self.bidirectional = bidirectional
        bias = cfg.linear_bias
        self.gate_proj = dense(cfg, cfg.d_model, n, rngs, bias=bias)
        self.in_proj = dense(cfg, cfg.d_model, n, rngs, bias=bias)
        self.conv = CausalConv1D(cfg, n, rngs)
        self.rg_lru = RGLRU(cfg, rngs)
        self.out_proj = dense(cfg, n, cfg.d_model, rngs, bias=bias, scale=1.0 / cfg.n_layers)

    def init_state(self, batch: int, cache_len: int | None = None) -> dict:
        n = self.cfg.state_dim
        return {"rnn": jnp.zeros((batch, n), jnp.float32),
                "conv": self.conv.zero_state(batch, n, dtype_of(self.cfg.dtype))}

    def __call__(self, x: Hidden, *, segment_ids: SegmentIds, prefix_mask: PrefixMask | None = None,
                 state: dict | None = None) -> tuple[Hidden, dict]:
        g = jax.nn.gelu(self.gate_proj(x))
        u, conv_state = self.conv(self.in_proj(x), segment_ids, None if state is None else state["conv"])
        a, bx = self.rg_lru.coefficients(u, self._document_starts(segment_ids, state))
        h, h_last = recurrence(a, bx, h0=None if state is None else state["rnn"], segment_ids=segment_ids,
                               prefix_mask=prefix_mask, bidirectional=self.bidirectional,
                               implementation=self.cfg.scan_implementation)
        return self.out_proj(g * h.astype(g.dtype)), {"rnn": h_last, "conv": conv_state}

    def _document_starts(self, segment_ids: SegmentIds, state: dict | None) -> Array | None:
        """bool[b t] where β is 1 (``rglru_reset_multiplier``): segment starts, and t = 0 without a state."""
        if not self.cfg.rglru_reset_multiplier:
            return None
        starts = segment_starts(segment_ids)
        return starts.at[:, 0].set(True) if state is None else starts

    def step(self, x_t: HiddenStep, state: dict) -> tuple[HiddenStep, dict]:
        g = jax.nn.gelu(self.gate_proj(x_t))
        u, conv_state = self.conv.step(self.in_proj(x_t), state["conv"])
        a, bx = self.rg_lru.coefficients(u)
        h = step_recurrence(a, bx, state["rnn"], self.bidirectional)
        return self.out_proj(g * h.astype(g.dtype)), {"rnn": h, "conv": conv_state}
