"""Recurrence kernels, installed as ``birdie_jax.kernels``."""

from .linear_scan import linear_scan

__all__ = ["linear_scan"]
