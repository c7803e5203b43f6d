"""Mamba-2's state-space duality (SSD) recurrence: a chunked kernel and its oracle.

``ssd(x, dt, A, B, C, *, D=None, initial_state=None, reset=None, chunk_size=256,
implementation=None)`` returns ``(y, final_state)``; see :mod:`birdie_jax.kernels.ssd.api`.
``ssd_step`` is the one-token decode step.
"""

from .api import DEFAULT_IMPLEMENTATIONS, IMPLEMENTATION_NAMES, ssd
from .reference import heads_from_groups, ssd_reference, ssd_step
from .xla import segsum, ssd_chunked

__all__ = ["DEFAULT_IMPLEMENTATIONS", "IMPLEMENTATION_NAMES", "heads_from_groups", "segsum", "ssd", "ssd_chunked", "ssd_reference", "ssd_step"]
