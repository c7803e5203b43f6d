"""Runs tasks by name on a model and writes ``<task>.json`` and ``<task>.png``.

``run_task(name, evaluator, out_dir=..., **knobs)`` is the shared loop behind
``birdie-jax eval TASK`` and ``eval.tasks`` during training; ``run_suite`` runs several
tasks (``eval all``: every task at its small default size).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from birdie_jax.analysis.common import figure, save_figure, write_json
from birdie_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    evaluate: Callable  # (evaluator, **knobs) -> result dict
    headline: str  # the result key logged as the task's single number
    plot: Callable | None = None  # (result, ax) -> None
    write_png: Callable | None = None  # (result, out_dir, name) -> path
    needs_documents: bool = False


def _tasks() -> dict[str, Task]:
    from birdie_jax.evals import copy, infilling, jrt, mqar, passkey, phonebook, set_disjointness, squad  # noqa

    return {t.name: t for t in (
        Task("mqar", mqar.evaluate_mqar, "accuracy", mqar.plot_mqar),
        Task("set_disjointness", set_disjointness.evaluate_set_disjointness, "accuracy",
             set_disjointness.plot_set_disjointness),
        Task("phonebook", phonebook.evaluate_phonebook, "digit_accuracy", phonebook.plot_phonebook),
        Task("squad", squad.evaluate_squad, "contains", squad.plot_squad, needs_documents=True),
        Task("infilling", infilling.evaluate_infilling, "accuracy", infilling.plot_infilling, needs_documents=True),
        Task("jrt", jrt.evaluate_jrt, "twice", jrt.plot_jrt, needs_documents=True),
        Task("passkey", passkey.evaluate_passkey, "mean_accuracy", write_png=passkey.write_passkey_png),
        Task("copy", copy.evaluate_copy, "accuracy", write_png=copy.write_copy_png),
    )}


TASK_NAMES = ("mqar", "set_disjointness", "phonebook", "squad", "infilling", "jrt", "passkey", "copy")


def get_task(name: str) -> Task:
    tasks = _tasks()
    if name not in tasks:
        raise DataError(f"unknown eval task {name!r}; choose one of {', '.join(TASK_NAMES)} or all")
    return tasks[name]


def headline(name: str, result: dict) -> float:
    """The task's single summary number (for logs and metrics)."""
    value = result[get_task(name).headline]
    return float(value[0] if isinstance(value, list) else value)


def paired_bars(ax, names: Sequence[str], series: dict[str, Sequence[float]]) -> None:
    """Side-by-side bars: one group per name, one bar per series."""
    import numpy as np  # noqa: PLC0415

    x = np.arange(len(names))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(x, names)


def run_defaults(cfg) -> dict[str, dict]:
    """Per-task knobs that follow a run's config: MQAR and set disjointness over the run's
    ``generated.vocab_size``, and at its own (T, n) / (|A|, |B|) when it was trained on that task."""
    g = cfg.generated
    knobs = {"mqar": {"vocab_size": g.vocab_size}, "set_disjointness": {"vocab_size": g.vocab_size}}
    if cfg.data.corpus == "mqar":
        knobs["mqar"]["slices"] = ((g.mqar_seq_len, g.mqar_num_pairs),)
    if cfg.data.corpus == "set_disjointness":
        knobs["set_disjointness"]["sizes"] = (tuple(g.set_sizes), tuple(g.set_sizes)[::-1])
    return knobs


def run_task(name: str, evaluator, *, out_dir: str | None = None, documents: Sequence[str] = (),
             **knobs) -> dict:
    """Evaluates one task; with ``out_dir``, writes ``<name>.json`` and ``<name>.png`` there."""
    task = get_task(name)
    if task.needs_documents and not documents and not knobs.get("qa_file"):
        raise DataError(f"eval task {name} needs documents (a corpus) to build its passages")
    tick = time.perf_counter()
    result = task.evaluate(evaluator, documents=documents, **knobs)
    fmt = evaluator.format
    result = {"task": name, "prompt_as_prefix": fmt.as_prefix, "paradigm": fmt.paradigm, **result,
              "seconds": round(time.perf_counter() - tick, 2)}  # a task's own paradigm (copy) wins
    result.pop("files", None)
    if out_dir is not None:
        json_path = write_json(out_dir, name, result)
        if task.write_png is not None:
            png = task.write_png(result, out_dir, name)
        else:
            fig, ax = figure()
            task.plot(result, ax)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
            png = save_figure(fig, out_dir, name)
        result["files"] = {"json": json_path, "png": png}
    return result


def run_suite(names: Sequence[str], evaluator, *, out_dir: str | None = None, documents: Sequence[str] = (),
              defaults: dict[str, dict] | None = None, **knobs) -> dict[str, dict]:
    """Several tasks (``["all"]``: every task) at their default sizes, then ``defaults[task]``
    (e.g. :func:`run_defaults`), overridden by ``knobs``."""
    names = list(TASK_NAMES) if list(names) == ["all"] else list(names)
    for name in names:
        get_task(name)
    defaults = defaults or {}
    return {name: run_task(name, evaluator, out_dir=out_dir, documents=documents,
                           **{**defaults.get(name, {}), **knobs}) for name in names}
