"""Pallas GPU kernel (Triton lowering) for ``h_t = a_t * h_{t-1} + b_t`` ("pallas" on GPU).

GPU grid programs run in parallel and carry no state between them, so each program owns
one (batch row, channel block) for the **whole** sequence: grid ``(B, D_blocks)``. The
program walks time in chunks of ``block_t`` steps (each chunk a straight-line run of
``block_t`` row loads, FMAs and row stores that the compiler can schedule ahead), with
the fp32 carry ``[1, block_d]`` in registers; a remainder loop covers ``T mod block_t``.
Every row access is ``block_d`` contiguous elements, so loads and stores coalesce.
``reverse=True`` walks rows from ``T-1`` down. ``h_last`` is written once at the end.

Resets are folded into ``a`` (``a_t = 0``) before the kernel. Triton blocks must have
power-of-two extents, so ``D`` is padded up to a multiple of the channel block
(``a=1, b=0`` columns, dropped afterwards); ``T`` needs no padding.

Backward: the same kernel run in the other direction, wrapped in ``jax.custom_vjp``
(``xla._with_linear_vjp``: ``g_t = dh_t + a_{t+1} g_{t+1}``, ``da_t = g_t h_{t-1}``,
``dh0 = a_0 g_0``; the shifts and products are XLA elementwise ops).

Verified in interpret mode (tests/test_linear_scan.py) and by lowering for CUDA without a
GPU (tests/test_pallas_lowering.py); it has not run on GPU hardware in this project. The
Triton backend of Pallas is deprecated from JAX 0.11 (still present through 0.12).
"""

import functools
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from birdie_jax.kernels.dispatch import ImplementationUnavailableError

from .xla import _masked_a32, run_with_linear_vjp

_F32 = jnp.float32


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _scan_kernel(a_ref, b_ref, h0_ref, h_ref, h_last_ref, *, steps, block_t, reverse):
    """One (batch, D-block) program. Refs: a/b/h [T, bd], h0/h_last [1, bd]."""

    def row(t):
        return steps - 1 - t if reverse else t

    def step(t, h):
        j = row(t)
        h = a_ref[pl.ds(j, 1), :].astype(_F32) * h + b_ref[pl.ds(j, 1), :].astype(_F32)
        h_ref[pl.ds(j, 1), :] = h.astype(h_ref.dtype)
        return h

    def chunk(c, h):
        start = c * block_t
        for i in range(block_t):  # straight-line chunk: the carry never leaves registers
            h = step(start + i, h)
        return h

    full = steps // block_t
    h = lax.fori_loop(0, full, chunk, h0_ref[...].astype(_F32))
    h = lax.fori_loop(full * block_t, steps, step, h)
    h_last_ref[...] = h


def check_tiling(channels: int, block_t: int, block_d: int) -> None:
    """Raises ImplementationUnavailableError for shapes/blocks the GPU kernel cannot tile."""
    if channels < 1:
        raise ImplementationUnavailableError(
            f"linear_scan pallas (GPU): cannot tile {channels} channels; use implementation='associative'")
    if not _is_power_of_two(block_d):
        raise ImplementationUnavailableError(
            f"linear_scan pallas (GPU): block_d={block_d} is not a power of two (Triton blocks must be); "
            f"set LinearScanConfig.block_d to one, or use implementation='associative'")
    if block_t < 1:
        raise ImplementationUnavailableError(
            f"linear_scan pallas (GPU): block_t={block_t} must be >= 1; use implementation='associative'")


def _pallas_core(a, b, h0, reset, reverse, *, block_t, block_d, interpret):
    """(h in b.dtype, h_last f32); a/b [B, T, D], h0 [B, D] f32."""
    batch, steps, channels = a.shape
    out_dtype = b.dtype
    if reset is not None:
        a = _masked_a32(a, reset).astype(a.dtype)
    bd = min(block_d, _next_power_of_two(channels))
    d_pad = _round_up(channels, bd)
    if d_pad != channels:
        pads = ((0, 0), (0, 0), (0, d_pad - channels))
        a = jnp.pad(a, pads, constant_values=1)
        b = jnp.pad(b, pads, constant_values=0)
        h0 = jnp.pad(h0, ((0, 0), (0, d_pad - channels)))

    seq_spec = pl.BlockSpec((None, steps, bd), lambda i, d: (i, 0, d))
    state_spec = pl.BlockSpec((None, 1, bd), lambda i, d: (i, 0, d))
    kernel = functools.partial(_scan_kernel, steps=steps, block_t=min(block_t, steps), reverse=reverse)
    h, h_last = pl.pallas_call(
        kernel,
        grid=(batch, d_pad // bd),
        in_specs=[seq_spec, seq_spec, state_spec],
        out_specs=[seq_spec, state_spec],
        out_shape=[
            jax.ShapeDtypeStruct((batch, steps, d_pad), out_dtype),
            jax.ShapeDtypeStruct((batch, 1, d_pad), _F32),
        ],
        compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=1),
        interpret=interpret,
        name="linear_scan_gpu_reverse" if reverse else "linear_scan_gpu",
    )(a, b, h0.astype(_F32)[:, None, :])
    return h[:, :, :channels], h_last[:, 0, :channels]


def linear_scan_pallas(
    a: jax.Array,
    b: jax.Array,
    h0: Optional[jax.Array] = None,
    reset: Optional[jax.Array] = None,
    reverse: bool = False,
    *,
    block_t: int = 8,
    block_d: int = 128,
    interpret: bool = False,
) -> Tuple[jax.Array, jax.Array]:
    """Pallas GPU linear scan with a custom VJP (backward = same kernel, reversed).

    ``block_t`` steps per straight-line chunk; ``block_d`` channels per program (a power
    of two; a smaller ``D`` is one block of the next power of two).
    """
    check_tiling(a.shape[2], int(block_t), int(block_d))
    return run_with_linear_vjp(_pallas_core, "linear_scan_pallas_gpu", a, b, h0, reset, reverse,
                               block_t=int(block_t), block_d=int(block_d), interpret=bool(interpret))
