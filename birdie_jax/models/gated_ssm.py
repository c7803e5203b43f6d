"""Birdie's Gated SSM mixer (paper §2.1): a gated linear recurrence with no MLP.

i = σ(W_i x), z = W_z x, o = GeLU(W_o x), f = σ(W_f x);
h_t = f_t ⊙ h_{t−1} + i_t ⊙ z_t;  y = W_out(o ⊙ h).
The block around it (pre-norm and residual) lives in :mod:`birdie_jax.models.model`.
State: ``{"rnn": float32[b n]}``.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from birdie_jax.config import ModelConfig
from birdie_jax.models.bidirectional import recurrence, step_recurrence
from birdie_jax.models.layers import dense
from birdie_jax.array_types import Array, Hidden, HiddenStep, PrefixMask, SegmentIds


class GatedSSM(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, *, bidirectional: bool = False):
        n = cfg.state_dim
        self.cfg = cfg
        self.bidirectional = bidirectional
        self.in_proj = dense(cfg, cfg.d_model, 3 * n, rngs)  # i, z, o
        # Forget-gate bias so that σ(b) spans [0.9, 0.999]: memories from ~10 to ~1000 tokens.
        self.forget_gate = dense(cfg, cfg.d_model, n, rngs, bias=True)
        keep = np.linspace(0.9, 0.999, n)
        self.forget_gate.bias[...] = jnp.asarray(np.log(keep / (1 - keep)), self.forget_gate.bias[...].dtype)
        self.out_proj = dense(cfg, n, cfg.d_model, rngs, scale=1.0 / cfg.n_layers)

    def init_state(self, batch: int, cache_len: int | None = None) -> dict:
        return {"rnn": jnp.zeros((batch, self.cfg.state_dim), jnp.float32)}

    def _gates(self, x: Array) -> tuple[Array, Array, Array]:
        """(forget f, input i⊙z, output o), f and i⊙z in float32."""
        i, z, o = jnp.split(self.in_proj(x), 3, axis=-1)
        f = jax.nn.sigmoid(self.forget_gate(x).astype(jnp.float32))
        iz = jax.nn.sigmoid(i.astype(jnp.float32)) * z.astype(jnp.float32)
        return f, iz, jax.nn.gelu(o)

    def __call__(self, x: Hidden, *, segment_ids: SegmentIds, prefix_mask: PrefixMask | None = None,
                 state: dict | None = None) -> tuple[Hidden, dict]:
        f, iz, o = self._gates(x)
        h0 = None if state is None else state["rnn"]
        h, h_last = recurrence(f, iz, h0=h0, segment_ids=segment_ids, prefix_mask=prefix_mask,
                               bidirectional=self.bidirectional, implementation=self.cfg.scan_implementation)
        return self.out_proj(o * h.astype(o.dtype)), {"rnn": h_last}

    def step(self, x_t: HiddenStep, state: dict) -> tuple[HiddenStep, dict]:
        f, iz, o = self._gates(x_t)
        h = step_recurrence(f, iz, state["rnn"], self.bidirectional)
        return self.out_proj(o * h.astype(o.dtype)), {"rnn": h}
