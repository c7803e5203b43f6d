"""Sliding-window softmax attention (SWA) of JRT-RNN / Based (jrt.md §2).

Each token attends causally to the ``swa_window`` (128) tokens before it and itself, inside
its own packed document, with RoPE over the full head width (base ``rope_base``), scale
1/√P and no biases; it is causal inside prefixes too (``prefix_mask`` is ignored).
RecurrentGemma's local attention (Griffin) is this layer with three options: ``n_kv_heads``
key/value heads shared by groups of query heads (1 = multi-query), RoPE on the first
``rotary_fraction`` of each head's channels, and a bias on the output projection. The
projection ``qkv_proj`` [d, (h + 2g)·P] holds q (h heads), k and v (g = ``n_kv_heads`` heads each).
Decoding keeps a ring buffer of fixed size: the last W rotated keys and values, slot
``position mod W``. State: ``{"k", "v": [b W g P], "position": int32[b W] (−1 = empty),
"next_position": int32[b]}``; a state passed in continues the row's first document.
"""

import jax.numpy as jnp
from flax import nnx

from birdie_jax.array_types import Array, Hidden, HiddenStep, PrefixMask, SegmentIds
from birdie_jax.config import ModelConfig
from birdie_jax.kernels.linear_attention import segment_runs
from birdie_jax.models.attention import apply_rope, attend
from birdie_jax.models.layers import dense, dtype_of, positions_from_segments


class SlidingWindowAttention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, *, bidirectional: bool = False):
        if bidirectional:
            raise ValueError("sliding-window attention is causal only")
        self.cfg = cfg
        self.window = cfg.swa_window
        inner = cfg.num_heads * cfg.head_dim
        self.qkv_proj = dense(cfg, cfg.d_model, inner + 2 * cfg.kv_heads * cfg.head_dim, rngs)
        self.out_proj = dense(cfg, inner, cfg.d_model, rngs, bias=cfg.attention_out_bias, scale=1.0 / cfg.n_layers)

    def init_state(self, batch: int, cache_len: int | None = None) -> dict:
        """An empty ring of ``swa_window`` slots (no dependence on ``cache_len``)."""
        shape = (batch, self.window, self.cfg.kv_heads, self.cfg.head_dim)
        return {"k": jnp.zeros(shape, dtype_of(self.cfg.dtype)), "v": jnp.zeros(shape, dtype_of(self.cfg.dtype)),
                "position": jnp.full((batch, self.window), -1, jnp.int32),
                "next_position": jnp.zeros((batch,), jnp.int32)}

    def _project(self, x: Array, positions: Array) -> tuple[Array, Array, Array]:
        cfg = self.cfg
        q, k, v = jnp.split(self.qkv_proj(x).reshape(*x.shape[:2], cfg.num_heads + 2 * cfg.kv_heads, cfg.head_dim),
                            [cfg.num_heads, cfg.num_heads + cfg.kv_heads], 2)
        rope = dict(base=cfg.rope_base, rotary_dim=cfg.rotary_dim)
        return apply_rope(q, positions, **rope), apply_rope(k, positions, **rope), v

    def _ring_mask(self, positions: Array, ring_position: Array) -> Array:
        """bool[b t W]: ring entries within the window of each query position."""
        distance = positions[:, :, None] - ring_position[:, None, :]
        return (ring_position[:, None, :] >= 0) & (distance >= 1) & (distance <= self.window)

    def __call__(self, x: Hidden, *, segment_ids: SegmentIds, prefix_mask: PrefixMask | None = None,
                 state: dict | None = None) -> tuple[Hidden, dict]:
        b, t, _ = x.shape
        state = self.init_state(b) if state is None else state
        run = segment_runs(segment_ids)
        continuing = run == 0  # the first run continues the carried document
        positions = positions_from_segments(segment_ids) + jnp.where(continuing, state["next_position"][:, None], 0)
        q, k, v = self._project(x, positions)
        valid = segment_ids != 0
        index = jnp.arange(t)
        distance = positions[:, :, None] - positions[:, None, :]
        own = (run[:, :, None] == run[:, None, :]) & (index[:, None] >= index[None, :]) & (distance <= self.window)
        own = (own & valid[:, None, :]) | (index[:, None] == index[None, :])  # a query always sees itself
        ring = self._ring_mask(positions, state["position"]) & continuing[..., None]
        out = attend(q, jnp.concatenate([state["k"], k.astype(state["k"].dtype)], 1),
                     jnp.concatenate([state["v"], v.astype(state["v"].dtype)], 1), jnp.concatenate([ring, own], -1))
        return self.out_proj(out.reshape(b, t, -1)), self._write(state, k, v, positions, run, valid)

    def _write(self, state: dict, k: Array, v: Array, positions: Array, run: Array, valid: Array) -> dict:
        """The ring after a chunk: the last run's last W valid tokens at slot position mod W."""
        b = k.shape[0]
        keep = run[:, -1] == 0  # no new document started: the old ring stays
        ring_k = jnp.where(keep[:, None, None, None], state["k"], 0)
        ring_v = jnp.where(keep[:, None, None, None], state["v"], 0)
        ring_position = jnp.where(keep[:, None], state["position"], -1)
        last = positions[:, -1:]
        write = (run == run[:, -1:]) & valid & (positions > last - self.window)
        slot = jnp.where(write, positions % self.window, self.window)  # out of range: dropped
        rows = jnp.arange(b)[:, None]
        return {"k": ring_k.at[rows, slot].set(k.astype(ring_k.dtype), mode="drop"),
                "v": ring_v.at[rows, slot].set(v.astype(ring_v.dtype), mode="drop"),
                "position": ring_position.at[rows, slot].set(positions, mode="drop"),
                "next_position": last[:, 0] + 1}

    def step(self, x_t: HiddenStep, state: dict) -> tuple[HiddenStep, dict]:
        b = x_t.shape[0]
        position = state["next_position"][:, None]  # [b 1]
        q, k, v = self._project(x_t[:, None], position)
        mask = jnp.concatenate([self._ring_mask(position, state["position"]), jnp.ones((b, 1, 1), bool)], -1)
        out = attend(q, jnp.concatenate([state["k"], k.astype(state["k"].dtype)], 1),
                     jnp.concatenate([state["v"], v.astype(state["v"].dtype)], 1), mask)
        ones = jnp.ones((b, 1), jnp.int32)
        new_state = self._write(state, k, v, position, jnp.zeros((b, 1), jnp.int32), ones == 1)
        return self.out_proj(out.reshape(b, -1)), new_state
