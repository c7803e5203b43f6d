"""Recall evaluations: one module per task, each a pure seeded generator plus its metric.

Tasks: :mod:`~birdie_jax.evals.mqar` (Zoology MQAR), :mod:`~birdie_jax.evals.set_disjointness`.
"""

from birdie_jax.evals.mqar import MQARSlice, mqar_accuracy, mqar_batch, mqar_example, mqar_sequence
from birdie_jax.evals.set_disjointness import set_disjointness_batch, set_disjointness_example

__all__ = ["MQARSlice", "mqar_accuracy", "mqar_batch", "mqar_example", "mqar_sequence", "set_disjointness_batch",
           "set_disjointness_example"]
