"""The language model: embedding, pre-norm residual blocks, final norm, head.

Every block's mixer follows one contract — ``y, state = mixer(x, segment_ids=...,
state=None)`` for a sequence and ``y_t, state = mixer.step(x_t, state)`` for one token —
so the model's state is simply a list with one mixer state per layer.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from birdie_jax.config import ARCHITECTURE_HAS_MLP, ModelConfig
from birdie_jax.errors import DataError
from birdie_jax.models.attention import Attention
from birdie_jax.models.gated_ssm import GatedSSM
from birdie_jax.models.gated_conv import GatedConv
from birdie_jax.models.gated_ssm_plus import GatedSSMPlus
from birdie_jax.models.hawk import HawkMixer
from birdie_jax.models.layer_scan import call_block, scan_blocks, scan_blocks_step, stack_blocks
from birdie_jax.models.layers import RMSNorm, dtype_of, make_mlp
from birdie_jax.models.linear_attention import based, prefix_linear_attention
from birdie_jax.models.sliding_window import SlidingWindowAttention
from birdie_jax.models.token_matmul import TokenLinear, tied_logits
from birdie_jax.array_types import Array, Hidden, HiddenStep, Logits, PrefixMask, SegmentIds, Tokens

def _mamba2(cfg: ModelConfig, rngs: nnx.Rngs, *, bidirectional: bool = False):
    from birdie_jax.models.mamba2 import Mamba2Mixer  # noqa: PLC0415 — keeps the SSD kernel import lazy

    return Mamba2Mixer(cfg, rngs, bidirectional=bidirectional)


# Every mixer a layer may use (``model.architecture`` or a ``model.layers`` entry).
MIXERS = {"gated_ssm": GatedSSM, "hawk": HawkMixer, "transformer": Attention, "mamba2": _mamba2,
          "based": based, "pla": prefix_linear_attention, "swa": SlidingWindowAttention, "gated_conv": GatedConv,
          "gated_ssm_plus": GatedSSMPlus}
HAS_MLP = ARCHITECTURE_HAS_MLP


class Block(nnx.Module):
    """x ← x + mixer(norm x); then, where the layer has one, x ← x + MLP(norm x).

    The mixer and the MLP default to the architecture's; a hybrid model names them per layer.
    """

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, *, bidirectional: bool = False, mixer: str | None = None,
                 mlp: bool | None = None):
        mixer = cfg.architecture if mixer is None else mixer
        mlp = HAS_MLP[mixer] if mlp is None else mlp
        self.mixer_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, param_dtype=dtype_of(cfg.param_dtype))
        self.mixer = MIXERS[mixer](cfg, rngs, bidirectional=bidirectional)
        if mlp:
            self.mlp_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, param_dtype=dtype_of(cfg.param_dtype))
            self.mlp = make_mlp(cfg, rngs)
        else:
            self.mlp_norm = self.mlp = None

    def __call__(self, x: Hidden, *, segment_ids: SegmentIds, prefix_mask: PrefixMask | None,
                 state: dict | None) -> tuple[Hidden, dict]:
        y, state = self.mixer(self.mixer_norm(x), segment_ids=segment_ids, prefix_mask=prefix_mask, state=state)
        x = x + y
        if self.mlp is not None:
            x = x + self.mlp(self.mlp_norm(x))
        return x, state

    def step(self, x_t: HiddenStep, state: dict) -> tuple[HiddenStep, dict]:
        y, state = self.mixer.step(self.mixer_norm(x_t), state)
        x_t = x_t + y
        if self.mlp is not None:
            x_t = x_t + self.mlp(self.mlp_norm(x_t))
        return x_t, state


class LanguageModel(nnx.Module):
    """A decoder language model: one architecture, or a hybrid naming each layer's mixer.

    Call it on tokens int[b t] for logits float32[b t v]; pass ``return_state=True`` to
    also get the per-layer state after the last token, and ``state=`` to continue from one.
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        if cfg.vocab_size is None:
            raise ValueError("ModelConfig.vocab_size must be set (build_model fills it from the tokenizer)")
        self.cfg = cfg
        self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, dtype=dtype_of(cfg.dtype),
                               param_dtype=dtype_of(cfg.param_dtype),
                               embedding_init=nnx.initializers.normal(cfg.init_std), rngs=rngs)
        blocks = [Block(cfg, rngs, bidirectional=cfg.layer_is_bidirectional(i), mixer=cfg.layer_mixer(i),
                        mlp=cfg.layer_has_mlp(i)) for i in range(cfg.n_layers)]
        if cfg.scan_layers:  # parameters stacked per position of the layer period (models/layer_scan.py)
            self.stacked_blocks = stack_blocks(blocks, cfg.layer_period())
        else:
            self.blocks = nnx.List(blocks)
        self.final_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, param_dtype=dtype_of(cfg.param_dtype))
        self.head = None if cfg.tie_embeddings else TokenLinear(
            cfg.d_model, cfg.vocab_size, use_bias=False, dtype=dtype_of(cfg.dtype),
            param_dtype=dtype_of(cfg.param_dtype), kernel_init=nnx.initializers.normal(cfg.d_model**-0.5), rngs=rngs)

    def init_state(self, batch_size: int, cache_len: int | None = None) -> list[dict]:
        """Zero state for every layer (attention caches hold ``cache_len`` tokens)."""
        return [block.mixer.init_state(batch_size, cache_len) for block in self.layer_blocks()]

    def layer_blocks(self) -> list[Block]:
        """The Block of each layer; a scanned model's share modules (stacked parameters, same mixer kind)."""
        if not self.cfg.scan_layers:
            return list(self.blocks)
        return [self.stacked_blocks[i % len(self.stacked_blocks)] for i in range(self.cfg.n_layers)]

    def embed_tokens(self, tokens: Tokens) -> Hidden:
        x = self.embed(tokens)
        scale = self.cfg.embedding_scale
        return x if scale is None else x * jnp.asarray(scale, x.dtype)

    def logits(self, x: Array) -> Array:
        x = self.final_norm(x)
        if self.head is None:
            out = tied_logits(x, self.embed.embedding[...])
        else:
            out = self.head(x)
        out = out.astype(jnp.float32)
        cap = self.cfg.logit_soft_cap
        return out if cap is None else jnp.tanh(out / cap) * cap

    def __call__(self, tokens: Tokens, segment_ids: SegmentIds | None = None, prefix_mask: PrefixMask | None = None,
                 *, state: list[dict] | None = None, return_state: bool = False,
                 return_hidden: bool = False) -> Logits | tuple:
        """Logits for every position.

        Args:
          tokens: int[b t] token ids.
          segment_ids: int[b t] document ids of a packed row (0 = padding); None = one document.
          prefix_mask: bool[b t], True over prompt prefixes that bidirectional layers may read
            both ways; causal layers ignore it.
          state: per-layer state to continue from (None = zeros, i.e. a fresh start).
          return_state: also return the per-layer state after the last token.
          return_hidden: also return the final hidden states (before the final norm).
        """
        check_token_ids(tokens, self.cfg.vocab_size)
        return self.apply_embedded(self.embed_tokens(tokens), segment_ids, prefix_mask, state=state,
                                   return_state=return_state, return_hidden=return_hidden)

    def apply_embedded(self, x: Hidden, segment_ids: SegmentIds | None = None, prefix_mask: PrefixMask | None = None,
                       *, state: list[dict] | None = None, return_state: bool = False,
                       return_hidden: bool = False) -> Logits | tuple:
        """The model after the embedding (x float[b t d]); same arguments as ``__call__``."""
        if segment_ids is None:
            segment_ids = jnp.ones(x.shape[:2], jnp.int32)
        elif segment_ids.shape != x.shape[:2]:
            raise ValueError(f"segment_ids has shape {segment_ids.shape}, tokens {x.shape[:2]}")
        if prefix_mask is not None and prefix_mask.shape != x.shape[:2]:
            raise ValueError(f"prefix_mask has shape {prefix_mask.shape}, tokens {x.shape[:2]}")
        if state is not None and len(state) != self.cfg.n_layers:
            raise ValueError(f"state has {len(state)} layers, the model has {self.cfg.n_layers}")
        if self.cfg.scan_layers:
            x, new_states = scan_blocks(self.stacked_blocks, x, segment_ids=segment_ids, prefix_mask=prefix_mask,
                                        states=state, remat=self.cfg.remat)
        else:
            new_states = []
            for block, layer_state in zip(self.blocks, state if state is not None else [None] * len(self.blocks)):
                x, layer_state = call_block(block, x, segment_ids=segment_ids, prefix_mask=prefix_mask,
                                            state=layer_state, remat=self.cfg.remat)
                new_states.append(layer_state)
        out = (self.logits(x),)
        if return_state:
            out += (new_states,)
        if return_hidden:
            out += (x,)
        return out[0] if len(out) == 1 else out

    def step(self, token: Array, state: list[dict]) -> tuple[Array, list[dict]]:
        """One decoding step: token int[b] → (logits float32[b v], new state)."""
        check_token_ids(token, self.cfg.vocab_size)
        x = self.embed_tokens(token)
        if self.cfg.scan_layers:
            x, new_states = scan_blocks_step(self.stacked_blocks, x, state)
            return self.logits(x), new_states
        new_states = []
        for block, layer_state in zip(self.blocks, state):
            x, layer_state = block.step(x, layer_state)
            new_states.append(layer_state)
        return self.logits(x), new_states


def check_token_ids(tokens, vocab_size: int, what: str = "tokens") -> None:
    """Raises DataError naming the first id outside [0, vocab_size) (skipped inside jit)."""
    if isinstance(tokens, jax.core.Tracer):
        return
    tokens = np.asarray(tokens)
    if not np.issubdtype(tokens.dtype, np.integer):
        raise DataError(f"{what} must be integer token ids, got dtype {tokens.dtype}")
    bad = (tokens < 0) | (tokens >= vocab_size)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{what}: token id {int(tokens[index])} at index {index} is outside the vocabulary "
                        f"[0, {vocab_size})")


def count_parameters(model: nnx.Module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def state_size(model: LanguageModel, batch_size: int = 1, cache_len: int | None = None) -> int:
    """Number of floats in the decoding state of one sequence (KV cache at ``cache_len`` for attention)."""
    shapes = jax.eval_shape(lambda: model.init_state(batch_size, cache_len))
    return sum(s.size for s in jax.tree.leaves(shapes) if jnp.issubdtype(s.dtype, jnp.floating))
