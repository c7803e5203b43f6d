"""Test oracles for the objectives (spec §2, §10), written independently of birdie_jax: this
module imports nothing from the package. Each class's properties are re-derived here from
the spec's text, including the span-corruption counts (n_m, k) and the rounding rule, and
the special token ids come in from the test (:class:`ObjectiveOracle`), so an oracle can
never agree with the code just because it shares a helper with it."""

from __future__ import annotations

import math

import numpy as np


def round_half_up(x: float) -> int:
    """Spec §2.5's "round": the nearest integer, halves up (2.5 → 3), not Python's banker's."""
    return int(math.floor(x + 0.5))


def masked_count(length: int, rate: float) -> int:
    """Spec §2.5: n_m = max(1, round(r·L)) (never more than L)."""
    return min(length, max(1, round_half_up(rate * length)))


def span_count(length: int, n_masked: int, mean_span: float) -> int:
    """Spec §2.5: k = clamp(round(n_m/μ), 1, L − n_m + 1)."""
    return max(1, min(round_half_up(n_masked / mean_span), length - n_masked + 1))


def find(hay: np.ndarray, needle: np.ndarray, start: int) -> int:
    """First index >= start where needle occurs contiguously in hay (-1 if none)."""
    h = np.asarray(hay, np.uint16).tobytes()
    n = np.asarray(needle, np.uint16).tobytes()
    i = h.find(n, 2 * start)
    while i >= 0 and i % 2:  # matches must be token-aligned
        i = h.find(n, i + 1)
    return -1 if i < 0 else i // 2


def split_at(seq: np.ndarray, ids: set[int] | frozenset[int]) -> list[np.ndarray]:
    """seq cut at every token in ids (the cut tokens dropped)."""
    out, cur = [], []
    for t in np.asarray(seq).tolist():
        if t in ids:
            out.append(np.asarray(cur, np.int64))
            cur = []
        else:
            cur.append(t)
    out.append(np.asarray(cur, np.int64))
    return out


def units_after(seq: np.ndarray, marker: int) -> list[list[int]]:
    """seq cut just after every ``marker`` (kept at the end of its unit); empty units dropped.
    For an unshuffled AE prefix these are its units ``gap MASK`` and the last gap (spec §2.7)."""
    units, cur = [], []
    for t in np.asarray(seq).tolist():
        cur.append(t)
        if t == marker:
            units.append(cur)
            cur = []
    return units + ([cur] if cur else [])


def is_concatenation_of(seq: list[int], units: list[list[int]]) -> bool:
    """True if seq is the units, each used once, in some order (depth-first search)."""
    if not units:
        return not seq
    for i, u in enumerate(units):
        if seq[:len(u)] == u and is_concatenation_of(seq[len(u):], units[:i] + units[i + 1:]):
            return True
    return False


def gaps_embed(x: np.ndarray, gaps: list[np.ndarray]) -> bool:
    """True if x = g_0 s_1 g_1 ... s_k g_k for some non-empty s_j (k = len(gaps) - 1)."""
    if len(gaps) == 1:
        return np.array_equal(x, gaps[0])
    if not np.array_equal(x[:len(gaps[0])], gaps[0]) or not np.array_equal(x[len(x) - len(gaps[-1]):], gaps[-1]):
        return False
    pos = len(gaps[0]) + 1
    for g in gaps[1:-1]:
        i = find(x, g, pos)
        if i < 0:
            return False
        pos = i + len(g) + 1
    return pos <= len(x) - len(gaps[-1])


