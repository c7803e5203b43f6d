"""Public entry point: :func:`ssd`, the Mamba-2 state-space recurrence over a sequence.

Implementations (see ``IMPLEMENTATION_NAMES``):

- ``"reference"``: sequential fp32 ``lax.scan``, one token per step (tests only; slow).
- ``"chunked"``: the chunked SSD algorithm in XLA (every backend's default).
- ``"pallas"``: the backend's Pallas kernel, opt-in: Mosaic on TPU (``pallas_tpu``),
  Triton lowering on GPU (``pallas_gpu``); XLA backward. No kernel on CPU.

The default per backend is the table ``DEFAULT_IMPLEMENTATIONS`` (docs/kernels.md).

Axis legend: b batch, l time, h heads, p head width, g groups, n state size.
"""

from typing import Dict, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from birdie_jax.kernels import dispatch
from birdie_jax.kernels.dispatch import ImplementationUnavailableError

from . import reference, xla

IMPLEMENTATION_NAMES: Tuple[str, ...] = ("reference", "chunked", "pallas")
# The default per backend: only implementations verified there (kernels/dispatch.py). The
# Pallas kernels are opt-in until tools/check_kernels.py has passed on that hardware.
DEFAULT_IMPLEMENTATIONS: Dict[str, str] = {"cpu": "chunked", "gpu": "chunked", "tpu": "chunked"}
DEFAULT_IMPLEMENTATION = "chunked"  # any other backend

__all__ = ["DEFAULT_IMPLEMENTATIONS", "IMPLEMENTATION_NAMES", "ImplementationUnavailableError",
           "default_implementation", "pallas_module", "ssd"]


_DISPATCH = dispatch.KernelDispatch("ssd", __package__, IMPLEMENTATION_NAMES, DEFAULT_IMPLEMENTATIONS,
                                    DEFAULT_IMPLEMENTATION)
default_implementation = _DISPATCH.default  # the table above, per backend name
pallas_module = _DISPATCH.pallas_module  # pallas_tpu / pallas_gpu, or ImplementationUnavailableError


def _fmt(shape) -> str:
    return "(" + ",".join(str(int(s)) for s in shape) + ")"


def _validate(x, dt, A, B, C, D, initial_state, reset, chunk_size) -> None:
    if x.ndim != 4:
        raise ValueError(f"ssd: x must be [batch, time, heads, head_dim] (4-D), got shape {_fmt(x.shape)}")
    batch, length, heads, width = x.shape
    if length < 1:
        raise ValueError(f"ssd: the time axis of x is empty: shape {_fmt(x.shape)}")
    if dt.shape != (batch, length, heads):
        raise ValueError(f"ssd: dt has shape {_fmt(dt.shape)}; expected (batch, time, heads) = "
                         f"{_fmt((batch, length, heads))}")
    if A.shape != (heads,):
        raise ValueError(f"ssd: A has shape {_fmt(A.shape)}; expected (heads,) = ({heads},)")
    if B.ndim != 4 or B.shape[:2] != (batch, length):
        raise ValueError(f"ssd: B has shape {_fmt(B.shape)}; expected (batch, time, groups, state) with "
                         f"batch, time = {batch}, {length}")
    if C.shape != B.shape:
        raise ValueError(f"ssd: C has shape {_fmt(C.shape)} but B has {_fmt(B.shape)}")
    groups, size = B.shape[2:]
    if groups < 1 or heads % groups:
        raise ValueError(f"ssd: {heads} heads do not split into {groups} groups (heads must be a multiple)")
    if D is not None and D.shape != (heads,):
        raise ValueError(f"ssd: D has shape {_fmt(D.shape)}; expected (heads,) = ({heads},)")
    if initial_state is not None and initial_state.shape != (batch, heads, width, size):
        raise ValueError(f"ssd: initial_state has shape {_fmt(initial_state.shape)}; expected "
                         f"(batch, heads, head_dim, state) = {_fmt((batch, heads, width, size))}")
    if reset is not None:
        if reset.shape != (batch, length):
            raise ValueError(f"ssd: reset has shape {_fmt(reset.shape)}; expected (batch, time) = "
                             f"{_fmt((batch, length))}")
        if reset.dtype != np.bool_:
            raise TypeError(f"ssd: reset must be boolean, got {reset.dtype}")
    for name, v in (("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C), ("D", D), ("initial_state", initial_state)):
        if v is not None and not jnp.issubdtype(v.dtype, jnp.floating):
            raise TypeError(f"ssd: {name} must be floating point, got {v.dtype}")
    if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"ssd: chunk_size must be a positive int, got {chunk_size!r}")


def ssd(
    x: jax.Array,
    dt: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    *,
    D: Optional[jax.Array] = None,
    initial_state: Optional[jax.Array] = None,
    reset: Optional[jax.Array] = None,
    chunk_size: int = 256,
    implementation: Union[None, str, Sequence[str]] = None,
) -> Tuple[jax.Array, jax.Array]:
    """Runs ``h_t = exp(dt_t·A)·h_{t−1} + dt_t·x_t B_tᵀ``, ``y_t = h_t C_t + D·x_t`` per head.

    Args:
      x: [b l h p] inputs (any float dtype; sets the dtype of ``y``).
      dt: [b l h] step sizes (already positive, e.g. softplus(dt_raw + dt_bias)).
      A: [h] negative decay rates (one scalar per head).
      B, C: [b l g n] input and output projections; head h uses group ⌊h·g/h⌋.
      D: [h] skip connection, or None.
      initial_state: [b h p n] state before the first token (None: zeros). It enters at
        the first token unless that token resets.
      reset: bool [b l]; True where a new packed document starts: the carry is dropped
        before that token (``birdie_jax.models.layers.segment_starts`` gives it).
      chunk_size: Q of the chunked algorithm (the time axis is padded to a multiple).
      implementation: None (the backend default, ``DEFAULT_IMPLEMENTATIONS``), a name
        (raising if it cannot run here; ``"pallas"`` is the backend's Pallas kernel), or a
        list of names tried in order (warning and falling back when one cannot run).

    Returns:
      ``(y, final_state)``: y [b l h p] in the dtype of x; final_state float32 [b h p n],
      the state after the last token. Differentiable in every float argument.

    Raises:
      ValueError: bad shapes, chunk size or implementation name; TypeError: bad dtypes.
      ImplementationUnavailableError: the implementation cannot run on this backend, or
        the Pallas kernel cannot tile these sizes (the message names the alternative).
    """
    x, dt, A, B, C = map(jnp.asarray, (x, dt, A, B, C))
    D = None if D is None else jnp.asarray(D)
    initial_state = None if initial_state is None else jnp.asarray(initial_state)
    reset = None if reset is None else jnp.asarray(reset)
    _validate(x, dt, A, B, C, D, initial_state, reset, chunk_size)
    backend = jax.default_backend()
    name = _DISPATCH.choose(implementation, backend)
    if name == "reference":
        return reference.ssd_reference(x, dt, A, B, C, D, initial_state, reset)
    if name == "pallas":
        kernel = pallas_module(backend).ssd_pallas
        return kernel(x, dt, A, B, C, D, initial_state, reset, chunk_size=int(chunk_size))
    with jax.named_scope("ssd_chunked"):
        return xla.ssd_chunked(x, dt, A, B, C, D, initial_state, reset, chunk_size=int(chunk_size))
