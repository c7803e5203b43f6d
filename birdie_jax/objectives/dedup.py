"""Arms that coincide at a row length, merged (issue 16).

The row-fit rule (spec §2, :mod:`~birdie_jax.objectives.fitting`) cuts a sample that does
not fit its row: from L text tokens it rebuilds from L' = min(L − 1, ⌊L·budget/total⌋),
until it fits. At a short row (the default ``seq_len`` 256) this collapses length
buckets: every deshuffling sample of 128–256 or 512–1024 tokens is cut to the same 127,
so the two buckets are one configuration under two names.

For the classes whose sample size is a function of the text length L alone (copying,
deshuffling, infilling, autoencoding: :func:`sample_size`), an arm is **row-bound** at a
budget when every L from its ``min_len`` to its ``max_len`` overflows the row: its
length control then has no effect, each of its samples is cut to the longest text the
row holds (:func:`fitted_length`). Two row-bound arms of the same class with the same
other controls (rate, mean span, shuffle, fraction) **coincide**: every length either
can draw, and every length in between, is cut by the same rule to the same length, up
to the rounding of the cut (the fitted lengths of a merged group span at most 2 tokens
at ``seq_len`` 256; tested). Text shorter than an arm's ``min_len`` caps L for both
alike. Selective copying has random sizes, NTP and PLM fill the row anyway: they never
merge.

:func:`merge_coinciding` keeps the first arm of each group (the others' names listed
with it) and sums the group's probability mass, so the mixture and the controller see
distinct configurations only. At the paper's row length (2048) no arm of the grid is
row-bound and the grid is unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from birdie_jax.objectives.arms import AEArm, Arm, CopyArm, DeshufArm, InfillArm
from birdie_jax.objectives.spans import num_masked, num_spans

#: Shortest text each class builds a sample from (below it: NTP fallback).
_MIN_TEXT = {"copy": 1, "deshuf": 2, "infill": 2, "ae": 2}


def sample_size(arm: Arm, length: int) -> int | None:
    """|prefix| + |labels| of a sample of ``arm`` from ``length`` text tokens, for the classes
    whose size depends on the length alone (None: random size, or no length control).

    copying and deshuffling 2L; infilling L + 2k (each of the k spans becomes a sentinel in
    the prefix and gets one after it in the labels); autoencoding 2L − n_m + k (the prefix
    keeps the L − n_m unmasked tokens and one MASK per span, the labels are the text).
    """
    if isinstance(arm, (CopyArm, DeshufArm)):
        return 2 * length
    if isinstance(arm, (InfillArm, AEArm)) and arm.min_len is not None:
        n_m = num_masked(length, arm.rate)
        k = num_spans(length, n_m, arm.mean_span)
        return length + 2 * k if isinstance(arm, InfillArm) else 2 * length - n_m + k
    return None


def fitted_length(arm: Arm, length: int, budget: int) -> int:
    """The text length a sample of ``arm`` drawn at ``length`` ends up with after the row-fit
    rule (0: NTP fallback). Only for arms with a :func:`sample_size`."""
    while length >= _MIN_TEXT[arm.objective]:
        total = sample_size(arm, length)
        if total <= budget:
            return length
        length = min(length - 1, length * budget // total)
    return 0


def _controls_but_length(arm: Arm) -> tuple:
    fields = {k: v for k, v in dataclasses.asdict(arm).items() if k not in ("min_len", "max_len")}
    return (arm.objective, tuple(sorted(fields.items())))


@functools.lru_cache(maxsize=4096)
def row_bound(arm: Arm, budget: int, lo: int | None = None, hi: int | None = None) -> bool:
    """True if every text length from ``lo`` to ``hi`` (default: the arm's own range)
    overflows ``budget``, so the row, not the arm, decides the sample length."""
    if sample_size(arm, 1) is None:
        return False
    lo = arm.min_len if lo is None else lo
    hi = arm.max_len if hi is None else hi
    return all(sample_size(arm, length) > budget for length in range(lo, hi + 1))


@dataclasses.dataclass(frozen=True)
class MergedArms:
    """Distinct arms at a budget: ``arms`` (the first of each group), ``probabilities``
    (the group's summed mass; None when none were given) and ``members`` (every group's
    arm names, the kept one first)."""

    arms: tuple[Arm, ...]
    probabilities: np.ndarray | None
    members: tuple[tuple[str, ...], ...]

    @property
    def merged(self) -> tuple[tuple[str, ...], ...]:
        """The groups of more than one arm."""
        return tuple(m for m in self.members if len(m) > 1)


def merge_coinciding(arms: Sequence[Arm], probabilities=None, *, budgets: Sequence[int]) -> MergedArms:
    """Merges the arms that coincide at their row budget (see the module docstring).

    Args:
      arms: the arms, in order (the kept arm of a group is its first; order is kept).
      probabilities: optional float [len(arms)] mass, summed per group.
      budgets: per arm, the laid-out tokens a sample may take (row length, minus one for
        a paradigm token).
    """
    arms = tuple(arms)
    group_of = list(range(len(arms)))
    groups: dict[tuple, list[int]] = {}
    for i, arm in enumerate(arms):
        if row_bound(arm, budgets[i]):
            groups.setdefault((_controls_but_length(arm), budgets[i]), []).append(i)
    for (_, budget), idx in groups.items():
        lo, hi = min(arms[i].min_len for i in idx), max(arms[i].max_len for i in idx)
        if len(idx) > 1 and row_bound(arms[idx[0]], budget, lo, hi):  # the lengths in between overflow too
            for i in idx:
                group_of[i] = idx[0]
    keep = [i for i in range(len(arms)) if group_of[i] == i]
    members = tuple(tuple(arms[j].name for j in range(len(arms)) if group_of[j] == i) for i in keep)
    probs = None
    if probabilities is not None:
        p = np.asarray(probabilities, np.float64)
        probs = np.asarray([p[[j for j in range(len(arms)) if group_of[j] == i]].sum() for i in keep])
    return MergedArms(tuple(arms[i] for i in keep), probs, members)
