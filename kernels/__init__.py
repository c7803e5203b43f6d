"""Recurrence kernels, installed as ``birdie_jax.kernels``.

``birdie_jax.kernels.linear_scan`` is the function (re-exported from the subpackage of
the same name). Import the subpackage's modules with ``from`` imports, e.g.
``from birdie_jax.kernels.linear_scan import xla``.
"""

from .linear_scan import linear_scan, linear_scan_sharded

__all__ = ["linear_scan", "linear_scan_sharded"]
