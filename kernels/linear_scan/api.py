"""Public entry point: :func:`linear_scan`, dispatching to one implementation.

Implementations (see ``IMPLEMENTATIONS``):

- ``"reference"``: sequential fp32 ``lax.scan`` oracle (tests only; slow).
- ``"scan"``: ``lax.scan`` over time, ``unroll`` from the backend config.
- ``"associative"``: ``lax.associative_scan`` (log depth, ~2x the work).
- ``"chunked"``: two vectorised passes over time chunks (the CPU default).
- ``"pallas"``: Pallas TPU kernel with an fp32 VMEM carry (TPU only).

Axis legend: ``B`` batch, ``T`` time, ``D`` channels.
"""

import warnings
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from . import reference, xla
from .config import LinearScanConfig, default_config

Implementation = Union[None, str, Sequence[str]]

IMPLEMENTATION_NAMES: Tuple[str, ...] = ("reference", "scan", "associative", "chunked", "pallas")

# Default per backend.
# - cpu: "chunked", measured by tools/bench_scan.py (docs/benchmarks.md): ~1x of copy
#   bandwidth forward at B=8, T=4096, D=512 f32, against ~0.3x for lax.scan, whose
#   cost is per-iteration latency of 4096 tiny [B, D] steps; associative_scan moves
#   ~log2(T) full arrays.
# - tpu: "pallas": the state stays in VMEM and a, b, h each cross HBM once (Griffin,
#   arXiv 2402.19427, found a Pallas scan beats lax.scan and associative_scan on TPU;
#   recurrentgemma defaults to it there).
# - gpu: "associative" (not measured here: no GPU was available). Public evidence
#   (rlax PR #168, ~4.5x over a loop for long T; proger/accelerated-scan) favours
#   associative_scan on GPU: it is a handful of large fully parallel kernels, whereas
#   "scan" and "chunked" are while loops of 2C + T/C (or T) small kernels, each paying
#   launch and loop-condition latency on GPU. Revisit with tools/bench_scan.py on a GPU.
_BACKEND_DEFAULT: Dict[str, str] = {"cpu": "chunked", "gpu": "associative", "tpu": "pallas"}
_FALLBACK_DEFAULT = "chunked"


class ImplementationUnavailableError(RuntimeError):
    """The requested implementation cannot run on the current backend."""


def is_available(name: str, backend: Optional[str] = None) -> bool:
    """Whether implementation ``name`` can run on ``backend`` (default: the current one)."""
    backend = backend or jax.default_backend()
    _check_name(name)
    if name == "pallas":
        if backend != "tpu":
            return False
        try:
            from . import pallas_tpu  # noqa: F401
        except ImportError:
            return False
    return True


def _resolve(name: str, config: LinearScanConfig) -> Callable[..., Tuple[jax.Array, jax.Array]]:
    if name == "reference":
        return reference.linear_scan_reference
    if name == "scan":
        return lambda a, b, h0, reset, reverse: xla.linear_scan_scan(
            a, b, h0, reset, reverse, unroll=config.scan_unroll
        )
    if name == "associative":
        return xla.linear_scan_associative
    if name == "chunked":
        return lambda a, b, h0, reset, reverse: xla.linear_scan_chunked(
            a, b, h0, reset, reverse, chunk_size=config.chunk_size, unroll=config.chunk_unroll
        )
    if name == "pallas":
        from . import pallas_tpu

        return lambda a, b, h0, reset, reverse: pallas_tpu.linear_scan_pallas(
            a, b, h0, reset, reverse, block_t=config.block_t, block_d=config.block_d
        )
    raise AssertionError(name)


def _check_name(name) -> str:
    if not isinstance(name, str) or name not in IMPLEMENTATION_NAMES:
        raise ValueError(
            f"linear_scan: unknown implementation {name!r}; valid names are "
            f"{', '.join(IMPLEMENTATION_NAMES)}"
        )
    return name


def default_implementation(backend: Optional[str] = None) -> str:
    """The implementation ``implementation=None`` picks on ``backend``."""
    backend = backend or jax.default_backend()
    name = _BACKEND_DEFAULT.get(backend, _FALLBACK_DEFAULT)
    if not is_available(name, backend):
        return _FALLBACK_DEFAULT
    return name


def _fmt(shape) -> str:
    return "(" + ",".join(str(int(s)) for s in shape) + ")"


