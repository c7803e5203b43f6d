"""The seven objective classes as pure, seeded NumPy functions (spec §2, paper Table 1, A.5).

Each ``build_<class>(x, arm, rng, special)`` turns exactly the text ``x`` (int32 [L],
already cut to the arm's length) into ``(prefix [P], labels [N])`` int32 arrays with
N >= 1, or returns ``None`` when x is too short for the objective (the caller then
makes an NTP sample, see :mod:`birdie_jax.objectives.fitting`). No JAX: these run in
data workers. The same rng state gives the same sample.

Special ids come from :class:`birdie_jax.tokenizer.SpecialTokens` and are never
produced by a tokenizer, so they cannot collide with text.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from birdie_jax.objectives.arms import AEArm, Arm, CopyArm, DeshufArm, InfillArm, NTPArm, PLMArm, SCArm
from birdie_jax.objectives.spans import Corruption, corrupt_spans, round_half_up
from birdie_jax.tokenizer import SpecialTokens

Pair = tuple[np.ndarray, np.ndarray]
_EMPTY = np.zeros(0, np.int32)

#: PLM needs a prefix and a suffix of >= 4 tokens each.
PLM_MIN_SIDE = 4
#: Selective copying (A.5): span length and delimiter length ranges, placement tries per span.
SC_SPAN_LEN = (4, 32)
SC_DELIM_LEN = (1, 8)
SC_MAX_TRIES = 64


def _i32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int32)


# ----------------------------------------------------------------------------- NTP, PLM, COPY


def build_ntp(x: np.ndarray, arm: NTPArm | None = None, rng=None, special=None) -> Pair | None:
    """prefix = [], labels = x."""
    return (_EMPTY, _i32(x)) if len(x) else None


def build_plm(x: np.ndarray, arm: PLMArm, rng: np.random.Generator, special=None) -> Pair | None:
    """Split s ~ U{ceil(L/2)..L} clipped to [4, L−4]: prefix = x[:s], labels = x[s:] (needs L >= 8)."""
    n = len(x)
    if n < 2 * PLM_MIN_SIDE:
        return None
    s = int(rng.integers(math.ceil(n / 2), n + 1))
    s = min(max(s, PLM_MIN_SIDE), n - PLM_MIN_SIDE)
    return _i32(x[:s]), _i32(x[s:])


def build_copy(x: np.ndarray, arm: CopyArm, rng=None, special=None) -> Pair | None:
    """prefix = labels = x."""
    return (_i32(x), _i32(x)) if len(x) else None


# ----------------------------------------------------------------------------- DESHUF


def shuffle_positions(x: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """x with the tokens at m = round(fraction·L) distinct random positions permuted uniformly
    among those positions; every other position unchanged."""
    out = _i32(x).copy()
    m = min(len(x), round_half_up(fraction * len(x)))
    positions = rng.choice(len(x), m, replace=False)
    out[positions] = out[positions[rng.permutation(m)]]
    return out


def build_deshuf(x: np.ndarray, arm: DeshufArm, rng: np.random.Generator, special=None) -> Pair | None:
    """prefix = x partly shuffled (token level, ``arm.fraction`` of the positions), labels = x."""
    if len(x) < 2:
        return None
    return shuffle_positions(x, arm.fraction, rng), _i32(x)


# ----------------------------------------------------------------------------- INFILL, AE


def infill_pair(x: np.ndarray, c: Corruption, special: SpecialTokens) -> Pair:
    """prefix = gap_0 S_1 gap_1 … S_k gap_k; labels = span_1 S_1 … span_k S_k, S_j = S[(j−1) mod P]."""
    x = _i32(x)
    mask = c.mask()
    sentinels = _i32([special.sentinel(j) for j in range(c.num_spans)])
    prefix = x.copy()
    prefix[c.starts] = sentinels
    keep = ~mask
    keep[c.starts] = True  # the first token of each span becomes its sentinel
    labels = np.insert(x[mask], np.cumsum(c.lengths), sentinels)
    return prefix[keep], _i32(labels)


def ae_units(x: np.ndarray, c: Corruption, mask_id: int) -> list[np.ndarray]:
    """The corrupted input cut into units ``gap_{j-1} MASK`` (j = 1..k) and the last gap; empty
    units dropped. Concatenated in order they give the unshuffled AE prefix."""
    x = _i32(x)
    bounds = np.concatenate([[0], c.starts, [c.length]])
    pieces_from = np.concatenate([[0], c.ends])
    units = []
    for j in range(c.num_spans + 1):
        gap = x[pieces_from[j] : bounds[j + 1]]
        unit = np.append(gap, np.int32(mask_id)).astype(np.int32) if j < c.num_spans else gap
        if unit.size:
            units.append(unit)
    return units


def build_infill(x: np.ndarray, arm: InfillArm, rng: np.random.Generator, special: SpecialTokens) -> Pair | None:
    """Span corruption at ``arm.rate``/``arm.mean_span`` with a sentinel after each span (spec §2.6)."""
    if len(x) < 2:
        return None
    return infill_pair(x, corrupt_spans(len(x), arm.rate, arm.mean_span, rng), special)


def build_ae(x: np.ndarray, arm: AEArm, rng: np.random.Generator, special: SpecialTokens) -> Pair | None:
    """Span corruption, one MASK per span, labels = x; with ``arm.shuffle`` the units
    (a gap plus the MASK after it) are permuted uniformly (spec §2.7)."""
    if len(x) < 2:
        return None
    units = ae_units(x, corrupt_spans(len(x), arm.rate, arm.mean_span, rng), special.mask)
    if arm.shuffle:
        units = [units[i] for i in rng.permutation(len(units))]
    return _i32(np.concatenate(units)), _i32(x)


# ----------------------------------------------------------------------------- SC


@dataclasses.dataclass(frozen=True)
class Placement:
    """One copied span of a selective-copying context: x[start:start+length], with the
    ``before`` tokens just before it as start delimiter and the ``after`` tokens just after
    it as end delimiter."""

    start: int
    length: int
    before: int
    after: int

    @property
    def superspan(self) -> tuple[int, int]:
        """[begin, end) of delimiters + span in the context."""
        return self.start - self.before, self.start + self.length + self.after


def place_spans(context_len: int, n_spans: int, rng: np.random.Generator) -> list[Placement]:
    """Up to ``n_spans`` disjoint superspans inside the context, by rejection (<= 64 tries per
    span; the first span that cannot be placed ends the placement). Sorted by position."""
    placed: list[Placement] = []
    for _ in range(n_spans):
        for _ in range(SC_MAX_TRIES):
            length = int(rng.integers(SC_SPAN_LEN[0], SC_SPAN_LEN[1] + 1))
            a, b = (int(v) for v in rng.integers(SC_DELIM_LEN[0], SC_DELIM_LEN[1] + 1, size=2))
            total = a + length + b
            if total > context_len:
                continue
            begin = int(rng.integers(0, context_len - total + 1))
            end = begin + total
            if all(end <= p.superspan[0] or begin >= p.superspan[1] for p in placed):
                placed.append(Placement(start=begin + a, length=length, before=a, after=b))
                break
        else:
            break
    return sorted(placed, key=lambda p: p.start)


def selective_copy(x: np.ndarray, placements: list[Placement], query_before: bool,
                   special: SpecialTokens) -> Pair:
    """The A.5 sample for explicit placements (sorted, disjoint, inside x).

    query = COPY, then per span: START, start delimiter, END, end delimiter;
    prefix = query + CONTEXT + x (query before) or CONTEXT + x + query;
    labels = span_1 SEP span_2 … SEP span_n DONE.
    """
    x = _i32(x)
    query: list[np.ndarray] = [_i32([special.copy])]
    labels: list[np.ndarray] = []
    for j, p in enumerate(placements):
        query += [_i32([special.start]), x[p.start - p.before : p.start],
                  _i32([special.end]), x[p.start + p.length : p.start + p.length + p.after]]
        if j:
            labels.append(_i32([special.sep]))
        labels.append(x[p.start : p.start + p.length])
    labels.append(_i32([special.done]))
    context = [_i32([special.context]), x]
    parts = query + context if query_before else context + query
    return _i32(np.concatenate(parts)), _i32(np.concatenate(labels))


def build_sc(x: np.ndarray, arm: SCArm, rng: np.random.Generator, special: SpecialTokens) -> Pair | None:
    """Selective copying of ``arm.n_spans`` spans of the context x (fewer if they do not fit;
    None when not even one fits)."""
    placements = place_spans(len(x), arm.n_spans, rng)
    if not placements:
        return None
    return selective_copy(x, placements, arm.query == "before", special)


# ----------------------------------------------------------------------------- dispatch

_BUILDERS: dict[type, Callable[..., Pair | None]] = {
    NTPArm: build_ntp, PLMArm: build_plm, SCArm: build_sc, CopyArm: build_copy,
    DeshufArm: build_deshuf, InfillArm: build_infill, AEArm: build_ae,
}


def build(x: np.ndarray, arm: Arm, rng: np.random.Generator, *, special: SpecialTokens) -> Pair | None:
    """One sample of ``arm`` from exactly the text x (int32 [L]): (prefix, labels), or None
    when x is too short for the objective. Deterministic given the rng state."""
    try:
        builder = _BUILDERS[type(arm)]
    except KeyError:
        raise TypeError(f"not an objective arm: {arm!r}") from None
    return builder(np.asarray(x), arm, rng, special)
