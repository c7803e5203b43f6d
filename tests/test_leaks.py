"""No future label and no other document ever reaches a prediction (spec §5.4, §10 items 11–15),
for every architecture and bidirectional setting, on a packed row of three samples."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ARCHITECTURES, CAUSAL_ONLY_ARCHITECTURES, tiny_lm
from flax import nnx

from birdie_jax.data.layout import layout_sample

BG = 258
# Three samples: (prefix, labels). The second has an empty prefix.
SAMPLES = [(np.array([10, 11, 12]), np.array([20, 21, 22])), (np.array([], int), np.array([30, 31, 32, 33])),
           (np.array([40, 41]), np.array([50, 51, 52, 53]))]


def _packed_row():
    parts = [layout_sample(np.asarray(p, np.int32), np.asarray(y, np.int32), bg_id=BG) for p, y in SAMPLES]
    tokens = np.concatenate([s["inputs"] for s in parts])
    region = np.concatenate([s["region"] for s in parts])
    segments = np.concatenate([np.full(len(s["inputs"]), i + 1) for i, s in enumerate(parts)])
    return tokens.astype(np.int32), segments.astype(np.int32), region != 2, region


TOKENS, SEGMENTS, PREFIX, REGION = _packed_row()
T = len(TOKENS)
SETTINGS = [(arch, bi) for arch in ARCHITECTURES for bi in ("none", "alternate", "all")]
SETTINGS += [(arch, "none") for arch in CAUSAL_ONLY_ARCHITECTURES]  # Mamba-2: causal only
SETTINGS += [("jrt", "none")]  # JRT-RNN hybrid: PLA reads each prefix both ways without bidirectional layers


@functools.lru_cache(maxsize=None)
def _model_and_forward(arch: str, bidirectional: str):
    model = tiny_lm(arch, bidirectional)
    graphdef, params = nnx.split(model)

    @jax.jit
    def forward(tokens):  # tokens [n t] → logits [n t v], same segments/prefix for every row
        n = tokens.shape[0]
        seg = jnp.broadcast_to(jnp.asarray(SEGMENTS), (n, T))
        pre = jnp.broadcast_to(jnp.asarray(PREFIX), (n, T))
        return nnx.merge(graphdef, params)(tokens, seg, pre)

    @jax.jit
    def jacobian(tokens):  # d(logits_t · r) / d(embedding_s): [t s d]
        m = nnx.merge(graphdef, params)
        r = jax.random.normal(jax.random.key(0), (m.cfg.vocab_size,))

        def f(x):
            return m.apply_embedded(x[None], jnp.asarray(SEGMENTS)[None], jnp.asarray(PREFIX)[None])[0] @ r

        return jax.jacrev(f)(m.embed_tokens(tokens))

    return model, forward, jacobian


def _variants(positions):
    """Row 0 unchanged, then one row per position with that position's token changed.

    The unchanged row travels in the same batch so that every row runs the same compiled
    computation and "unchanged" can be checked bit for bit.
    """
    rows = np.repeat(TOKENS[None], len(positions) + 1, axis=0)
    for i, q in enumerate(positions):
        rows[i + 1, q] = (rows[i + 1, q] + 97) % 256
    return jnp.asarray(rows)


def _base_and_changed(forward, positions):
    out = np.asarray(forward(_variants(positions)))
    return out[0], out[1:]


def _bg_positions():
    return [int(i) for i in np.flatnonzero(TOKENS == BG)]


@pytest.mark.parametrize("arch, bidirectional", SETTINGS)
def test_changing_a_label_slot_changes_no_earlier_logit(arch, bidirectional):
    _, forward, _ = _model_and_forward(arch, bidirectional)
    label_slots = [q for q in range(T) if REGION[q] == 2 and TOKENS[q] != BG]
    base, changed = _base_and_changed(forward, label_slots)
    for row, q in zip(changed, label_slots):
        same_segment = SEGMENTS == SEGMENTS[q]
        before = np.arange(T) < q
        # Nothing earlier in the row (including BG, which predicts y[0]) and nothing in another segment moves.
        np.testing.assert_array_equal(row[before], base[before], err_msg=f"slot {q} leaked backwards")
        np.testing.assert_array_equal(row[~same_segment], base[~same_segment], err_msg=f"slot {q} crossed segments")
        assert np.abs(row[q] - base[q]).max() > 0  # the change is real


@pytest.mark.parametrize("arch, bidirectional", SETTINGS)
def test_changing_one_sample_never_changes_another(arch, bidirectional):
    _, forward, _ = _model_and_forward(arch, bidirectional)
    rows = np.repeat(TOKENS[None], 4, axis=0)
    for segment in (1, 2, 3):
        inside = (SEGMENTS == segment) & (TOKENS != BG)
        rows[segment, inside] = (rows[segment, inside] + 5) % 256
    out = np.asarray(forward(jnp.asarray(rows)))
    for segment in (1, 2, 3):
        outside = SEGMENTS != segment
        np.testing.assert_array_equal(out[segment][outside], out[0][outside])


@pytest.mark.parametrize("arch, bidirectional", SETTINGS)
def test_late_prefix_token_reaches_earlier_prefix_only_when_bidirectional(arch, bidirectional):
    model, forward, _ = _model_and_forward(arch, bidirectional)
    base, (out,) = _base_and_changed(forward, [2])  # last prefix token of the first sample
    earlier_moved = np.abs(out[:2] - base[:2]).max() > 0
    assert earlier_moved == (bidirectional != "none" or model.cfg.uses_mixer("pla"))


@pytest.mark.parametrize("arch, bidirectional", SETTINGS)
def test_jacobian_is_zero_beyond_max_t_c(arch, bidirectional):
    _, _, jacobian = _model_and_forward(arch, bidirectional)
    jac = np.abs(np.asarray(jacobian(jnp.asarray(TOKENS)))).max(-1)  # [t s]
    bg = {int(SEGMENTS[p]): p for p in _bg_positions()}
    for t in range(T):
        c = bg[int(SEGMENTS[t])]
        for s in range(T):
            if SEGMENTS[s] != SEGMENTS[t] or s > max(t, c):
                assert jac[t, s] == 0.0, (t, s, jac[t, s])
    assert jac.max() > 0


@pytest.mark.parametrize("arch", ["gated_ssm", "hawk"])
def test_negative_control_without_bg_the_first_label_would_leak(arch):
    """Slot c holds BG. A bidirectional recurrent layer's reverse state at the last prefix position
    reads it, so a layout that put y[0] there and predicted it from the prefix (no BG) would leak
    y[0]: test 11 would fail. (Prefix attention never lets the prefix see slot c, so the
    Transformer has no such failure mode.)"""
    _, forward, _ = _model_and_forward(arch, "all")
    c = _bg_positions()[0]
    base, (out,) = _base_and_changed(forward, [c])
    assert np.abs(out[c - 1] - base[c - 1]).max() > 0


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_pairs_answer_never_reaches_its_prompt(arch):
    """Prompt/answer pairs (data.format: pairs, generated tasks): in the packed row the loss is
    on answer tokens only, and changing any answer token moves no prompt logit, no earlier logit
    and nothing of another pair (fully bidirectional model, the most exposed setting)."""
    from birdie_jax.data.packing import pack_row
    from birdie_jax.data.samples import document_samples
    from birdie_jax.data.sources import TaskExample, task_samples

    examples = [TaskExample(np.array([10, 11, 12, 13], np.int32), np.array([20, 21, 22], np.int32),
                            np.array([True, False, True])),
                TaskExample(np.array([40, 41], np.int32), np.array([50, 51, 52, 53], np.int32), np.ones(4, bool))]
    transform = functools.partial(task_samples, as_prefix=True, paradigm=BG + 11)
    samples = [s for i, e in enumerate(examples) for s in document_samples(i, e, transform=transform, seed=0,
                                                                            seq_len=32, bg_id=BG)]
    row = pack_row(samples, len(TOKENS), 256)
    targets, seg, prefix = row["targets"], row["segment_ids"], row["region"] != 2
    labelled = targets != -100
    np.testing.assert_array_equal(targets[labelled], [20, 22, 50, 51, 52, 53])  # masked answer tokens only
    model = tiny_lm(arch, "all")
    graphdef, params = nnx.split(model)
    forward = jax.jit(lambda t: nnx.merge(graphdef, params)(t, jnp.broadcast_to(jnp.asarray(seg), t.shape),
                                                            jnp.broadcast_to(jnp.asarray(prefix), t.shape)))
    answer_inputs = [q for q in range(len(seg)) if seg[q] and not prefix[q] and row["inputs"][q] != BG]
    rows = np.repeat(row["inputs"][None], len(answer_inputs) + 1, axis=0)
    for i, q in enumerate(answer_inputs):
        rows[i + 1, q] = (rows[i + 1, q] + 97) % 256
    out = np.asarray(forward(jnp.asarray(rows)))
    for i, q in enumerate(answer_inputs):
        unchanged = (np.arange(len(seg)) < q) | (seg != seg[q])
        np.testing.assert_array_equal(out[i + 1][unchanged], out[0][unchanged], err_msg=f"answer slot {q} leaked")
        assert np.abs(out[i + 1][q] - out[0][q]).max() > 0
