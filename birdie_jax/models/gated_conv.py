"""The gated short convolution of Based / JRT-RNN (jrt.md §2).

in_proj d → 4d (with bias) splits into u1, u2 (2d each); y = out_proj(SiLU(conv_3(u1)) ⊙ u2),
out_proj 2d → d (with bias); conv_3 is depthwise, causal, kernel ``gated_conv_width`` (3),
never mixing packed documents. State: ``{"conv": [b w-1 2d]}``, the u1 inputs the next
token's kernel reads (the reference's 3-slot buffer holds these plus the current token).
"""

import jax
from flax import nnx

from birdie_jax.array_types import Hidden, HiddenStep, PrefixMask, SegmentIds
from birdie_jax.config import ModelConfig
from birdie_jax.models.conv import CausalConv1D
from birdie_jax.models.layers import dense, dtype_of


class GatedConv(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, *, bidirectional: bool = False):
        if bidirectional:
            raise ValueError("the gated convolution is causal only")
        self.cfg = cfg
        self.width = 2 * cfg.d_model
        self.in_proj = dense(cfg, cfg.d_model, 2 * self.width, rngs, bias=True)
        self.conv = CausalConv1D(cfg, self.width, rngs, width=cfg.gated_conv_width)
        self.out_proj = dense(cfg, self.width, cfg.d_model, rngs, bias=True, scale=1.0 / cfg.n_layers)

    def init_state(self, batch: int, cache_len: int | None = None) -> dict:
        return {"conv": self.conv.zero_state(batch, self.width, dtype_of(self.cfg.dtype))}

    def __call__(self, x: Hidden, *, segment_ids: SegmentIds, prefix_mask: PrefixMask | None = None,
                 state: dict | None = None) -> tuple[Hidden, dict]:
        u1, u2 = jax.numpy.split(self.in_proj(x), 2, axis=-1)
        c, conv_state = self.conv(u1, segment_ids, None if state is None else state["conv"])
        return self.out_proj(jax.nn.silu(c) * u2), {"conv": conv_state}

    def step(self, x_t: HiddenStep, state: dict) -> tuple[HiddenStep, dict]:
        u1, u2 = jax.numpy.split(self.in_proj(x_t), 2, axis=-1)
        c, conv_state = self.conv.step(u1, state["conv"])
        return self.out_proj(jax.nn.silu(c) * u2), {"conv": conv_state}
