"""Pallas GPU kernel (Triton lowering) for chunked (prefix) linear attention ("pallas" on GPU).

GPU grid programs run in parallel and carry no state, so each program owns one (batch, head)
for the whole sequence: grid ``(batch, heads)``. It walks the chunks of C tokens in order
(:func:`.pallas_common.chunk_step`: the masked kernel matrix inside the chunk on tensor cores,
the carried feature-sum state applied to the tokens of its run, the state update), with the
numerator and denominator states (split into the 1 / x / x⊗x blocks of φ) in registers.

Block rules (Triton): C, f and p are powers of two and at least 16 (the smallest ``tl.dot``
tile; Based uses f = 16). Backward: the documented XLA backward of :mod:`.pallas_common`.
Verified in interpret mode and by lowering for CUDA without a GPU; it has not run on GPU
hardware in this project, so it is opt-in (docs/kernels.md). The Triton backend of Pallas is
deprecated from JAX 0.11 (still present through 0.12).
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from birdie_jax.kernels.dispatch import check_triton_tiles

from .pallas_common import (DEN_WIDTH, VEC_COLUMNS, PassInputs, Split, chunk_step, output_shapes, state_specs,
                            with_xla_backward)
from .reference import State

_F32 = jnp.float32


def _kernel(q_ref, k_ref, vn_ref, vd_ref, vec_ref, *refs, f: int, c: int, chunks: int, strict: bool):
    init, (num_ref, den_ref), final = refs[0:6], refs[6:8], refs[8:14]

    def load(group):
        s0, s1, s2 = group
        return s0[...], s1[...], tuple(s2[i, :, :] for i in range(f))

    def store(group, state):
        s0, s1, s2 = state
        group[0][...], group[1][...] = s0, s1
        for i in range(f):
            group[2][i, :, :] = s2[i]

    def body(n, states):
        rows = pl.ds(n * c, c)
        column = lambda ref, i: ref[rows, pl.ds(i, 1)]  # noqa: E731 - [c 1]
        num, den, num_state, den_state = chunk_step(
            q_ref[rows, :], k_ref[rows, :], [column(q_ref, i) for i in range(f)],
            [column(k_ref, i) for i in range(f)], vn_ref[rows, :], vd_ref[rows, :], column(vec_ref, 0),
            column(vec_ref, 1), column(vec_ref, 2), vec_ref[pl.ds(n * c, 1), pl.ds(3, 1)], *states, strict=strict)
        num_ref[rows, :] = num
        den_ref[rows, :] = den
        return num_state, den_state

    num_state, den_state = lax.fori_loop(0, chunks, body, (load(init[0:3]), load(init[3:6])))
    store(final[0:3], num_state)
    store(final[3:6], den_state)


def _forward(inputs: PassInputs, strict: bool, *, c: int, interpret: bool):
    batch, heads, padded, f = inputs.q.shape
    p = inputs.vn.shape[-1]
    seq = lambda last: pl.BlockSpec((None, None, padded, last), lambda i, j: (i, j, 0, 0))  # noqa: E731
    states = state_specs(f, p)
    outs = pl.pallas_call(
        functools.partial(_kernel, f=f, c=c, chunks=padded // c, strict=strict),
        grid=(batch, heads),
        in_specs=[seq(f), seq(f), seq(p), seq(DEN_WIDTH), seq(VEC_COLUMNS)] + states,
        out_specs=[seq(p), seq(DEN_WIDTH)] + states,
        out_shape=output_shapes(batch, heads, padded, f, p),
        compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=1),
        interpret=interpret,
        name="linear_attention_chunk_gpu_strict" if strict else "linear_attention_chunk_gpu",
    )(inputs.q, inputs.k, inputs.vn, inputs.vd, inputs.vec, *inputs.num_state, *inputs.den_state)
    return outs[0], outs[1], Split(*outs[2:5]), Split(*outs[5:8])


@functools.lru_cache(maxsize=None)
def _forward_for(c: int, interpret: bool):
    # One object per setting so the custom_vjp's static argument is stable.
    return functools.partial(_forward, c=c, interpret=interpret)


def check_tiling(chunk_size: int, key_dim: int, value_dim: int) -> None:
    """Raises ImplementationUnavailableError for sizes the GPU kernel cannot tile."""
    check_triton_tiles("linear_attention", {"chunk_size": chunk_size, "key width f": key_dim, "value width p": value_dim})


def linear_attention_pallas(q, k, v, k_enc=None, v_enc=None, encoder_mask=None, segment_ids=None,
                            initial_state: Optional[State] = None, eps: float = 1e-12, *, chunk_size: int = 64,
                            interpret: bool = False):
    """Chunked (prefix) linear attention on GPU; same arguments and results as ``linear_attention_chunked``."""
    check_tiling(int(chunk_size), q.shape[-1], v.shape[-1])
    c = int(chunk_size)
    if segment_ids is None:
        segment_ids = jnp.ones(q.shape[:2], jnp.int32)
    with jax.named_scope("linear_attention_pallas_gpu"):
        return with_xla_backward(_forward_for(c, bool(interpret)), c, q, k, v, k_enc, v_enc, encoder_mask,
                                 segment_ids, initial_state, eps)
