"""Based linear attention and JRT-RNN's prefix linear attention (PLA), jrt.md §1.

Per head (H = ``num_heads``, feature width f = ``la_feature_dim``, value width P = ``head_dim``),
bias-free projections of the layer input: a shared query q (H·f), decoder key/value k, v
(H·f, H·P) and, for PLA, encoder key/value k_e, v_e read only at prefix positions;
output H·P → d. The sums run over the Taylor features φ (1 + f + f² of them) through
:func:`birdie_jax.kernels.linear_attention.linear_attention`:

  y_i = φ(q_i)·[S_e + Σ_{j≤i} φ(k_j)v_jᵀ] / (φ(q_i)·[z_e + Σ_{j≤i} φ(k_j)] + eps),

S_e, z_e summing φ(k_e)v_eᵀ, φ(k_e) over the prefix of i's sample (non-causal). ``based`` is
the same layer without the encoder (PLA with M = 0). The prefix is the same prefix/region
mask Birdie's bidirectional layers read (``prefix_mask``); its length M is per sample.
State: ``{"S": float32[b h F P], "z": float32[b h F]}`` (constant size). Prefill stores the
decoder sums of the whole prompt plus the prefix's encoder sums; decoding uses the
decoder projections only (jrt.md §1.4).
"""

import jax.numpy as jnp
from flax import nnx

from birdie_jax.array_types import Hidden, HiddenStep, PrefixMask, SegmentIds
from birdie_jax.config import ModelConfig
from birdie_jax.kernels.linear_attention import linear_attention, linear_attention_step, zero_state
from birdie_jax.models.layers import dense


class LinearAttention(nnx.Module):
    """Based (``prefix=False``) or PLA (``prefix=True``) causal linear attention."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, *, prefix: bool = False, bidirectional: bool = False):
        if bidirectional:
            raise ValueError("linear attention layers read prefixes through PLA, not model.bidirectional")
        self.cfg = cfg
        self.prefix = prefix
        h, f, p = cfg.num_heads, cfg.la_feature_dim, cfg.head_dim
        self.q_proj = dense(cfg, cfg.d_model, h * f, rngs)
        self.k_proj = dense(cfg, cfg.d_model, h * f, rngs)
        self.v_proj = dense(cfg, cfg.d_model, h * p, rngs)
        if prefix:
            self.k_enc_proj = dense(cfg, cfg.d_model, h * f, rngs)
            self.v_enc_proj = dense(cfg, cfg.d_model, h * p, rngs)
        self.out_proj = dense(cfg, h * p, cfg.d_model, rngs, scale=1.0 / cfg.n_layers)

    def init_state(self, batch: int, cache_len: int | None = None) -> dict:
        """Zero state (S, z): H·F·P + H·F floats, whatever the context length."""
        S, z = zero_state(batch, self.cfg.num_heads, self.cfg.la_feature_dim, self.cfg.head_dim)
        return {"S": S, "z": z}

    def _heads(self, x, proj, width):
        return proj(x).reshape(*x.shape[:-1], self.cfg.num_heads, width)

    def __call__(self, x: Hidden, *, segment_ids: SegmentIds, prefix_mask: PrefixMask | None = None,
                 state: dict | None = None) -> tuple[Hidden, dict]:
        f, p = self.cfg.la_feature_dim, self.cfg.head_dim
        q, k, v = self._heads(x, self.q_proj, f), self._heads(x, self.k_proj, f), self._heads(x, self.v_proj, p)
        encoder = {}
        if self.prefix and prefix_mask is not None:
            encoder = dict(k_enc=self._heads(x, self.k_enc_proj, f), v_enc=self._heads(x, self.v_enc_proj, p),
                           encoder_mask=prefix_mask.astype(bool))
        y, (S, z) = linear_attention(q, k, v, **encoder, segment_ids=segment_ids,
                                     initial_state=None if state is None else (state["S"], state["z"]),
                                     chunk_size=self.cfg.la_chunk, implementation=self.cfg.la_implementation)
        return self.out_proj(y.reshape(*x.shape[:-1], -1)), {"S": S, "z": z}

    def step(self, x_t: HiddenStep, state: dict) -> tuple[HiddenStep, dict]:
        f, p = self.cfg.la_feature_dim, self.cfg.head_dim
        q, k, v = self._heads(x_t, self.q_proj, f), self._heads(x_t, self.k_proj, f), self._heads(x_t, self.v_proj, p)
        y, (S, z) = linear_attention_step(q, k, v, (state["S"], state["z"]))
        return self.out_proj(y.reshape(x_t.shape[0], -1)), {"S": S, "z": z}


def based(cfg: ModelConfig, rngs: nnx.Rngs, *, bidirectional: bool = False) -> LinearAttention:
    """Based causal linear attention (the PLA layer with M = 0: no encoder projections)."""
    return LinearAttention(cfg, rngs, prefix=False, bidirectional=bidirectional)


def prefix_linear_attention(cfg: ModelConfig, rngs: nnx.Rngs, *, bidirectional: bool = False) -> LinearAttention:
    """JRT-RNN's PLA: Based plus the non-causal encoder term over each sample's prefix."""
    return LinearAttention(cfg, rngs, prefix=True, bidirectional=bidirectional)
