"""Public entry point: :func:`linear_scan`, dispatching to one implementation.

Implementations (see ``IMPLEMENTATION_NAMES``):

- ``"reference"``: sequential fp32 ``lax.scan`` oracle (tests only; slow).
- ``"scan"``: ``lax.scan`` over time, ``unroll`` from the backend config.
- ``"associative"``: ``lax.associative_scan`` (log depth, ~2x the work).
- ``"chunked"``: two vectorised passes over time chunks.
- ``"pallas"``: the backend's Pallas kernel, opt-in: Mosaic on TPU (``pallas_tpu``, fp32
  VMEM carry), Triton lowering on GPU (``pallas_gpu``, carry in registers). No kernel on CPU.

The default per backend is the table ``DEFAULT_IMPLEMENTATIONS`` (docs/kernels.md).

Axis legend: ``B`` batch, ``T`` time, ``D`` channels.
"""

from typing import Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from birdie_jax.kernels import dispatch
from birdie_jax.kernels.dispatch import Implementation, ImplementationUnavailableError

from . import reference, xla
from .config import LinearScanConfig, default_config

IMPLEMENTATION_NAMES: Tuple[str, ...] = ("reference", "scan", "associative", "chunked", "pallas")

# The default per backend: only implementations verified on that backend (kernels/dispatch.py).
# - cpu: "chunked", measured by tools/bench_scan.py (docs/benchmarks.md): ~1x of copy
#   bandwidth forward at B=8, T=4096, D=512 f32, against ~0.3x for lax.scan (per-step
#   latency of 4096 tiny [B, D] steps) and associative_scan (~log2(T) full arrays).
# - gpu: "associative" (XLA; not measured here: no GPU was available). Public evidence
#   (rlax PR #168, ~4.5x over a loop for long T; proger/accelerated-scan) favours it on
#   GPU: a handful of large parallel kernels, where "scan" and "chunked" are while loops
#   of small kernels each paying launch latency.
# - tpu: "chunked" (XLA). The Pallas TPU kernel is opt-in until tools/check_kernels.py has
#   passed on a TPU (it has never run on one; it lowers for TPU, tests/test_pallas_lowering.py).
DEFAULT_IMPLEMENTATIONS: Dict[str, str] = {"cpu": "chunked", "gpu": "associative", "tpu": "chunked"}
_FALLBACK_DEFAULT = "chunked"

__all__ = ["DEFAULT_IMPLEMENTATIONS", "IMPLEMENTATION_NAMES", "ImplementationUnavailableError",
           "default_implementation", "is_available", "linear_scan", "pallas_module"]


_DISPATCH = dispatch.KernelDispatch("linear_scan", __package__, IMPLEMENTATION_NAMES, DEFAULT_IMPLEMENTATIONS,
                                    _FALLBACK_DEFAULT)
default_implementation = _DISPATCH.default  # the table above, per backend name
pallas_module = _DISPATCH.pallas_module  # pallas_tpu / pallas_gpu, or ImplementationUnavailableError


def is_available(name: str, backend: Optional[str] = None) -> bool:
    """Whether implementation ``name`` can run on ``backend`` (default: the current one)."""
    dispatch.check_name("linear_scan", name, IMPLEMENTATION_NAMES)
    return _DISPATCH.unavailable(name, backend or jax.default_backend()) is None


def _resolve(name: str, config: LinearScanConfig, backend: str) -> Callable[..., Tuple[jax.Array, jax.Array]]:
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
        kernel = pallas_module(backend).linear_scan_pallas
        return lambda a, b, h0, reset, reverse: kernel(
            a, b, h0, reset, reverse, block_t=config.block_t, block_d=config.block_d
        )
    raise AssertionError(name)


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
      implementation: None picks the backend default (``DEFAULT_IMPLEMENTATIONS``); a
        name forces that implementation (raising if it cannot run here; ``"pallas"`` is
        the backend's Pallas kernel); a list or tuple of names tries them in order,
        warning when one is unavailable on the backend and falling back to the next.

    Returns:
      ``(h, h_last)``: ``h`` ``[B, T, D]`` in the dtype of ``b`` and ``h_last`` ``[B, D]``
      in float32, the state after the final step (``h[:, -1]`` forward, ``h[:, 0]``
      reverse).

    Raises:
      ValueError: bad shapes; ``ConfigError`` (a ValueError) for an unknown
        implementation name.
      TypeError: non-float ``a``/``b``/``h0`` or non-bool ``reset``.
      ImplementationUnavailableError: no requested implementation runs on this backend,
        or the Pallas kernel cannot tile these shapes with its block sizes (the message
        names the implementation to use instead).
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    h0 = None if h0 is None else jnp.asarray(h0)
    reset = None if reset is None else jnp.asarray(reset)
    _validate(a, b, h0, reset)
    reverse = bool(reverse)

    backend = jax.default_backend()
    name = _DISPATCH.choose(implementation, backend)
    h, h_last = _resolve(name, default_config(backend), backend)(a, b, h0, reset, reverse)
    return h.astype(b.dtype), h_last.astype(jnp.float32)
