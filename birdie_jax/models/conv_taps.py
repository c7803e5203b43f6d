"""The segment-masked tap sum of the depthwise causal conv, optionally through SiLU, with a hand-written VJP.

    pre[b, t, c] = bias[c] + Σ_j [seg_hist[b, t+w−1−j] == seg[b, t]] · kernel[j, c] · history[b, t+w−1−j, c]
    out = SiLU(pre) if ``silu`` else pre

``history`` [b w−1+t c] is the carried state followed by the inputs (oldest first), so tap j
reads x_{t−j}. Why a custom VJP (issue 18): autodiff saves every shifted copy of the input
(needed for the kernel's gradient) and the pre-activation as residuals, so XLA's CPU backend
writes w−1 extra [b t c] copies per call; here the backward recomputes the taps inside its
own fused loops and only ``history`` is kept. Same arithmetic in the forward as the plain
loop; tests/test_conv_taps.py checks values and gradients against autodiff of a loop
re-derived in the test.

Backward, with upstream gradient u and g = u·SiLU'(pre) (or u):
  d bias = Σ_{b,t} g;  d kernel[j] = Σ_{b,t} mask_j·history[t+w−1−j]·g[t];
  d history[s] = Σ_j mask_j[t]·kernel[j]·g[t] at t = s−(w−1)+j (0 where t is outside [0, T)).

Axis legend: b batch, t time, s history position, c channels, w taps (j = 0..w−1).
"""

import jax
import jax.numpy as jnp

from birdie_jax.array_types import Array, SegmentIds


def _same_segment(seg_hist: Array, segment_ids: SegmentIds, j: int, w: int) -> Array:
    """bool[b t 1]: tap j (reading x_{t−j}) stays inside token t's segment."""
    t = segment_ids.shape[1]
    return (seg_hist[:, w - 1 - j : w - 1 - j + t] == segment_ids)[..., None]


def _tap(history: Array, j: int, w: int, t: int) -> Array:
    """[b t c]: x_{t−j} for every t (from the history)."""
    return history[:, w - 1 - j : w - 1 - j + t]


def _pre_activation(history, seg_hist, segment_ids, kernel, bias):
    w, t = kernel.shape[0], segment_ids.shape[1]
    y = jnp.zeros((history.shape[0], t, history.shape[2]), history.dtype) + bias
    for j in range(w):  # tap j reads x_{t-j}
        y = y + jnp.where(_same_segment(seg_hist, segment_ids, j, w), _tap(history, j, w, t) * kernel[j], 0)
    return y


def _conv_taps(history, seg_hist, segment_ids, kernel, bias, silu):
    """The plain forward (autodiff differentiates it where ``custom_backward`` is off)."""
    pre = _pre_activation(history, seg_hist, segment_ids, kernel, bias)
    return jax.nn.silu(pre) if silu else pre


def _conv_taps_fwd(history, seg_hist, segment_ids, kernel, bias, silu):
    return _conv_taps(history, seg_hist, segment_ids, kernel, bias, silu), (history, seg_hist, segment_ids, kernel, bias)


def _conv_taps_bwd(silu, residuals, u):
    history, seg_hist, segment_ids, kernel, bias = residuals
    w, t = kernel.shape[0], segment_ids.shape[1]
    g = u
    if silu:
        pre = _pre_activation(history, seg_hist, segment_ids, kernel, bias)
        sig = jax.nn.sigmoid(pre)
        g = u * (sig * (1 + pre * (1 - sig)))
    d_bias = jnp.sum(g, axis=(0, 1))
    d_kernel = jnp.stack([jnp.sum(jnp.where(_same_segment(seg_hist, segment_ids, j, w), _tap(history, j, w, t) * g, 0),
                                  axis=(0, 1)) for j in range(w)])
    # d history[s] collects tap j of output t = s − (w−1) + j: g and the masks padded by w−1 on both sides.
    pad = ((0, 0), (w - 1, w - 1), (0, 0))
    g_ext = jnp.pad(g, pad)
    d_history = jnp.zeros_like(history)
    for j in range(w):
        mask_ext = jnp.pad(_same_segment(seg_hist, segment_ids, j, w), pad)
        span = slice(j, j + t + w - 1)
        d_history = d_history + jnp.where(mask_ext[:, span], g_ext[:, span] * kernel[j], 0)
    return d_history, None, None, d_kernel, d_bias


_conv_taps_custom = jax.custom_vjp(_conv_taps, nondiff_argnums=(5,))
_conv_taps_custom.defvjp(_conv_taps_fwd, _conv_taps_bwd)


def conv_taps(history: Array, seg_hist: SegmentIds, segment_ids: SegmentIds, kernel: Array, bias: Array,
              *, silu: bool = False, custom_backward: bool = True) -> Array:
    """Segment-masked causal depthwise conv over a history, optionally followed by SiLU.

    Args:
      history: [b w−1+t c] carried inputs then inputs (oldest first), in the compute dtype.
      seg_hist: int[b w−1+t] segment ids of the history; segment_ids: int[b t] those of the outputs.
      kernel: [w c] taps in the compute dtype (kernel[j] multiplies x_{t−j}); bias: [c].
      silu: apply SiLU to the result (fused into the same loops, and into the backward).
      custom_backward: use the hand-written VJP; False differentiates the plain loop (inside a
        ``shard_map``, where the taps are replicated but their gradient is a per-shard sum, which
        autodiff turns into the psum a custom VJP would have to spell out per JAX version).

    Returns:
      [b t c] in the dtype of ``history``.
    """
    forward = _conv_taps_custom if custom_backward else _conv_taps
    return forward(history, seg_hist, segment_ids, kernel, bias.astype(history.dtype), bool(silu))
