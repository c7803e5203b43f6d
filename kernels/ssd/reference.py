"""Sequential fp32 oracle for the SSD (Mamba-2) recurrence, one token per step.

Per head, with a matrix state h ∈ R^{P×N} (spec §7 step 4):

    h_t = exp(dt_t·A)·h_{t−1} + dt_t·x_t B_tᵀ,    y_t = h_t C_t + D·x_t

Head h reads group ⌊h·G/H⌋ of B and C. A reset at t (a new packed document) drops the
carry before the step, so ``h_t = dt_t·x_t B_tᵀ``. This is the definition the chunked
algorithm is tested against, and :func:`ssd_step` is also the decode step of the mixer.
Never optimise it.

Axis legend: b batch, l time, h heads, p head width, g groups, n state size.
"""

from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

_F32 = jnp.float32


def heads_from_groups(bc: jax.Array, num_heads: int) -> jax.Array:
    """[..., g, n] → [..., h, n]: head h gets group ⌊h·G/H⌋ (contiguous blocks of H/G heads)."""
    return jnp.repeat(bc, num_heads // bc.shape[-2], axis=-2)


def ssd_step(
    x: jax.Array,
    dt: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    state: jax.Array,
    D: Optional[jax.Array] = None,
) -> Tuple[jax.Array, jax.Array]:
    """One token: x [b h p], dt [b h], A [h], B/C [b g n], state [b h p n] → (y [b h p], state).

    Everything is computed in float32; y is returned in the dtype of ``x``, the state in
    float32.
    """
    num_heads = x.shape[1]
    x32, dt32, a32 = x.astype(_F32), dt.astype(_F32), A.astype(_F32)
    b_h = heads_from_groups(B.astype(_F32), num_heads)  # [b h n]
    c_h = heads_from_groups(C.astype(_F32), num_heads)
    decay = jnp.exp(dt32 * a32)[:, :, None, None]  # [b h 1 1]
    state = decay * state.astype(_F32) + (dt32[:, :, None] * x32)[..., None] * b_h[:, :, None, :]
    y = jnp.einsum("bhpn,bhn->bhp", state, c_h)
    if D is not None:
        y = y + D.astype(_F32)[:, None] * x32
    return y.astype(x.dtype), state


def ssd_reference(
    x: jax.Array,
    dt: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: Optional[jax.Array] = None,
    initial_state: Optional[jax.Array] = None,
    reset: Optional[jax.Array] = None,
) -> Tuple[jax.Array, jax.Array]:
    """The recurrence token by token (``lax.scan`` over :func:`ssd_step`).

    Args:
      x: [b l h p]; dt: [b l h] (positive step sizes); A: [h] (negative);
      B, C: [b l g n]; D: [h] or None; initial_state: [b h p n] or None (zeros);
      reset: bool [b l] or None; True drops the carry before that token.

    Returns:
      (y [b l h p] in the dtype of x, final state float32 [b h p n]).
    """
    batch, length, heads, width = x.shape
    state = jnp.zeros((batch, heads, width, B.shape[-1]), _F32)
    if initial_state is not None:
        state = initial_state.astype(_F32)
    if reset is None:
        reset = jnp.zeros((batch, length), bool)

    def step(h, inputs):
        x_t, dt_t, b_t, c_t, reset_t = inputs
        h = jnp.where(reset_t[:, None, None, None], jnp.zeros_like(h), h)
        y_t, h = ssd_step(x_t, dt_t, A, b_t, c_t, h, D)
        return h, y_t

    time_major = [jnp.swapaxes(v, 0, 1) for v in (x, dt, B, C, reset)]
    final, y = lax.scan(step, state, time_major)
    return jnp.swapaxes(y, 0, 1), final
