"""Linear recurrence h_t = a_t * h_{t-1} + b_t.

``linear_scan(a, b, *, h0=None, reset=None, reverse=False, implementation=None)``
returns ``(h, h_last)``; see :mod:`birdie_jax.kernels.linear_scan.api`.
``linear_scan_sharded(..., mesh=, axis="sequence")`` is the same with the time axis
split over a mesh axis (sequence parallelism); see :mod:`.sharded`.
"""

from .api import (
    DEFAULT_IMPLEMENTATIONS,
    IMPLEMENTATION_NAMES,
    ImplementationUnavailableError,
    default_implementation,
    is_available,
    linear_scan,
)
from .config import LinearScanConfig, default_config
from .reference import linear_scan_reference
from .sharded import linear_scan_sharded

__all__ = [
    "DEFAULT_IMPLEMENTATIONS",
    "IMPLEMENTATION_NAMES",
    "ImplementationUnavailableError",
    "LinearScanConfig",
    "default_config",
    "default_implementation",
    "is_available",
    "linear_scan",
    "linear_scan_reference",
    "linear_scan_sharded",
]
