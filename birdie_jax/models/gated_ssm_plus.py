"""Gated SSM+ (Birdie article baseline): the Gated SSM reading a short causal convolution of its input.

x̃ = Conv1D_w(x) (depthwise, causal, width ``conv_width``, never mixing packed documents),
then the Gated SSM of :mod:`birdie_jax.models.gated_ssm` on x̃; a hybrid pattern adds the MLP
block (``gated_ssm_plus+mlp``). State: ``{"rnn": float32[b n], "conv": [b w-1 d]}``.
"""

from flax import nnx

from birdie_jax.array_types import Hidden, HiddenStep, PrefixMask, SegmentIds
from birdie_jax.config import ModelConfig
from birdie_jax.models.conv import CausalConv1D
from birdie_jax.models.gated_ssm import GatedSSM
from birdie_jax.models.layers import dtype_of


class GatedSSMPlus(GatedSSM):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, *, bidirectional: bool = False):
        super().__init__(cfg, rngs, bidirectional=bidirectional)
        self.conv = CausalConv1D(cfg, cfg.d_model, rngs)

    def init_state(self, batch: int, cache_len: int | None = None) -> dict:
        return {**super().init_state(batch, cache_len),
                "conv": self.conv.zero_state(batch, self.cfg.d_model, dtype_of(self.cfg.dtype))}

    def __call__(self, x: Hidden, *, segment_ids: SegmentIds, prefix_mask: PrefixMask | None = None,
                 state: dict | None = None) -> tuple[Hidden, dict]:
        x, conv_state = self.conv(x, segment_ids, None if state is None else state["conv"])
        y, rnn_state = super().__call__(x, segment_ids=segment_ids, prefix_mask=prefix_mask,
                                        state=None if state is None else {"rnn": state["rnn"]})
        return y, {**rnn_state, "conv": conv_state}

    def step(self, x_t: HiddenStep, state: dict) -> tuple[HiddenStep, dict]:
        x_t, conv_state = self.conv.step(x_t, state["conv"])
        y, rnn_state = super().step(x_t, {"rnn": state["rnn"]})
        return y, {**rnn_state, "conv": conv_state}
