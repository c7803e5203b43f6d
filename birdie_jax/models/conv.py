"""Depthwise causal 1-D convolution that never mixes packed documents.

The tap at t - j counts only if segment_ids[t - j] == segment_ids[t]. The conv state is
the last ``width - 1`` inputs (pre-conv); it belongs to the segment that ends the row, so
entries from an earlier segment are zeroed when the state is handed on.
"""

import jax.numpy as jnp
from flax import nnx

from birdie_jax.config import ModelConfig
from birdie_jax.kernels.linear_scan.sharded import current_mesh, sequence_shards
from birdie_jax.models.conv_taps import conv_taps
from birdie_jax.models.layers import dtype_of
from birdie_jax.array_types import Array, SegmentIds


class CausalConv1D(nnx.Module):
    """y_t = bias + sum_j w_j * x_{t-j}, j = 0..width-1, masked by segment."""

    def __init__(self, cfg: ModelConfig, channels: int, rngs: nnx.Rngs, *, width: int | None = None):
        self.width = cfg.conv_width if width is None else width  # the gated conv of JRT uses its own (3)
        init = nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=0, out_axis=1)
        self.weight = nnx.Param(init(rngs.params(), (self.width, channels), dtype_of(cfg.param_dtype)))
        self.bias = nnx.Param(jnp.zeros((channels,), dtype_of(cfg.param_dtype)))

    def zero_state(self, batch: int, channels: int, dtype=jnp.float32) -> Array:
        return jnp.zeros((batch, self.width - 1, channels), dtype)

    def __call__(self, x: Array, segment_ids: SegmentIds, state: Array | None, *,
                 silu: bool = False) -> tuple[Array, Array]:
        """x [b t c] → (y [b t c], new state [b w-1 c]); ``silu``: y ← SiLU(y), fused into the conv's loops.

        Sequence-parallel under a ``sequence`` mesh axis.
        """
        if sequence_shards(current_mesh(), "sequence") > 1:
            from birdie_jax.distributed.sequence import conv_module_sharded  # noqa: PLC0415

            return conv_module_sharded(self, x, segment_ids, state, silu=silu)
        b, t, c = x.shape
        w = self.width
        if state is None:
            state = self.zero_state(b, c, x.dtype)
        history = jnp.concatenate([state.astype(x.dtype), x], axis=1)  # [b, w-1+t, c]
        # The carried entries continue the row's first segment.
        seg_hist = jnp.concatenate([jnp.repeat(segment_ids[:, :1], w - 1, axis=1), segment_ids], axis=1)
        y = conv_taps(history, seg_hist, segment_ids, self.weight[...].astype(x.dtype), self.bias[...], silu=silu)
        last_seg = segment_ids[:, -1:]
        new_state = jnp.where((seg_hist[:, -(w - 1) :] == last_seg)[..., None], history[:, -(w - 1) :], 0)
        return y, new_state

    def step(self, x_t: Array, state: Array) -> tuple[Array, Array]:
        """One token: x_t [b c], state [b w-1 c] → (y_t [b c], new state)."""
        window = jnp.concatenate([state.astype(x_t.dtype), x_t[:, None]], axis=1)  # oldest first
        kernel = self.weight[...].astype(x_t.dtype)[::-1]  # kernel[j] multiplies x_{t-j}
        y = jnp.einsum("bwc,wc->bc", window, kernel) + self.bias[...].astype(x_t.dtype)
        return y, window[:, 1:]
