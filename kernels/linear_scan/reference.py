"""Sequential fp32 oracle for the linear recurrence ``h_t = a_t * h_{t-1} + b_t``.

This is the definition every other implementation is tested against. It is
deliberately the most literal translation of the maths: one ``lax.scan`` step per
time step, everything in float32, resets applied by zeroing the carry. Never
optimise it.

Axis legend: ``B`` batch, ``T`` time, ``D`` channels.
"""

from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax


def linear_scan_reference(
    a: jax.Array,
    b: jax.Array,
    h0: Optional[jax.Array] = None,
    reset: Optional[jax.Array] = None,
    reverse: bool = False,
) -> Tuple[jax.Array, jax.Array]:
    """Computes the recurrence one step at a time in float32.

    Args:
      a: ``[B, T, D]`` decay.
      b: ``[B, T, D]`` input.
      h0: ``[B, D]`` initial state, zeros if None.
      reset: ``[B, T]`` bool; where True the recurrence restarts (``h_t = b_t``).
      reverse: run from ``t = T-1`` down to ``t = 0`` (``h_t = a_t h_{t+1} + b_t``).

    Returns:
      ``h`` ``[B, T, D]`` in float32 and ``h_last`` ``[B, D]`` in float32, the state
      after the final step (``h[:, -1]`` forward, ``h[:, 0]`` reverse).
    """
    batch, _, channels = a.shape
    a32 = a.astype(jnp.float32)
    b32 = b.astype(jnp.float32)
    if h0 is None:
        h = jnp.zeros((batch, channels), jnp.float32)
    else:
        h = h0.astype(jnp.float32)
    if reset is None:
        reset = jnp.zeros(a.shape[:2], dtype=bool)

    def step(h_prev, inputs):
        a_t, b_t, reset_t = inputs
        carried = jnp.where(reset_t[:, None], jnp.zeros_like(h_prev), h_prev)
        h_t = a_t * carried + b_t
        return h_t, h_t

    xs = (jnp.swapaxes(a32, 0, 1), jnp.swapaxes(b32, 0, 1), jnp.swapaxes(reset, 0, 1))
    h_last, h_tbd = lax.scan(step, h, xs, reverse=reverse)
    return jnp.swapaxes(h_tbd, 0, 1), h_last
