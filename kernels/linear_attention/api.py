"""Public entry point: :func:`linear_attention`, Based / prefix linear attention (PLA).

Implementations (see ``IMPLEMENTATION_NAMES``):

- ``"reference"``: sequential fp32 ``lax.scan`` (tests only; slow, O(t²) prefix term).
- ``"quadratic"``: one masked kernel matrix per row (O(t²) memory).
- ``"chunked"``: kernel matrices inside chunks, (S, z) carried across (the default).
- ``"recurrent"``: per-position feature cumsums by ``linear_scan`` (O(t·F·p) memory).

- ``"pallas"``: the backend's Pallas kernel of the chunked form, opt-in: Mosaic on TPU
  (``pallas_tpu``), Triton lowering on GPU (``pallas_gpu``); XLA backward. No kernel on CPU.

The default per backend is the table ``DEFAULT_IMPLEMENTATIONS`` (docs/kernels.md).
Axis legend: b batch, t time, h heads, f key width, F = 1 + f + f², p value width.
"""

from typing import Dict, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from birdie_jax.kernels import dispatch

from . import reference, xla
from .reference import State, num_features

IMPLEMENTATION_NAMES: Tuple[str, ...] = ("reference", "quadratic", "chunked", "recurrent", "pallas")
# The default per backend: only implementations verified there (kernels/dispatch.py). The
# Pallas kernels are opt-in until tools/check_kernels.py has passed on that hardware.
DEFAULT_IMPLEMENTATIONS: Dict[str, str] = {"cpu": "chunked", "gpu": "chunked", "tpu": "chunked"}
DEFAULT_IMPLEMENTATION = "chunked"  # any other backend


_DISPATCH = dispatch.KernelDispatch("linear_attention", __package__, IMPLEMENTATION_NAMES, DEFAULT_IMPLEMENTATIONS,
                                    DEFAULT_IMPLEMENTATION)
default_implementation = _DISPATCH.default  # the table above, per backend name
pallas_module = _DISPATCH.pallas_module  # pallas_tpu / pallas_gpu, or ImplementationUnavailableError
DEFAULT_EPS = 1e-12  # the reference's eps (jrt.md §1.1)


def _fmt(shape) -> str:
    return "(" + ",".join(str(int(s)) for s in shape) + ")"


def _validate(q, k, v, k_enc, v_enc, encoder_mask, segment_ids, initial_state, chunk_size) -> None:
    if q.ndim != 4:
        raise ValueError(f"linear_attention: q must be [batch, time, heads, key_dim] (4-D), got {_fmt(q.shape)}")
    b, t, h, f = q.shape
    if t < 1:
        raise ValueError(f"linear_attention: the time axis of q is empty: shape {_fmt(q.shape)}")
    if k.shape != q.shape:
        raise ValueError(f"linear_attention: k has shape {_fmt(k.shape)} but q has {_fmt(q.shape)}")
    if v.ndim != 4 or v.shape[:3] != (b, t, h):
        raise ValueError(f"linear_attention: v has shape {_fmt(v.shape)}; expected (batch, time, heads, value_dim) "
                         f"with batch, time, heads = {b}, {t}, {h}")
    if (k_enc is None) != (v_enc is None) or (k_enc is None) != (encoder_mask is None):
        raise ValueError("linear_attention: give k_enc, v_enc and encoder_mask together (or none of them)")
    if k_enc is not None:
        if k_enc.shape != q.shape or v_enc.shape != v.shape:
            raise ValueError(f"linear_attention: k_enc {_fmt(k_enc.shape)} / v_enc {_fmt(v_enc.shape)} must match "
                             f"k {_fmt(k.shape)} / v {_fmt(v.shape)}")
        if encoder_mask.shape != (b, t) or encoder_mask.dtype != np.bool_:
            raise ValueError(f"linear_attention: encoder_mask must be bool (batch, time) = {_fmt((b, t))}, got "
                             f"{encoder_mask.dtype}{_fmt(encoder_mask.shape)}")
    if segment_ids is not None and (segment_ids.shape != (b, t) or not jnp.issubdtype(segment_ids.dtype, jnp.integer)):
        raise ValueError(f"linear_attention: segment_ids must be int (batch, time) = {_fmt((b, t))}, got "
                         f"{segment_ids.dtype}{_fmt(segment_ids.shape)}")
    if initial_state is not None:
        S, z = initial_state
        F = num_features(f)
        if S.shape != (b, h, F, v.shape[-1]) or z.shape != (b, h, F):
            raise ValueError(f"linear_attention: initial_state (S, z) has shapes {_fmt(S.shape)}, {_fmt(z.shape)}; "
                             f"expected {_fmt((b, h, F, v.shape[-1]))}, {_fmt((b, h, F))}")
    for name, x in (("q", q), ("k", k), ("v", v), ("k_enc", k_enc), ("v_enc", v_enc)):
        if x is not None and not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"linear_attention: {name} must be floating point, got {x.dtype}")
    if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"linear_attention: chunk_size must be a positive int, got {chunk_size!r}")


