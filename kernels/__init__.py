"""Recurrence kernels, installed as ``birdie_jax.kernels``."""
