"""Pallas GPU kernel (Triton lowering) for the chunked SSD recurrence ("pallas" on GPU).

GPU grid programs run in parallel and carry no state, so each program owns one (batch,
head) for the whole sequence: grid ``(batch, heads)``. It walks the chunks of Q tokens in
order, each one the intra-chunk quadratic form and state pass of
:func:`.pallas_common.chunk_step` (tensor-core matmuls of [Q, Q], [Q, n] and [Q, p] tiles),
with the [p, n] fp32 state in registers between chunks. Head h reads group ``h // (H/G)``
of B and C through the index map.

Block rules (Triton): Q, p and n are powers of two and at least 16 (the smallest
``tl.dot`` tile). Backward: the documented XLA backward of :mod:`.pallas_common`.
Verified in interpret mode and by lowering for CUDA without a GPU; it has not run on GPU
hardware in this project, so it is opt-in (docs/kernels.md). The Triton backend of Pallas
is deprecated from JAX 0.11 (still present through 0.12).
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from birdie_jax.kernels.dispatch import check_triton_tiles

from .pallas_common import VEC_COLUMNS, KernelInputs, chunk_step, ssd_with_xla_backward

_F32 = jnp.float32


def _kernel(xs_ref, b_ref, c_ref, vec_ref, h0_ref, y_ref, final_ref, *, q: int, chunks: int):
    def body(k, state):
        rows = pl.ds(k * q, q)
        column = lambda j: vec_ref[rows, pl.ds(j, 1)]  # noqa: E731 - [q 1]
        y, state = chunk_step(xs_ref[rows, :], b_ref[rows, :], c_ref[rows, :], column(0), column(1), column(2),
                              column(3), vec_ref[pl.ds(k * q, 1), pl.ds(4, 1)], state)
        y_ref[rows, :] = y
        return state

    final_ref[...] = lax.fori_loop(0, chunks, body, h0_ref[...])


def _forward(inputs: KernelInputs, groups: int, *, q: int, interpret: bool):
    batch, heads, padded, width = inputs.xs.shape
    size = inputs.b.shape[-1]
    per_group = heads // groups
    seq = lambda last: pl.BlockSpec((None, None, padded, last), lambda i, j: (i, j, 0, 0))  # noqa: E731
    grouped = pl.BlockSpec((None, None, padded, size), lambda i, j: (i, lax.div(j, per_group), 0, 0))
    state = pl.BlockSpec((None, None, width, size), lambda i, j: (i, j, 0, 0))
    return pl.pallas_call(
        functools.partial(_kernel, q=q, chunks=padded // q),
        grid=(batch, heads),
        in_specs=[seq(width), grouped, grouped, seq(VEC_COLUMNS), state],
        out_specs=[seq(width), state],
        out_shape=[jax.ShapeDtypeStruct((batch, heads, padded, width), _F32),
                   jax.ShapeDtypeStruct((batch, heads, width, size), _F32)],
        compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=1),
        interpret=interpret,
        name="ssd_chunk_gpu",
    )(*inputs)


@functools.lru_cache(maxsize=None)
def _forward_for(q: int, interpret: bool):
    # One object per setting so the custom_vjp's static argument is stable.
    return functools.partial(_forward, q=q, interpret=interpret)


def check_tiling(chunk_size: int, head_dim: int, state_size: int) -> None:
    """Raises ImplementationUnavailableError for sizes the GPU kernel cannot tile."""
    check_triton_tiles("ssd", {"chunk_size (model.mamba_chunk)": chunk_size, "head_dim (model.mamba_head_dim)": head_dim,
                               "state size (model.mamba_d_state)": state_size})


def ssd_pallas(x, dt, A, B, C, D: Optional[jax.Array] = None, initial_state: Optional[jax.Array] = None,
               reset: Optional[jax.Array] = None, *, chunk_size: int = 256, interpret: bool = False):
    """Chunked SSD on GPU; same arguments and results as :func:`.xla.ssd_chunked`."""
    check_tiling(int(chunk_size), x.shape[-1], B.shape[-1])
    q = int(chunk_size)
    with jax.named_scope("ssd_pallas_gpu"):
        return ssd_with_xla_backward(_forward_for(q, bool(interpret)), q, x, dt, A, B, C, D, initial_state, reset)
