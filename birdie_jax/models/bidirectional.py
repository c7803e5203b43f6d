"""Birdie's bidirectional recurrence (paper §3.1, spec §5.3–5.4, §7.4).

A bidirectional layer splits its state channels in halves: ``[:n/2]`` scans forward
(resetting at segment starts, carrying the prefix into the suffix) and ``[n/2:]`` scans in
reverse, h_rev[t] = a[t]·h_rev[t+1] + b[t], with the reverse carry cut over the causal
region (prefix_mask False), at segment ends and at the row's end. A prefix position thus
reads the rest of its prefix and the fixed [BG] input, never a label or another document;
a causal position's reverse half is its own input. Same parameters and state size as the
causal layer.
"""

import jax.numpy as jnp

from birdie_jax.array_types import Array, PrefixMask, SegmentIds
from birdie_jax.kernels.linear_scan import linear_scan_sharded as linear_scan  # plain linear_scan off a sequence mesh
from birdie_jax.models.layers import segment_starts


def reverse_resets(segment_ids: SegmentIds, prefix_mask: PrefixMask | None) -> Array:
    """bool[b t]: where the reverse carry is zero (causal region, segment ends, last step)."""
    b, t = segment_ids.shape
    causal = jnp.ones((b, t), bool) if prefix_mask is None else ~prefix_mask.astype(bool)
    segment_end = jnp.concatenate([segment_ids[:, :-1] != segment_ids[:, 1:], jnp.ones((b, 1), bool)], axis=1)
    return causal | segment_end


def recurrence(a: Array, b: Array, *, h0: Array | None, segment_ids: SegmentIds, prefix_mask: PrefixMask | None,
               bidirectional: bool, implementation: str | None) -> tuple[Array, Array]:
    """h float32[b t n] and the carried state float32[b n] of a (possibly bidirectional) layer.

    Causal: one forward scan. Bidirectional: forward over ``[:n/2]``, reverse over ``[n/2:]``;
    the carried state keeps the forward half (the reverse half restarts at every causal
    position, so its carried part is zero).
    """
    reset = segment_starts(segment_ids)
    if not bidirectional:
        return linear_scan(a, b, h0=h0, reset=reset, implementation=implementation)
    half = a.shape[-1] // 2
    h_fwd, last_fwd = linear_scan(a[..., :half], b[..., :half], h0=None if h0 is None else h0[:, :half],
                                  reset=reset, implementation=implementation)
    h_rev, _ = linear_scan(a[..., half:], b[..., half:], reset=reverse_resets(segment_ids, prefix_mask),
                           reverse=True, implementation=implementation)
    return jnp.concatenate([h_fwd, h_rev], axis=-1), jnp.concatenate([last_fwd, jnp.zeros_like(last_fwd)], -1)


def step_recurrence(a: Array, b: Array, h: Array, bidirectional: bool) -> Array:
    """One decoding step h ← a·h + b; a bidirectional layer's reverse half has no carry."""
    if bidirectional:
        half = a.shape[-1] // 2
        a = jnp.concatenate([a[..., :half], jnp.zeros_like(a[..., half:])], axis=-1)
    return a * h + b


__all__ = ["recurrence", "reverse_resets", "step_recurrence"]
