"""Pallas TPU (Mosaic) kernel for chunked (prefix) linear attention ("pallas" on TPU).

Grid ``(batch, heads, chunks)`` with chunks last ("arbitrary": sequential); each program is one
chunk of C tokens of one head (:func:`.pallas_common.chunk_step`: the masked kernel matrix
inside the chunk, the carried feature-sum state applied to the tokens of its run, the state
update). The numerator and denominator states, split into the 1 / x / x⊗x blocks of φ, live in
fp32 VMEM scratch across chunks (initialised at chunk 0); the final-state outputs' index maps
ignore the chunk, so they stay resident and are written at the last chunk.

Block rules: C a multiple of 8 (sublanes); f, p and the 16 / 8 column widths are whole
dimensions. Backward: the documented XLA backward of :mod:`.pallas_common`. Verified in
interpret mode and by lowering for TPU without a TPU; it has not run on TPU hardware in this
project, so it is opt-in (docs/kernels.md).
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from birdie_jax.kernels.dispatch import ImplementationUnavailableError

from .pallas_common import (DEN_WIDTH, VEC_COLUMNS, PassInputs, Split, chunk_step, output_shapes, state_specs,
                            with_xla_backward)
from .reference import State

_F32 = jnp.float32
_SUBLANES = 8


def _kernel(q_ref, k_ref, vn_ref, vd_ref, vec_ref, *refs, f: int, strict: bool):
    init, (num_ref, den_ref), final, scratch = refs[0:6], refs[6:8], refs[8:14], refs[14:20]
    chunk = pl.program_id(2)

    @pl.when(chunk == 0)
    def _init():
        for dst, src in zip(scratch, init):
            dst[...] = src[...]

    def load(group):
        s0, s1, s2 = group
        return s0[...], s1[...], tuple(s2[i] for i in range(f))

    def store(group, state):
        s0, s1, s2 = state
        group[0][...], group[1][...] = s0, s1
        for i in range(f):
            group[2][i] = s2[i]

    column = lambda ref, i: ref[:, i:i + 1]  # noqa: E731 - [c 1]
    num, den, num_state, den_state = chunk_step(
        q_ref[...], k_ref[...], [column(q_ref, i) for i in range(f)], [column(k_ref, i) for i in range(f)],
        vn_ref[...], vd_ref[...], column(vec_ref, 0), column(vec_ref, 1), column(vec_ref, 2), vec_ref[0:1, 3:4],
        load(scratch[0:3]), load(scratch[3:6]), strict=strict)
    num_ref[...], den_ref[...] = num, den
    store(scratch[0:3], num_state)
    store(scratch[3:6], den_state)

    @pl.when(chunk == pl.num_programs(2) - 1)
    def _finish():
        store(final[0:3], num_state)
        store(final[3:6], den_state)


def _forward(inputs: PassInputs, strict: bool, *, c: int, interpret: bool):
    batch, heads, padded, f = inputs.q.shape
    p = inputs.vn.shape[-1]
    seq = lambda last: pl.BlockSpec((None, None, c, last), lambda i, j, k: (i, j, k, 0))  # noqa: E731
    states = state_specs(f, p)
    outs = pl.pallas_call(
        functools.partial(_kernel, f=f, strict=strict),
        grid=(batch, heads, padded // c),
        in_specs=[seq(f), seq(f), seq(p), seq(DEN_WIDTH), seq(VEC_COLUMNS)] + states,
        out_specs=[seq(p), seq(DEN_WIDTH)] + states,
        out_shape=output_shapes(batch, heads, padded, f, p),
        scratch_shapes=[pltpu.VMEM((1, p), _F32), pltpu.VMEM((f, p), _F32), pltpu.VMEM((f, f, p), _F32),
                        pltpu.VMEM((1, DEN_WIDTH), _F32), pltpu.VMEM((f, DEN_WIDTH), _F32),
                        pltpu.VMEM((f, f, DEN_WIDTH), _F32)],
        compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "arbitrary")),
        interpret=interpret,
        name="linear_attention_chunk_strict" if strict else "linear_attention_chunk",
    )(inputs.q, inputs.k, inputs.vn, inputs.vd, inputs.vec, *inputs.num_state, *inputs.den_state)
    return outs[0], outs[1], Split(*outs[2:5]), Split(*outs[5:8])


@functools.lru_cache(maxsize=None)
def _forward_for(c: int, interpret: bool):
    # One object per setting so the custom_vjp's static argument is stable.
    return functools.partial(_forward, c=c, interpret=interpret)


def check_tiling(chunk_size: int) -> None:
    """Raises ImplementationUnavailableError for a chunk the TPU kernel cannot tile."""
    if chunk_size % _SUBLANES:
        raise ImplementationUnavailableError(
            f"linear_attention pallas (TPU): chunk_size={chunk_size} is not a multiple of {_SUBLANES} (TPU "
            f"sublanes); use a chunk_size that is, or implementation='chunked'")


def linear_attention_pallas(q, k, v, k_enc=None, v_enc=None, encoder_mask=None, segment_ids=None,
                            initial_state: Optional[State] = None, eps: float = 1e-12, *, chunk_size: int = 64,
                            interpret: bool = False):
    """Chunked (prefix) linear attention on TPU; same arguments and results as ``linear_attention_chunked``."""
    check_tiling(int(chunk_size))
    c = min(int(chunk_size), -(-q.shape[1] // _SUBLANES) * _SUBLANES)
    if segment_ids is None:
        segment_ids = jnp.ones(q.shape[:2], jnp.int32)
    with jax.named_scope("linear_attention_pallas_tpu"):
        return with_xla_backward(_forward_for(c, bool(interpret)), c, q, k, v, k_enc, v_enc, encoder_mask,
                                 segment_ids, initial_state, eps)