class ObjectiveOracle:
    """The spec's properties of each objective class, for the special ids ``special`` (the
    tokenizer's ``SpecialTokens``, passed in by the test: only its ids are read)."""

    def __init__(self, special):
        self.sp = sp = special
        self.paradigm_ids = frozenset(sp.paradigm_ids) | {sp.r, sp.x, sp.s}
        sc_markers = frozenset({sp.copy, sp.start, sp.end, sp.context, sp.sep, sp.done})
        self.class_specials = {
            "ntp": frozenset(), "plm": frozenset(), "copy": frozenset(), "deshuf": frozenset(),
            "infill": frozenset(sp.sentinels), "ae": frozenset({sp.mask}), "sc": sc_markers,
        }

    def random_text(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n random text ids (bytes 0..255, plus an EOS at the end like the pipeline adds)."""
        return np.append(rng.integers(0, 256, n - 1), self.sp.eos).astype(np.int32) if n else np.zeros(0, np.int32)

    def strip_paradigm(self, prefix: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """(prefix without paradigm tokens, positions where they were)."""
        prefix = np.asarray(prefix)
        where = [i for i, t in enumerate(prefix.tolist()) if t in self.paradigm_ids]
        return np.delete(prefix, where), where

    def fill_sentinels(self, prefix: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Infilling inverse: the j-th sentinel of the prefix replaced by the label tokens
        between the (j-1)-th and j-th sentinels of the labels (spec §10.5)."""
        sentinels = list(self.sp.sentinels)
        spans = split_at(labels, set(sentinels))
        assert len(spans[-1]) == 0, "labels must end with a sentinel"
        out, j = [], 0
        for t in np.asarray(prefix).tolist():
            if t in sentinels:
                assert t == sentinels[j % len(sentinels)], "sentinels must be S0, S1, ... in order, cycling"
                out.extend(spans[j].tolist())
                j += 1
            else:
                out.append(t)
        assert j == len(spans) - 1, "prefix and labels must hold the same number of sentinels"
        return np.asarray(out, np.int64)

    def sc_parts(self, prefix: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
        """Selective-copying prefix -> (query place, context, query tokens)."""
        sp, p = self.sp, np.asarray(prefix).tolist()
        if p[0] == sp.copy:
            c = p.index(sp.context)
            return "before", np.asarray(p[c + 1:]), np.asarray(p[:c])
        assert p[0] == sp.context
        q = p.index(sp.copy)
        return "after", np.asarray(p[1:q]), np.asarray(p[q:])

    def recover_text(self, prefix: np.ndarray, labels: np.ndarray, objective: str) -> np.ndarray:
        """The source text a sample was made from (paradigm tokens ignored)."""
        prefix, _ = self.strip_paradigm(prefix)
        labels = np.asarray(labels, np.int64)
        if objective == "plm":
            return np.concatenate([prefix, labels]).astype(np.int64)
        if objective == "infill":
            return self.fill_sentinels(prefix, labels)
        if objective == "sc":
            return self.sc_parts(prefix)[1].astype(np.int64)
        return labels  # ntp, copy, deshuf, ae

    def check_sample(self, arm, x: np.ndarray, prefix: np.ndarray, labels: np.ndarray) -> None:
        """Asserts the spec §10 properties 1-7 for a sample of ``arm`` made from exactly x."""
        sp = self.sp
        x = np.asarray(x, np.int64)
        prefix, labels = np.asarray(prefix, np.int64), np.asarray(labels, np.int64)
        cls, L = arm.objective, len(x)
        assert len(labels) >= 1
        allowed = set(x.tolist()) | self.class_specials[cls]
        assert set(prefix.tolist()) <= allowed and set(labels.tolist()) <= allowed
        np.testing.assert_array_equal(self.recover_text(prefix, labels, cls), x)
        if cls == "ntp":
            assert len(prefix) == 0
        elif cls == "plm":
            assert len(prefix) >= 4 and len(labels) >= 4 and len(prefix) >= math.ceil(L / 2)
        elif cls == "copy":
            np.testing.assert_array_equal(prefix, x)
        elif cls == "deshuf":
            np.testing.assert_array_equal(np.sort(prefix), np.sort(x))
            assert int((prefix != x).sum()) <= round_half_up(arm.fraction * L)
        elif cls == "infill":
            k = int(np.isin(prefix, sp.sentinels).sum())
            assert k == int(np.isin(labels, sp.sentinels).sum())
            n_m = L - (len(prefix) - k)
            assert n_m == len(labels) - k == masked_count(L, arm.rate)
            assert k == span_count(L, n_m, arm.mean_span)
            is_s = np.isin(prefix, sp.sentinels)
            assert not (is_s[1:] & is_s[:-1]).any(), "two spans touch"
        elif cls == "ae":
            k = int((prefix == sp.mask).sum())
            n_m = L - (len(prefix) - k)
            assert n_m == masked_count(L, arm.rate) and k == span_count(L, n_m, arm.mean_span)
            is_m = prefix == sp.mask
            if not arm.shuffle:
                assert not (is_m[1:] & is_m[:-1]).any(), "two spans touch"
                assert gaps_embed(x, split_at(prefix, {sp.mask}))
        elif cls == "sc":
            self.check_selective_copy(arm, x, prefix, labels)

    def check_selective_copy(self, arm, x, prefix, labels) -> None:
        """§10.7: query format and place, delimiter + span + delimiter contiguous in x, in order,
        disjoint, lengths in bounds; labels = spans joined by SEP, ending with DONE."""
        sp = self.sp
        place, context, query = self.sc_parts(prefix)
        assert place == arm.query
        np.testing.assert_array_equal(context, x)
        assert labels[-1] == sp.done and sp.done not in labels[:-1].tolist()
        spans = split_at(labels[:-1], {sp.sep})
        q = query.tolist()
        assert q[0] == sp.copy and q.count(sp.start) == len(spans) == q.count(sp.end)
        assert 1 <= len(spans) <= arm.n_spans
        if len(x) >= 4 * 48:  # room for every superspan: no reduction
            assert len(spans) == arm.n_spans
        pieces = split_at(np.asarray(q[1:]), {sp.start, sp.end})[1:]  # a_1, b_1, a_2, b_2, ...
        pos = 0
        for j, span in enumerate(spans):
            a, b = pieces[2 * j], pieces[2 * j + 1]
            assert 4 <= len(span) <= 32 and 1 <= len(a) <= 8 and 1 <= len(b) <= 8
            i = find(x, np.concatenate([a, span, b]), pos)
            assert i >= 0, "delimiter + span + delimiter not found (in order, disjoint) in the context"
            pos = i + len(a) + len(span) + len(b)
