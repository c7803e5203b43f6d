"""Pallas TPU kernel for ``h_t = a_t * h_{t-1} + b_t`` ("pallas").

Grid ``(batch, D_blocks, T_blocks)`` with time last (sequential, "arbitrary"); the
state is carried across time blocks in an fp32 VMEM scratch, initialised from ``h0``
at the first time block; inside a block a ``lax.fori_loop`` walks the rows. ``h_last``
is an output block whose index map ignores time, so it stays resident and is written
once at the last time block. ``reverse=True`` maps time block ``s -> n-1-s`` and walks
each block's rows backwards.

Resets are folded into ``a`` (``a_t = 0``) before the kernel. ``T`` is padded to a
multiple of the time block with identity steps (``a=1, b=0``), which is harmless both
ways (forward they follow the last real step, reverse they carry ``h0`` unchanged up
to the last real step); ``D`` is padded to a multiple of the channel block.

``jax.grad`` does not go through a stateful ``pallas_call``, so the kernel is wrapped
in a ``jax.custom_vjp`` whose backward runs the same kernel in the other direction:
``g_t = dh_t + a_{t+1} g_{t+1}`` (seeded with the ``h_last`` cotangent), ``db_t = g_t``,
``da_t = g_t h_{t-1}``, ``dh0 = a_0 g_0`` (see ``xla._with_linear_vjp``).

Runs on TPU; everywhere else only with ``interpret=True`` (tests, tiny shapes). Block
shapes follow the (8, 128) rule; the kernel and its backward lower for TPU without a
TPU (tests/test_pallas_lowering.py), but it has not run on TPU hardware in this project,
so it is opt-in (docs/kernels.md).
"""

import functools
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from birdie_jax.kernels.dispatch import ImplementationUnavailableError

from .xla import _masked_a32, run_with_linear_vjp

_F32 = jnp.float32
_SUBLANES = 8
_LANES = 128


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _scan_kernel(a_ref, b_ref, h0_ref, h_ref, h_last_ref, carry_ref, *, block_t, reverse):
    """One (batch, D-block, T-block) program. Blocks: a/b/h [1, bt, bd], h0/h_last [1, 1, bd]."""
    t_block = pl.program_id(2)

    @pl.when(t_block == 0)
    def _init():
        carry_ref[...] = h0_ref[0].astype(_F32)

    def body(i, h):
        j = block_t - 1 - i if reverse else i
        a_j = a_ref[0, pl.ds(j, 1), :].astype(_F32)
        b_j = b_ref[0, pl.ds(j, 1), :].astype(_F32)
        h = a_j * h + b_j
        h_ref[0, pl.ds(j, 1), :] = h.astype(h_ref.dtype)
        return h

    h = lax.fori_loop(0, block_t, body, carry_ref[...], unroll=min(block_t, _SUBLANES))
    carry_ref[...] = h

    @pl.when(t_block == pl.num_programs(2) - 1)
    def _finish():
        h_last_ref[0] = h


def check_tiling(channels: int, block_t: int, block_d: int) -> None:
    """Raises ImplementationUnavailableError for shapes/blocks the TPU kernel cannot tile."""
    alternative = "or use implementation='chunked'"
    if channels < 1:
        raise ImplementationUnavailableError(
            f"linear_scan pallas (TPU): cannot tile {channels} channels; use implementation='chunked'")
    if block_t < 1 or block_t % _SUBLANES:
        raise ImplementationUnavailableError(
            f"linear_scan pallas (TPU): block_t={block_t} is not a multiple of {_SUBLANES} "
            f"(TPU sublanes); set LinearScanConfig.block_t to one, {alternative}")
    if channels > block_d and block_d % _LANES:
        raise ImplementationUnavailableError(
            f"linear_scan pallas (TPU): {channels} channels need channel blocks of block_d={block_d}, "
            f"which is not a multiple of {_LANES} (TPU lanes); set LinearScanConfig.block_d to one, {alternative}")


def _pallas_core(a, b, h0, reset, reverse, *, block_t, block_d, interpret):
    """(h in b.dtype, h_last f32) with the Pallas kernel; a/b [B, T, D], h0 [B, D] f32."""
    batch, steps, channels = a.shape
    out_dtype = b.dtype
    if reset is not None:
        a = _masked_a32(a, reset).astype(a.dtype)

    bt = min(block_t, _round_up(steps, _SUBLANES))
    t_pad = _round_up(steps, bt)
    bd = channels if channels <= block_d else block_d
    d_pad = _round_up(channels, bd)
    if t_pad != steps or d_pad != channels:
        pads = ((0, 0), (0, t_pad - steps), (0, d_pad - channels))
        a = jnp.pad(a, pads, constant_values=1)
        b = jnp.pad(b, pads, constant_values=0)
        h0 = jnp.pad(h0, ((0, 0), (0, d_pad - channels)))
    n_t, n_d = t_pad // bt, d_pad // bd

    def time_block(s):
        return n_t - 1 - s if reverse else s

    seq_spec = pl.BlockSpec((1, bt, bd), lambda i, d, s: (i, time_block(s), d))
    state_spec = pl.BlockSpec((1, 1, bd), lambda i, d, s: (i, 0, d))
    kernel = functools.partial(_scan_kernel, block_t=bt, reverse=reverse)
    h, h_last = pl.pallas_call(
        kernel,
        grid=(batch, n_d, n_t),
        in_specs=[seq_spec, seq_spec, state_spec],
        out_specs=[seq_spec, state_spec],
        out_shape=[
            jax.ShapeDtypeStruct((batch, t_pad, d_pad), out_dtype),
            jax.ShapeDtypeStruct((batch, 1, d_pad), _F32),
        ],
        scratch_shapes=[pltpu.VMEM((1, bd), _F32)],
        compiler_params=pltpu.CompilerParams(
            dimension_semantics=("parallel", "parallel", "arbitrary")
        ),
        interpret=interpret,
        name="linear_scan_reverse" if reverse else "linear_scan",
    )(a, b, h0.astype(_F32)[:, None, :])
    return h[:, :steps, :channels], h_last[:, 0, :channels]


def linear_scan_pallas(
    a: jax.Array,
    b: jax.Array,
    h0: Optional[jax.Array] = None,
    reset: Optional[jax.Array] = None,
    reverse: bool = False,
    *,
    block_t: int = 256,
    block_d: int = 128,
    interpret: bool = False,
) -> Tuple[jax.Array, jax.Array]:
    """Pallas TPU linear scan with a custom VJP (backward = same kernel, reversed).

    ``block_t`` must be a multiple of 8; ``block_d`` a multiple of 128 on TPU (a
    ``D`` not above ``block_d`` is one full-width block).
    """
    check_tiling(a.shape[2], int(block_t), int(block_d))
    return run_with_linear_vjp(_pallas_core, "linear_scan_pallas", a, b, h0, reset, reverse,
                               block_t=int(block_t), block_d=int(block_d), interpret=bool(interpret))
