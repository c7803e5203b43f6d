"""Test oracles for the objectives, written independently of birdie_jax.objectives:
they recover the source text of a sample and check each class's properties (spec §10)."""

from __future__ import annotations

import math

import numpy as np

from birdie_jax.objectives.spans import num_masked, num_spans, round_half_up
from birdie_jax.tokenizer import ByteTokenizer

TOK = ByteTokenizer()
SP = TOK.special
PARADIGM_IDS = frozenset(SP.paradigm_ids) | {SP.r, SP.x, SP.s}
SC_MARKERS = frozenset({SP.copy, SP.start, SP.end, SP.context, SP.sep, SP.done})
CLASS_SPECIALS = {
    "ntp": frozenset(), "plm": frozenset(), "copy": frozenset(), "deshuf": frozenset(),
    "infill": frozenset(SP.sentinels), "ae": frozenset({SP.mask}), "sc": SC_MARKERS,
}


def random_text(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random text ids (bytes 0..255, plus an EOS at the end like the pipeline adds)."""
    return np.append(rng.integers(0, 256, n - 1), SP.eos).astype(np.int32) if n else np.zeros(0, np.int32)


def strip_paradigm(prefix: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """(prefix without paradigm tokens, positions where they were)."""
    prefix = np.asarray(prefix)
    where = [i for i, t in enumerate(prefix.tolist()) if t in PARADIGM_IDS]
    return np.delete(prefix, where), where


def _find(hay: np.ndarray, needle: np.ndarray, start: int) -> int:
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


def fill_sentinels(prefix: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Infilling inverse: the j-th sentinel of the prefix replaced by the label tokens
    between the (j-1)-th and j-th sentinels of the labels."""
    sentinels = set(SP.sentinels)
    spans = split_at(labels, sentinels)
    assert len(spans[-1]) == 0, "labels must end with a sentinel"
    out, j = [], 0
    for t in np.asarray(prefix).tolist():
        if t in sentinels:
            assert t == SP.sentinel(j), "sentinels must be S0, S1, ... in order"
            out.extend(spans[j].tolist())
            j += 1
        else:
            out.append(t)
    assert j == len(spans) - 1, "prefix and labels must hold the same number of sentinels"
    return np.asarray(out, np.int64)


def sc_parts(prefix: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """Selective-copying prefix -> (query place, context, query tokens)."""
    p = np.asarray(prefix).tolist()
    if p[0] == SP.copy:
        c = p.index(SP.context)
        return "before", np.asarray(p[c + 1:]), np.asarray(p[:c])
    assert p[0] == SP.context
    q = p.index(SP.copy)
    return "after", np.asarray(p[1:q]), np.asarray(p[q:])


def recover_text(prefix: np.ndarray, labels: np.ndarray, objective: str) -> np.ndarray:
    """The source text a sample was made from (paradigm tokens ignored)."""
    prefix, _ = strip_paradigm(prefix)
    labels = np.asarray(labels, np.int64)
    if objective == "plm":
        return np.concatenate([prefix, labels]).astype(np.int64)
    if objective == "infill":
        return fill_sentinels(prefix, labels)
    if objective == "sc":
        return sc_parts(prefix)[1].astype(np.int64)
    return labels  # ntp, copy, deshuf, ae


def _gaps_embed(x: np.ndarray, gaps: list[np.ndarray]) -> bool:
    """True if x = g_0 s_1 g_1 ... s_k g_k for some non-empty s_j (k = len(gaps) - 1)."""
    if len(gaps) == 1:
        return np.array_equal(x, gaps[0])
    if not np.array_equal(x[:len(gaps[0])], gaps[0]) or not np.array_equal(x[len(x) - len(gaps[-1]):], gaps[-1]):
        return False
    pos = len(gaps[0]) + 1
    for g in gaps[1:-1]:
        i = _find(x, g, pos)
        if i < 0:
            return False
        pos = i + len(g) + 1
    return pos <= len(x) - len(gaps[-1])


def check_sample(arm, x: np.ndarray, prefix: np.ndarray, labels: np.ndarray) -> None:
    """Asserts the spec §10 properties 1-7 for a sample of ``arm`` made from exactly x."""
    x = np.asarray(x, np.int64)
    prefix, labels = np.asarray(prefix, np.int64), np.asarray(labels, np.int64)
    cls, L = arm.objective, len(x)
    assert len(labels) >= 1
    allowed = set(x.tolist()) | CLASS_SPECIALS[cls]
    assert set(prefix.tolist()) <= allowed and set(labels.tolist()) <= allowed
    np.testing.assert_array_equal(recover_text(prefix, labels, cls), x)
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
        k = int(np.isin(prefix, SP.sentinels).sum())
        assert k == int(np.isin(labels, SP.sentinels).sum())
        n_m = L - (len(prefix) - k)
        assert n_m == len(labels) - k == num_masked(L, arm.rate)
        assert k == num_spans(L, n_m, arm.mean_span)
        is_s = np.isin(prefix, SP.sentinels)
        assert not (is_s[1:] & is_s[:-1]).any(), "two spans touch"
    elif cls == "ae":
        k = int((prefix == SP.mask).sum())
        n_m = L - (len(prefix) - k)
        assert n_m == num_masked(L, arm.rate) and k == num_spans(L, n_m, arm.mean_span)
        is_m = prefix == SP.mask
        if not arm.shuffle:
            assert not (is_m[1:] & is_m[:-1]).any(), "two spans touch"
            assert _gaps_embed(x, split_at(prefix, {SP.mask}))
    elif cls == "sc":
        check_selective_copy(arm, x, prefix, labels)


def check_selective_copy(arm, x, prefix, labels) -> None:
    """§10.7: query format and place, delimiter + span + delimiter contiguous in x, in order,
    disjoint, lengths in bounds; labels = spans joined by SEP, ending with DONE."""
    place, context, query = sc_parts(prefix)
    assert place == arm.query
    np.testing.assert_array_equal(context, x)
    assert labels[-1] == SP.done and SP.done not in labels[:-1].tolist()
    spans = split_at(labels[:-1], {SP.sep})
    q = query.tolist()
    assert q[0] == SP.copy and q.count(SP.start) == len(spans) == q.count(SP.end)
    assert 1 <= len(spans) <= arm.n_spans
    if len(x) >= 4 * 48:  # room for every superspan: no reduction
        assert len(spans) == arm.n_spans
    pieces = split_at(np.asarray(q[1:]), {SP.start, SP.end})[1:]  # a_1, b_1, a_2, b_2, ...
    pos = 0
    for j, span in enumerate(spans):
        a, b = pieces[2 * j], pieces[2 * j + 1]
        assert 4 <= len(span) <= 32 and 1 <= len(a) <= 8 and 1 <= len(b) <= 8
        i = _find(x, np.concatenate([a, span, b]), pos)
        assert i >= 0, "delimiter + span + delimiter not found (in order, disjoint) in the context"
        pos = i + len(a) + len(span) + len(b)
