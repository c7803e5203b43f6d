"""Multi-head softmax attention with RoPE, segment masking and a KV cache.

Training runs plain [t × t] attention restricted to the same segment and to earlier
positions; a bidirectional (prefix-attention) layer also lets prefix positions of a sample
see its whole prefix (spec §5.3: q may attend to k iff they share a segment and k ≤ q, or
both are prefix positions). With a state (a KV cache of fixed length ``s``) new tokens are written at the
row's fill level and attend over the cache, which serves chunked prefill and one-token
decoding alike. State: ``{"k", "v": [b s h k], "segment": int32[b s] (0 = empty), "prefix": bool[b s],
"length": int32[b], "next_position": int32[b], "current_segment": int32[b]}``.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from birdie_jax.config import ModelConfig
from birdie_jax.models.layers import dense, dtype_of, positions_from_segments
from birdie_jax.array_types import Array, Hidden, HiddenStep, PrefixMask, SegmentIds

_MASKED = -1e30


def apply_rope(x: Array, positions: Array, base: float, scaling: float = 1.0, rotary_dim: int | None = None) -> Array:
    """Rotary embedding of x [b t h k] at integer positions [b t] (half-split convention);
    ``scaling`` s > 1 interpolates positions (p / s) to extend the trained context.
    ``rotary_dim`` r < k turns only the first r channels (half-split inside them, frequencies
    base^(−2i/r)) and passes the rest through, as RecurrentGemma's partial rotary does."""
    if rotary_dim is not None and rotary_dim != x.shape[-1]:
        turned = apply_rope(x[..., :rotary_dim], positions, base, scaling)
        return jnp.concatenate([turned, x[..., rotary_dim:]], axis=-1)
    half = x.shape[-1] // 2
    freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle = (positions.astype(jnp.float32) / scaling)[..., None, None] * freq  # [b t 1 half]
    sin, cos = jnp.sin(angle), jnp.cos(angle)
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def attend(q: Array, k: Array, v: Array, mask: Array) -> Array:
    """Softmax attention of q [b t h k] over k, v [b s g k] where mask [b t s] is True.

    With g < h key/value heads (grouped / multi-query), query head j reads key/value head
    j // (h / g); g = h keeps the one-head-per-query einsums (bit for bit as before)."""
    if k.shape[2] != q.shape[2]:
        return _attend_grouped(q, k, v, mask)
    scores = jnp.einsum("bthk,bshk->bhts", q, k, preferred_element_type=jnp.float32) / jnp.sqrt(q.shape[-1])
    return jnp.einsum("bhts,bshk->bthk", _masked_softmax(scores, mask[:, None], v.dtype), v)


