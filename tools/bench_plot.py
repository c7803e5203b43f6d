"""Figures of the benchmark tools: headless matplotlib axes, and saving a figure as PNG."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def new_figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (7, 4.5), **kw):
    """``(figure, axes)`` at the tools' usual size and resolution."""
    return plt.subplots(rows, cols, figsize=size, dpi=110, **kw)


def save_figure(fig, path: str) -> None:
    """Lays out ``fig``, writes it to ``path`` (creating the folder), closes it and says so."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")
