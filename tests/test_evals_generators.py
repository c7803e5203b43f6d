"""Recall-task generators checked against the spec's properties (independent re-derivations)."""

import numpy as np
import pytest

from birdie_jax.errors import DataError
from birdie_jax.evals import mqar_accuracy, mqar_batch, mqar_sequence, set_disjointness_batch


@pytest.mark.parametrize("T, n, V", [(64, 4, 256), (128, 8, 512), (32, 8, 64)])
def test_mqar_properties(T, n, V):
    inputs, labels = mqar_batch(200, seed=1, seq_len=T, num_pairs=n, vocab_size=V)
    assert inputs.shape == labels.shape == (200, T)
    for x, y in zip(inputs, labels):
        keys, values = x[0:2 * n:2], x[1:2 * n:2]
        assert len(set(keys.tolist())) == n and len(set(values.tolist())) == n
        assert (keys >= 1).all() and (keys < V // 2).all() and (values >= V // 2).all() and (values < V).all()
        pair = dict(zip(keys.tolist(), values.tolist()))
        labelled = np.flatnonzero(y != -100)
        assert len(labelled) == n  # one query per key, −100 everywhere else
        assert (labelled >= 2 * n).all() and ((labelled - 2 * n) % 2 == 0).all()
        queried = x[labelled].tolist()
        assert sorted(queried) == sorted(keys.tolist())  # query slots distinct, every key queried once
        assert all(y[t] == pair[x[t]] for t in labelled)
        assert (x >= 0).all() and (x < V).all()


def test_mqar_queries_cluster_early_and_are_seeded():
    T, n = 256, 4
    _, labels = mqar_batch(400, seed=0, seq_len=T, num_pairs=n, vocab_size=512)
    slots = (np.flatnonzero(labels != -100) % T - 2 * n) // 2
    num_slots = (T - 2 * n) // 2
    first_half = (slots < num_slots // 2).mean()
    assert first_half > 0.6  # p(g) ∝ (g+1)^(a−1): early slots are far more likely
    a, b = mqar_batch(3, seed=5), mqar_batch(3, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(mqar_batch(3, seed=6)[0], a[0])


def test_mqar_sequence_form_and_accuracy():
    inputs, labels = mqar_batch(4, seed=2)
    for x, y in zip(inputs, labels):
        seq, mask = mqar_sequence(x, y)
        assert len(seq) == len(x) + 1 and mask.sum() == (y != -100).sum()
        np.testing.assert_array_equal(seq[1:][mask[1:]], y[y != -100])  # the token after a query key is its value
        np.testing.assert_array_equal(seq[:-1][~mask[:-1]], x[~mask[:-1]])
    perfect = np.where(labels == -100, 0, labels)
    np.testing.assert_array_equal(mqar_accuracy(perfect, labels), 1.0)
    half = perfect.copy()
    half[0, np.flatnonzero(labels[0] != -100)[:2]] = -1
    assert mqar_accuracy(half, labels)[0] == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [dict(seq_len=63), dict(num_pairs=17), dict(vocab_size=64)])
def test_mqar_rejects_impossible_settings(bad):
    with pytest.raises(DataError):
        mqar_batch(1, seed=0, **{**dict(seq_len=64, num_pairs=4, vocab_size=256), **bad})


@pytest.mark.parametrize("a, b", [(4, 16), (16, 4), (1, 1)])
def test_set_disjointness_properties(a, b):
    V = 256
    prompts, answers = set_disjointness_batch(100, seed=0, size_a=a, size_b=b, vocab_size=V)
    for p, t in zip(prompts, answers):
        assert p[0] == 1 and p[a + 1] == 2 and p[-1] == 3 and len(p) == a + b + 3
        set_a, set_b = p[1:a + 1], p[a + 2:-1]
        assert (set_a >= 4).all() and (set_b >= 4).all()
        assert len(set(set_a.tolist())) == a and len(set(set_b.tolist())) == b
        assert set(set_a.tolist()) & set(set_b.tolist()) == {int(t)}  # exactly one shared element: the answer
        middle = 4 + (V - 4) // 2
        others = [v for v in set_b.tolist() if v != t]
        assert all((v < middle) == (set_a[0] < middle) for v in set_a.tolist())  # A within one half
        assert all((v < middle) != (set_a[0] < middle) for v in others)  # B (but t) within the other