def _validate(a, b, h0, reset) -> None:
    if a.ndim != 3:
        raise ValueError(
            f"linear_scan: a must be [batch, time, channels] (3-D), got shape {_fmt(a.shape)}"
        )
    if b.shape != a.shape:
        raise ValueError(f"linear_scan: a has shape {_fmt(a.shape)} but b has {_fmt(b.shape)}")
    batch, steps, channels = a.shape
    if steps < 1:
        raise ValueError(f"linear_scan: time axis of a and b is empty: shape {_fmt(a.shape)}")
    for name, x in (("a", a), ("b", b)):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"linear_scan: {name} must be floating point, got {x.dtype}")
    if h0 is not None:
        if h0.shape != (batch, channels):
            raise ValueError(
                f"linear_scan: h0 has shape {_fmt(h0.shape)} but a has {_fmt(a.shape)}; "
                f"expected h0 of shape (batch, channels) = {_fmt((batch, channels))}"
            )
        if not jnp.issubdtype(h0.dtype, jnp.floating):
            raise TypeError(f"linear_scan: h0 must be floating point, got {h0.dtype}")
    if reset is not None:
        if reset.shape != (batch, steps):
            raise ValueError(
                f"linear_scan: reset has shape {_fmt(reset.shape)} but a has {_fmt(a.shape)}; "
                f"expected reset of shape (batch, time) = {_fmt((batch, steps))}"
            )
        if reset.dtype != np.bool_:
            raise TypeError(f"linear_scan: reset must be boolean, got {reset.dtype}")


def linear_scan(
    a: jax.Array,
    b: jax.Array,
    *,
    h0: Optional[jax.Array] = None,
    reset: Optional[jax.Array] = None,
    reverse: bool = False,
    implementation: Implementation = None,
) -> Tuple[jax.Array, jax.Array]:
    """Linear recurrence ``h_t = a_t * h_{t-1} + b_t`` over ``[B, T, D]`` arrays.

    Accumulates in float32 whatever the input dtype.

    Args:
      a: ``[B, T, D]`` decay (any float dtype).
      b: ``[B, T, D]`` input (any float dtype; sets the dtype of ``h``).
      h0: ``[B, D]`` initial state; zeros if None.
      reset: ``[B, T]`` bool. Where True the recurrence restarts: ``h_t = b_t`` (the
        carry is dropped, as if ``a_t = 0``); ``h0`` does not enter if the first
        processed step resets.
      reverse: run from the last step to the first: ``h_t = a_t * h_{t+1} + b_t``, with
        ``h0`` entering at ``t = T-1``.
      implementation: None picks the backend default (see ``default_implementation``);
        a name forces that implementation (raising if it cannot run here); a list or
        tuple of names tries them in order, warning when one is unavailable on the
        backend and falling back to the next.

    Returns:
      ``(h, h_last)``: ``h`` ``[B, T, D]`` in the dtype of ``b`` and ``h_last`` ``[B, D]``
      in float32, the state after the final step (``h[:, -1]`` forward, ``h[:, 0]``
      reverse).

    Raises:
      ValueError: bad shapes, or an unknown implementation name.
      TypeError: non-float ``a``/``b``/``h0`` or non-bool ``reset``.
      ImplementationUnavailableError: no requested implementation runs on this backend.
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    h0 = None if h0 is None else jnp.asarray(h0)
    reset = None if reset is None else jnp.asarray(reset)
    _validate(a, b, h0, reset)
    reverse = bool(reverse)

    backend = jax.default_backend()
    if implementation is None:
        candidates, strict = [default_implementation(backend)], True
    elif isinstance(implementation, str):
        candidates, strict = [_check_name(implementation)], True
    elif isinstance(implementation, (list, tuple)):
        if not implementation:
            raise ValueError(
                "linear_scan: implementation is an empty sequence; valid names are "
                f"{', '.join(IMPLEMENTATION_NAMES)}"
            )
        candidates, strict = [_check_name(n) for n in implementation], False
    else:
        raise ValueError(
            f"linear_scan: implementation must be None, a name or a list of names, got "
            f"{implementation!r}; valid names are {', '.join(IMPLEMENTATION_NAMES)}"
        )

    config = default_config(backend)
    for name in candidates:
        if not is_available(name, backend):
            message = f"linear_scan: implementation {name!r} is not available on backend {backend!r}"
            if strict:
                raise ImplementationUnavailableError(message)
            warnings.warn(message + "; trying the next one", RuntimeWarning, stacklevel=2)
            continue
        h, h_last = _resolve(name, config)(a, b, h0, reset, reverse)
        return h.astype(b.dtype), h_last.astype(jnp.float32)
    raise ImplementationUnavailableError(
        f"linear_scan: none of the implementations {list(candidates)} is available on "
        f"backend {backend!r}"
    )