def _attend_grouped(q: Array, k: Array, v: Array, mask: Array) -> Array:
    b, t, h, d = q.shape
    g = k.shape[2]
    scores = jnp.einsum("btgrk,bsgk->bgrts", q.reshape(b, t, g, h // g, d), k,
                        preferred_element_type=jnp.float32) / jnp.sqrt(d)
    weights = _masked_softmax(scores, mask[:, None, None], v.dtype)
    return jnp.einsum("bgrts,bsgk->btgrk", weights, v).reshape(b, t, h, d)


def _masked_softmax(scores: Array, mask: Array, dtype) -> Array:
    return jax.nn.softmax(jnp.where(mask, scores, _MASKED), axis=-1).astype(dtype)


def attention_mask(q_seg: Array, k_seg: Array, q_index: Array, k_index: Array, q_prefix: Array | None,
                   k_prefix: Array | None) -> Array:
    """bool[b t s]: same segment and causal, or (prefix attention) both in the prefix."""
    same = q_seg[:, :, None] == k_seg[:, None, :]
    allowed = k_index[:, None, :] <= q_index[:, :, None]
    if q_prefix is not None:
        allowed |= q_prefix[:, :, None] & k_prefix[:, None, :]
    # A query always sees itself, so padding rows stay finite (never NaN).
    return (same & allowed) | (k_index[:, None, :] == q_index[:, :, None])


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, *, bidirectional: bool = False):
        self.cfg = cfg
        self.bidirectional = bidirectional
        inner = cfg.num_heads * cfg.head_dim
        self.qkv_proj = dense(cfg, cfg.d_model, 3 * inner, rngs)
        self.out_proj = dense(cfg, inner, cfg.d_model, rngs, scale=1.0 / cfg.n_layers)

    def init_state(self, batch: int, cache_len: int | None = None) -> dict:
        s = cache_len or self.cfg.max_len
        shape = (batch, s, self.cfg.num_heads, self.cfg.head_dim)
        zeros = jnp.zeros((batch,), jnp.int32)
        return {"k": jnp.zeros(shape, dtype_of(self.cfg.dtype)), "v": jnp.zeros(shape, dtype_of(self.cfg.dtype)),
                "segment": jnp.zeros((batch, s), jnp.int32), "prefix": jnp.zeros((batch, s), bool), "length": zeros,
                "next_position": zeros, "current_segment": zeros + 1}

    def _project(self, x: Array) -> tuple[Array, Array, Array]:
        b, t, _ = x.shape
        q, k, v = jnp.split(self.qkv_proj(x).reshape(b, t, 3 * self.cfg.num_heads, self.cfg.head_dim), 3, axis=2)
        return q, k, v

    def __call__(self, x: Hidden, *, segment_ids: SegmentIds, prefix_mask: PrefixMask | None = None,
                 state: dict | None = None) -> tuple[Hidden, dict]:
        b, t, _ = x.shape
        q, k, v = self._project(x)
        prefix = self._prefix(prefix_mask, segment_ids)
        if state is None:
            positions = positions_from_segments(segment_ids)
            q, k = (apply_rope(y, positions, self.cfg.rope_base, self.cfg.rope_scaling) for y in (q, k))
            index = jnp.broadcast_to(jnp.arange(t), (b, t))
            mask = attention_mask(segment_ids, segment_ids, index, index, prefix, prefix)
            out = attend(q, k, v, mask)
            state = self.init_state(b, max(t, self.cfg.max_len))
            state = _write_cache(state, k, v, segment_ids, positions, prefix)
            return self.out_proj(out.reshape(b, t, -1)), state
        return self._attend_with_cache(q, k, v, segment_ids, prefix, state)

    def _prefix(self, prefix_mask: PrefixMask | None, segment_ids: SegmentIds) -> Array | None:
        """Prefix flags if this layer uses prefix attention, else None (causal)."""
        if not self.bidirectional:
            return None
        return jnp.zeros(segment_ids.shape, bool) if prefix_mask is None else prefix_mask.astype(bool)

    def _attend_with_cache(self, q, k, v, segment_ids, prefix, state):
        b, t = segment_ids.shape
        # The chunk's first segment continues the cached one; later segments are new.
        seg = jnp.where(segment_ids == 0, 0, segment_ids - segment_ids[:, :1] + state["current_segment"][:, None])
        continuing = seg == state["current_segment"][:, None]
        positions = positions_from_segments(segment_ids) + jnp.where(continuing, state["next_position"][:, None], 0)
        q, k = (apply_rope(y, positions, self.cfg.rope_base, self.cfg.rope_scaling) for y in (q, k))
        state = _write_cache(state, k, v, seg, positions, prefix)
        s = state["k"].shape[1]
        q_index = state["length"][:, None] - t + jnp.arange(t)[None]  # [b t]
        k_index = jnp.broadcast_to(jnp.arange(s), (b, s))
        k_prefix = None if prefix is None else state["prefix"]
        mask = attention_mask(seg, state["segment"], q_index, k_index, prefix, k_prefix)
        out = attend(q, state["k"], state["v"], mask)
        return self.out_proj(out.reshape(b, t, -1)), state

    def step(self, x_t: HiddenStep, state: dict) -> tuple[HiddenStep, dict]:
        q, k, v = self._project(x_t[:, None])
        ones = jnp.ones((x_t.shape[0], 1), jnp.int32)
        y, state = self._attend_with_cache(q, k, v, ones, self._prefix(None, ones), state)
        return y[:, 0], state


def _write_cache(state: dict, k: Array, v: Array, seg: Array, positions: Array, prefix: Array | None) -> dict:
    """Writes a chunk's keys/values at each row's fill level and advances the counters."""
    t = k.shape[1]

    def put(cache, new, start):
        return jax.lax.dynamic_update_slice_in_dim(cache, new.astype(cache.dtype), start, axis=0)

    put_rows = jax.vmap(put)
    start = state["length"]
    last_seg = seg[:, -1]
    return {
        "k": put_rows(state["k"], k, start),
        "v": put_rows(state["v"], v, start),
        "segment": put_rows(state["segment"], seg, start),
        "prefix": put_rows(state["prefix"], jnp.zeros(seg.shape, bool) if prefix is None else prefix, start),
        "length": start + t,
        "next_position": positions[:, -1] + 1,
        "current_segment": jnp.where(last_seg == 0, state["current_segment"], last_seg),
    }
