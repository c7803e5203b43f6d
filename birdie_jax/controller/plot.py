"""``birdie-jax plot-mixture RUN_DIR``: per objective class, validation loss, greedy accuracy and
sampling probability against step (like the paper's Figure 5), from ``RUN_DIR/metrics.jsonl``.

Reads the keys :meth:`BirdieController.metrics` writes at evaluation steps —
``mixture/loss/<class>`` and ``mixture/prob/<class>`` — plus ``val_accuracy/<class>`` where
the training loop records it. Writes ``RUN_DIR/mixture.png``.
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from birdie_jax.errors import BirdieError  # noqa: E402

_PANELS = (("mixture/loss/", "validation loss (nats/token)"),
           ("val_accuracy/", "greedy accuracy"),
           ("mixture/prob/", "sampling probability"))


def _series(records: list[dict], prefix: str) -> dict[str, list[tuple[int, float]]]:
    """{class: [(step, value), …]} for keys ``<prefix><class>`` (no further '/' in the class)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for key, value in record.items():
            if key.startswith(prefix) and "/" not in key[len(prefix):] and isinstance(value, (int, float)):
                out.setdefault(key[len(prefix):], []).append((int(record.get("step", 0)), float(value)))
    return out


def plot_mixture(run_dir: str, path: str | None = None) -> str:
    """Draws the mixture figure of a run; returns the PNG path (default ``RUN_DIR/mixture.png``).

    Raises:
      BirdieError: no ``metrics.jsonl`` in ``run_dir``, or it holds no mixture records.
    """
    from birdie_jax.training.metrics import read_metrics

    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(metrics_path):
        raise BirdieError(f"no metrics.jsonl in {run_dir!r}")
    records = read_metrics(metrics_path)
    series = [_series(records, prefix) for prefix, _ in _PANELS]
    if not series[0] and not series[2]:
        raise BirdieError(f"{metrics_path} has no mixture records (mixture/loss/<class>, mixture/prob/<class>); "
                          "was the run trained with mixture=birdie?")
    classes = list(dict.fromkeys([c for s in series for c in s]))
    colors = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(classes)}
    fig, axes = plt.subplots(3, 1, figsize=(8, 9), dpi=110, sharex=True)
    for ax, (prefix, label), data in zip(axes, _PANELS, series):
        for c in classes:
            if c in data:
                steps, values = zip(*sorted(data[c]))
                style = dict(where="post") if prefix == "mixture/prob/" else {}
                draw = ax.step if prefix == "mixture/prob/" else ax.plot
                draw(steps, values, label=c, color=colors[c], lw=1.4, marker=None if style else "o", ms=3, **style)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if not data:
            ax.text(0.5, 0.5, f"no {prefix}<class> records", transform=ax.transAxes, ha="center", va="center",
                    color="gray")
    axes[0].set_title(f"Birdie mixture: {os.path.basename(os.path.abspath(run_dir))}")
    axes[-1].set_xlabel("step")
    if classes:
        handles = [Line2D([], [], color=colors[c], lw=2) for c in classes]
        fig.legend(handles, classes, loc="upper center", ncol=min(len(classes), 7), bbox_to_anchor=(0.5, 1.0),
                   frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path = path or os.path.join(run_dir, "mixture.png")
    fig.savefig(path)
    plt.close(fig)
    return path


def add_plot_mixture_parser(subparsers) -> argparse.ArgumentParser:
    """Adds ``plot-mixture RUN_DIR [--output PNG]`` to a ``birdie-jax`` subparsers object."""
    p = subparsers.add_parser("plot-mixture", help="plot per-class validation loss, accuracy and sampling "
                              "probability of a Birdie run (RUN_DIR/mixture.png)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder holding metrics.jsonl")
    p.add_argument("--output", default=None, help="PNG path (default: RUN_DIR/mixture.png)")
    return p


def run_plot_mixture(args: argparse.Namespace) -> int:
    """Handler for ``plot-mixture``: prints the PNG path; problems raise :class:`BirdieError`
    (the CLI prints ``error: …`` and exits 2)."""
    print(plot_mixture(args.run_dir, args.output))
    return 0