def linear_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    k_enc: Optional[jax.Array] = None,
    v_enc: Optional[jax.Array] = None,
    encoder_mask: Optional[jax.Array] = None,
    segment_ids: Optional[jax.Array] = None,
    initial_state: Optional[State] = None,
    eps: float = DEFAULT_EPS,
    chunk_size: int = 64,
    implementation: Union[None, str, Sequence[str]] = None,
) -> Tuple[jax.Array, State]:
    """Causal linear attention with the Taylor feature map, plus an optional prefix term.

    y_i = φ(q_i)·[E_i + Σ_{j≤i} φ(k_j)v_jᵀ] / (φ(q_i)·[e_i + Σ_{j≤i} φ(k_j)] + eps), sums over
    i's packed document, where (E_i, e_i) sums φ(k_enc,j)v_enc,jᵀ, φ(k_enc,j) over every
    encoder position j of that document (jrt.md §1.1). Without ``k_enc`` it is Based.

    Args:
      q, k: [b t h f] raw queries and keys (φ is applied here; do not pre-scale them).
      v: [b t h p] values (sets the output dtype).
      k_enc, v_enc: [b t h f], [b t h p] encoder keys/values, read where ``encoder_mask``.
      encoder_mask: bool [b t], True on prefix (encoder) positions.
      segment_ids: int [b t] packed-document ids, 0 = padding (masked after φ; output 0).
        A document is a run of equal ids. None: one document.
      initial_state: (S float32[b h F p], z float32[b h F]) entering at the first token,
        which continues the row's first document. None: zeros.
      eps: added to the denominator (1e-12 as in the reference).
      chunk_size: C of the chunked form (t need not be a multiple).
      implementation: None (the backend default, ``DEFAULT_IMPLEMENTATIONS``), a name
        (raising if it cannot run here; ``"pallas"`` is the backend's Pallas kernel), or a
        list of names tried in order (warning and falling back when one cannot run).

    Returns:
      (y [b t h p] in the dtype of v, final state (S, z) float32: the last document's
      decoder sums plus its encoder sums, from which :func:`linear_attention_step` decodes).
    """
    q, k, v = map(jnp.asarray, (q, k, v))
    k_enc, v_enc, encoder_mask, segment_ids = (None if x is None else jnp.asarray(x)
                                               for x in (k_enc, v_enc, encoder_mask, segment_ids))
    _validate(q, k, v, k_enc, v_enc, encoder_mask, segment_ids, initial_state, chunk_size)
    if segment_ids is None:
        segment_ids = jnp.ones(q.shape[:2], jnp.int32)
    args = (q, k, v, k_enc, v_enc, encoder_mask, segment_ids, initial_state, eps)
    backend = jax.default_backend()
    name = _DISPATCH.choose(implementation, backend)
    if name == "pallas":
        return pallas_module(backend).linear_attention_pallas(*args, chunk_size=int(chunk_size))
    with jax.named_scope(f"linear_attention_{name}"):
        if name == "reference":
            return reference.linear_attention_reference(*args)
        if name == "quadratic":
            return xla.linear_attention_quadratic(*args)
        if name == "recurrent":
            return xla.linear_attention_recurrent(*args)
        return xla.linear_attention_chunked(*args, chunk_size=int(chunk_size))
