"""Pallas TPU (Mosaic) kernel for the chunked SSD recurrence ("pallas" on TPU).

Grid ``(batch, heads, chunks)`` with chunks last ("arbitrary": sequential); each program
is one chunk of Q tokens of one head: the intra-chunk quadratic form and the state pass of
:func:`.pallas_common.chunk_step`, with the [p, n] state carried across chunks in an fp32
VMEM scratch (initialised from the initial state at chunk 0). Head h reads group
``h // (H/G)`` of B and C through the index map (no repeat in memory). The final state is
an output block whose index map ignores the chunk, so it stays resident and is written once
at the last chunk.

Block rules: Q is a multiple of 8 (sublanes); p, n and the 8 ``vec`` columns are whole
dimensions, which Mosaic accepts at any size. Backward: the documented XLA backward of
:mod:`.pallas_common`. Verified in interpret mode and by lowering for TPU without a TPU;
it has not run on TPU hardware in this project, so it is opt-in (docs/kernels.md).
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from birdie_jax.kernels.dispatch import ImplementationUnavailableError

from .pallas_common import VEC_COLUMNS, KernelInputs, chunk_step, ssd_with_xla_backward

_F32 = jnp.float32
_SUBLANES = 8


def _kernel(xs_ref, b_ref, c_ref, vec_ref, h0_ref, y_ref, final_ref, state_ref):
    chunk = pl.program_id(2)

    @pl.when(chunk == 0)
    def _init():
        state_ref[...] = h0_ref[...]

    column = lambda k: vec_ref[:, k:k + 1]  # noqa: E731 - [q 1]
    y, state = chunk_step(xs_ref[...], b_ref[...], c_ref[...], column(0), column(1), column(2), column(3),
                          vec_ref[0:1, 4:5], state_ref[...])
    y_ref[...] = y
    state_ref[...] = state

    @pl.when(chunk == pl.num_programs(2) - 1)
    def _finish():
        final_ref[...] = state


def _forward(inputs: KernelInputs, groups: int, *, q: int, interpret: bool):
    batch, heads, padded, width = inputs.xs.shape
    size = inputs.b.shape[-1]
    per_group = heads // groups
    seq = lambda last: pl.BlockSpec((None, None, q, last), lambda i, j, k: (i, j, k, 0))  # noqa: E731
    grouped = pl.BlockSpec((None, None, q, size), lambda i, j, k: (i, lax.div(j, per_group), k, 0))  # lax.div: no sign op
    state = pl.BlockSpec((None, None, width, size), lambda i, j, k: (i, j, 0, 0))
    return pl.pallas_call(
        _kernel,
        grid=(batch, heads, padded // q),
        in_specs=[seq(width), grouped, grouped, seq(VEC_COLUMNS), state],
        out_specs=[seq(width), state],
        out_shape=[jax.ShapeDtypeStruct((batch, heads, padded, width), _F32),
                   jax.ShapeDtypeStruct((batch, heads, width, size), _F32)],
        scratch_shapes=[pltpu.VMEM((width, size), _F32)],
        compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "arbitrary")),
        interpret=interpret,
        name="ssd_chunk",
    )(*inputs)


@functools.lru_cache(maxsize=None)
def _forward_for(q: int, interpret: bool):
    # One object per setting so the custom_vjp's static argument is stable.
    return functools.partial(_forward, q=q, interpret=interpret)


def chunk_length(length: int, chunk_size: int) -> int:
    """Q for the TPU kernel: ``chunk_size``, or the sequence rounded up to 8 when it is shorter."""
    return min(int(chunk_size), -(-length // _SUBLANES) * _SUBLANES)


def check_tiling(chunk_size: int) -> None:
    """Raises ImplementationUnavailableError for a chunk the TPU kernel cannot tile."""
    if chunk_size % _SUBLANES:
        raise ImplementationUnavailableError(
            f"ssd pallas (TPU): chunk_size={chunk_size} is not a multiple of {_SUBLANES} (TPU sublanes); "
            f"use a chunk_size (model.mamba_chunk) that is, or implementation='chunked'")


def ssd_pallas(x, dt, A, B, C, D: Optional[jax.Array] = None, initial_state: Optional[jax.Array] = None,
               reset: Optional[jax.Array] = None, *, chunk_size: int = 256, interpret: bool = False):
    """Chunked SSD on TPU; same arguments and results as :func:`.xla.ssd_chunked`."""
    check_tiling(int(chunk_size))
    q = chunk_length(x.shape[1], chunk_size)
    with jax.named_scope("ssd_pallas_tpu"):
        return ssd_with_xla_backward(_forward_for(q, bool(interpret)), q, x, dt, A, B, C, D, initial_state, reset)
