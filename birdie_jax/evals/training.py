"""Recall evaluations during training: ``eval.tasks`` run at ``train.eval_every`` and logged
as ``eval/<task>`` (the task's headline number) to metrics.jsonl and TensorBoard."""

from __future__ import annotations

from flax import nnx

from birdie_jax.evals.evaluator import Evaluator
from birdie_jax.evals.runner import get_task, headline, run_defaults, run_suite
from birdie_jax.prompt_format import training_format


class RecallEvaluation:
    """The run's ``eval`` section, checked when training starts (an unknown task fails then)."""

    def __init__(self, cfg, tokenizer, documents):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.tasks = tuple(cfg.eval.tasks)
        for name in self.tasks:
            get_task(name)
        self._documents = documents

    @property
    def documents(self):
        if not self._documents:  # a generated corpus: passages come from the built-in text
            from birdie_jax.data.corpus import load_documents  # noqa: PLC0415

            self._documents = load_documents("builtin")
        return self._documents

    def __call__(self, graphdef, params) -> dict[str, float]:
        model = nnx.merge(graphdef, params)
        model.prompt_format = training_format(self.cfg)
        evaluator = Evaluator(model, self.tokenizer, batch_size=self.cfg.data.batch_size, progress=False)
        e = self.cfg.eval
        needs_text = any(get_task(name).needs_documents for name in self.tasks)
        documents = self.documents if needs_text else ()
        results = run_suite(self.tasks, evaluator, documents=documents, defaults=run_defaults(self.cfg),
                            num_examples=e.num_examples, seed=e.seed)
        return {f"eval/{name}": headline(name, result) for name, result in results.items()}
