"""Mamba-2's mixer (state-spaces/mamba ``Mamba2``, spec §7) over the chunked SSD kernel.

in_proj(x) = [z, x, B, C, dt]; xBC ← SiLU(conv_4(xBC)) (depthwise, causal, with bias,
never mixing packed documents); dt = softplus(dt_raw + dt_bias); A = −exp(A_log);
h_t = exp(dt_t·A)·h_{t−1} + dt_t·x_t B_tᵀ, y_t = h_t C_t + D·x_t per head;
out = out_proj(RMSNorm_per_group(y ⊙ SiLU(z))).

Shapes: d_inner = expand·d_model, H = d_inner / P heads of width P, G groups of state N
(head h reads group ⌊h·G/H⌋), conv_dim = d_inner + 2·G·N.
State: ``{"ssm": float32[b h p n], "conv": [b w-1 conv_dim]}`` (the last w−1 = 3 pre-conv
xBC inputs). A_log, dt_bias and D are 1-D float32 parameters, so the weight-decay mask
(matrices only) spares them, like the norm's ``scale`` and the conv ``bias``.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from birdie_jax.array_types import Array, Hidden, HiddenStep, PrefixMask, SegmentIds
from birdie_jax.config import ModelConfig
from birdie_jax.kernels.ssd import ssd_step
from birdie_jax.kernels.ssd.sharded import ssd_sharded  # plain ssd off a sequence mesh
from birdie_jax.models.conv import CausalConv1D
from birdie_jax.models.gated_rms_norm import gated_rms_norm
from birdie_jax.models.layers import dense, dtype_of, segment_starts

NORM_EPS = 1e-5
A_INIT_RANGE = (1.0, 16.0)
DT_INIT_RANGE = (1e-3, 0.1)
DT_INIT_FLOOR = 1e-4


class GatedRMSNorm(nnx.Module):
    """y ← RMSNorm(y ⊙ SiLU(z))·scale, statistics per group of ``width / groups`` channels (float32)."""

    def __init__(self, width: int, groups: int, *, eps: float = NORM_EPS, param_dtype=jnp.float32):
        self.scale = nnx.Param(jnp.ones((width,), param_dtype))
        self.groups = groups
        self.eps = eps

    def __call__(self, y: Array, z: Array) -> Array:
        return gated_rms_norm(y, z, self.scale[...], self.groups, self.eps)


class Mamba2Mixer(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, *, bidirectional: bool = False):
        if bidirectional:
            raise ValueError("Mamba2Mixer is causal only (bidirectional layers are not available for mamba2)")
        self.cfg = cfg
        self.d_inner = cfg.mamba_expand * cfg.d_model
        self.head_dim = cfg.mamba_head_dim
        self.num_heads = self.d_inner // cfg.mamba_head_dim
        self.groups = cfg.mamba_groups
        self.d_state = cfg.mamba_d_state
        self.conv_dim = self.d_inner + 2 * self.groups * self.d_state
        self.in_proj = dense(cfg, cfg.d_model, self.d_inner + self.conv_dim + self.num_heads, rngs)
        self.conv = CausalConv1D(cfg, self.conv_dim, rngs)
        h = self.num_heads
        self.A_log = nnx.Param(jnp.log(jax.random.uniform(rngs.params(), (h,), jnp.float32, *A_INIT_RANGE)))
        lo, hi = (math.log(v) for v in DT_INIT_RANGE)
        dt = jnp.maximum(jnp.exp(jax.random.uniform(rngs.params(), (h,), jnp.float32, lo, hi)), DT_INIT_FLOOR)
        self.dt_bias = nnx.Param(dt + jnp.log(-jnp.expm1(-dt)))  # softplus⁻¹(dt)
        self.D = nnx.Param(jnp.ones((h,), jnp.float32))
        self.norm = GatedRMSNorm(self.d_inner, self.groups, eps=cfg.norm_eps, param_dtype=dtype_of(cfg.param_dtype))
        self.out_proj = dense(cfg, self.d_inner, cfg.d_model, rngs, scale=1.0 / cfg.n_layers)

    def init_state(self, batch: int, cache_len: int | None = None) -> dict:
        """Zero state: the SSM state and the last w−1 pre-conv inputs (no dependence on ``cache_len``)."""
        return {"ssm": jnp.zeros((batch, self.num_heads, self.head_dim, self.d_state), jnp.float32),
                "conv": self.conv.zero_state(batch, self.conv_dim, dtype_of(self.cfg.dtype))}

    def _split(self, zxbcdt: Array) -> tuple[Array, Array, Array]:
        """[..., 2·d_inner + 2GN + H] → (z [..., d_inner], xBC [..., conv_dim], dt_raw [..., H])."""
        z, xbc, dt_raw = jnp.split(zxbcdt, [self.d_inner, self.d_inner + self.conv_dim], axis=-1)
        return z, xbc, dt_raw

    def _ssm_inputs(self, xbc: Array, dt_raw: Array) -> tuple[Array, Array, Array, Array, Array]:
        """SiLU(conv(xBC)) [... conv_dim], dt_raw [... H] → x [... h p], dt float32 [... h], A [h], B, C [... g n]."""
        x, b, c = jnp.split(xbc, [self.d_inner, self.d_inner + self.groups * self.d_state], axis=-1)
        lead = xbc.shape[:-1]
        x = x.reshape(*lead, self.num_heads, self.head_dim)
        b = b.reshape(*lead, self.groups, self.d_state)
        c = c.reshape(*lead, self.groups, self.d_state)
        dt = jax.nn.softplus(dt_raw.astype(jnp.float32) + self.dt_bias[...])
        a = -jnp.exp(self.A_log[...].astype(jnp.float32))
        return x, dt, a, b, c

    def __call__(self, x: Hidden, *, segment_ids: SegmentIds, prefix_mask: PrefixMask | None = None,
                 state: dict | None = None) -> tuple[Hidden, dict]:
        """x [b t d] → (y [b t d], state after the last token); ``prefix_mask`` is ignored (causal)."""
        z, xbc, dt_raw = self._split(self.in_proj(x))
        xbc, conv_state = self.conv(xbc, segment_ids, None if state is None else state["conv"], silu=True)
        xh, dt, a, b, c = self._ssm_inputs(xbc, dt_raw)
        y, ssm_state = ssd_sharded(xh, dt, a, b, c, D=self.D[...], initial_state=None if state is None else state["ssm"],
                           reset=segment_starts(segment_ids), chunk_size=self.cfg.mamba_chunk,
                           implementation=self.cfg.ssd_implementation)
        y = self.norm(y.reshape(*y.shape[:2], self.d_inner), z)
        return self.out_proj(y), {"ssm": ssm_state, "conv": conv_state}

    def step(self, x_t: HiddenStep, state: dict) -> tuple[HiddenStep, dict]:
        """One token: x_t [b d] → (y_t [b d], new state)."""
        z, xbc, dt_raw = self._split(self.in_proj(x_t))
        xbc, conv_state = self.conv.step(xbc, state["conv"])
        xh, dt, a, b, c = self._ssm_inputs(jax.nn.silu(xbc), dt_raw)
        y, ssm_state = ssd_step(xh, dt, a, b, c, state["ssm"], self.D[...])
        y = self.norm(y.reshape(y.shape[0], self.d_inner), z)
        return self.out_proj(y), {"ssm": ssm_state, "conv": conv_state}
