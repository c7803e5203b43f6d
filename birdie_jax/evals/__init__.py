"""Recall evaluations: one module per task, each a pure seeded generator plus its metric,
run on any model through ``birdie_jax.generate`` / ``birdie_jax.score``.

Tasks: :mod:`~birdie_jax.evals.mqar` (Zoology MQAR), :mod:`~birdie_jax.evals.set_disjointness`,
:mod:`~birdie_jax.evals.phonebook`, :mod:`~birdie_jax.evals.squad` (SQuAD-style QA),
:mod:`~birdie_jax.evals.infilling`, :mod:`~birdie_jax.evals.jrt` (JRT-Prompt harness),
:mod:`~birdie_jax.evals.passkey`, :mod:`~birdie_jax.evals.copy`; metrics in
:mod:`~birdie_jax.evals.metrics`; the shared loop (JSON + PNG) in :mod:`~birdie_jax.evals.runner`::

    ev = Evaluator(model, tokenizer)            # prompt format: as the model was trained
    result = run_task("phonebook", ev, out_dir="out", num_examples=8)
"""

from birdie_jax.evals.evaluator import Evaluator
from birdie_jax.evals.mqar import MQARSlice, mqar_accuracy, mqar_batch, mqar_example, mqar_sequence
from birdie_jax.evals.runner import TASK_NAMES, run_suite, run_task
from birdie_jax.evals.set_disjointness import set_disjointness_batch, set_disjointness_example

__all__ = ["Evaluator", "MQARSlice", "TASK_NAMES", "mqar_accuracy", "mqar_batch", "mqar_example", "mqar_sequence",
           "run_suite", "run_task", "set_disjointness_batch", "set_disjointness_example"]
