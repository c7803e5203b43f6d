"""Mixtures (spec §6.1-6.2, §6.8): presets, live probabilities, state, the real pipeline,
edge-case documents, per-arm validation sets and ``objectives show``."""

import argparse
import collections
import copy
import json
import pickle

import numpy as np
from conftest import packed_segments
import pytest
from objective_oracles import ObjectiveOracle

from birdie_jax.config import MixtureConfig
from birdie_jax.data.layout import IGNORE_ID
from birdie_jax.data.pipeline import make_batch_iterator
from birdie_jax.errors import ConfigError, DataError
from birdie_jax.objectives import (
    CopyArm, InfillArm, Mixture, NTPArm, PLMArm, SCArm, birdie_grid, build_mixture, make_validation_sets,
)
from birdie_jax.objectives.live import LiveVector
from birdie_jax.objectives.presets import fixed_weights
from birdie_jax.objectives.show import add_objectives_parser, run_objectives
from birdie_jax.tokenizer import OBJECTIVE_CLASSES, ByteTokenizer

TOK = ByteTokenizer()
SP = TOK.special
recover_text = ObjectiveOracle(SP).recover_text
GRID = birdie_grid()
FIELDS = ("inputs", "targets", "segment_ids", "positions", "region", "arm_ids")


def _mix(name="birdie", seq_len=256, **kw):
    return build_mixture(MixtureConfig(name=name, **kw), TOK, seq_len=seq_len)


def _docs(n, seed=0, lo=1, hi=400):
    rng = np.random.default_rng(seed)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    return [" ".join(rng.choice(words, size=int(rng.integers(lo, hi)))) for _ in range(n)]


def _segments(batches):
    return packed_segments(batches, FIELDS)


def _sample_of(seg):
    """A packed segment -> (prefix, labels, arm id)."""
    c = int((seg["region"] != 2).sum())
    return seg["inputs"][:c], seg["targets"][c:], int(seg["arm_ids"][0])


def _take(it, n):
    return [next(it) for _ in range(n)]


def _equal(a, b):
    return len(a) == len(b) and all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in FIELDS)


# ---------------------------------------------------------------- presets (§6.1)


def test_presets():
    clm = _mix("clm")
    assert clm.arm_names == ("ntp",) and clm.paradigm == "off" and clm.probabilities.tolist() == [1.0]
    ul2 = _mix("ul2")
    assert ul2.arm_names == ("infill/r15/mu3", "infill/r15/mu8", "infill/r50/mu3", "infill/r50/mu8",
                             "infill/r15/mu64", "infill/r50/mu64", "plm")
    np.testing.assert_allclose(ul2.probabilities, [0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.2])
    assert [ul2.paradigm_id(i) for i in range(7)] == [SP.r, SP.r, SP.x, SP.x, SP.x, SP.x, SP.s]
    assert ul2.append_prob == 0.0  # UL2 prepends
    dec = _mix("ul2_decoder")
    assert dec.arm_names == ("ntp", "plm", "infill/r15/mu3", "infill/r50/mu32")
    np.testing.assert_allclose(dec.probabilities, [0.6, 0.2, 0.1, 0.1])
    assert [dec.paradigm_id(i) for i in range(4)] == [None, SP.s, SP.r, SP.x]
    birdie = _mix("birdie", seq_len=2048)  # the paper's row: no arm coincides with another (test_arm_merging)
    assert birdie.arms == GRID and birdie.paradigm == "class"
    per_class = collections.defaultdict(float)
    for c, p in zip(birdie.arm_classes, birdie.probabilities):
        per_class[c] += p
    np.testing.assert_allclose([per_class[c] for c in OBJECTIVE_CLASSES], np.full(7, 1 / 7))
    assert _mix("ul2", paradigm_tokens=False).paradigm == "off"
    assert _mix("clm", paradigm_tokens=True).paradigm == "class"
    json.dumps(birdie.to_dict())


def test_fixed_weights_by_class_arm_and_file(tmp_path):
    m = _mix("fixed", seq_len=2048, weights={"infill": 2.0, "ntp": 1.0, "copy/len64-256": 1.0})
    assert m.arm_names[0] == "ntp" and len(m.arms) == 1 + 1 + 35
    p = dict(zip(m.arm_names, m.probabilities))
    np.testing.assert_allclose([p["ntp"], p["copy/len64-256"], p["infill/len128-256/r5/mu3"]], [0.25, 0.25, 0.5 / 35])
    assert abs(sum(p.values()) - 1) < 1e-12 and m.paradigm == "class"
    path = tmp_path / "w.yaml"
    path.write_text("weights:\n  infill: 2\n  ntp: 1\n  copy/len64-256: 1\n")
    np.testing.assert_array_equal(_mix("fixed", seq_len=2048, weights_file=str(path)).probabilities, m.probabilities)
    path.write_text("ae: 1\n")  # a bare mapping works too
    assert set(_mix("fixed", weights_file=str(path)).arm_classes) == {"ae"}


def test_fixed_mixture_without_weights_is_class_uniform():
    m = _mix("fixed")
    by_class = {}
    for c, p in zip(m.arm_classes, m.probabilities):
        by_class[c] = by_class.get(c, 0.0) + p
    np.testing.assert_allclose(sorted(by_class.values()), [1 / 7] * 7)


@pytest.mark.parametrize("kw, match", [
    (dict(weights={"infil": 1.0, "copy/len64-255": 1}), r"unknown objective class or arm name 'infil' \(did you mean "
                                                        r"'infill'\?\), 'copy/len64-255'"),
    (dict(weights={"ntp": 0.0}), "all zero"),
    (dict(weights={"ntp": 1.0}, weights_file="w.yaml"), "not both"),
    (dict(weights_file="/no/such/w.yaml"), "not found: /no/such/w.yaml"),
])
def test_fixed_mixture_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        _mix("fixed", **kw)


def test_bad_weight_values_and_files(tmp_path):
    with pytest.raises(ConfigError, match=r"mixture.weights\['ntp'\] must be a number >= 0, got 'x'"):
        fixed_weights({"ntp": "x"}, GRID)
    path = tmp_path / "w.yaml"
    for text, match in [("[1, 2]", "mapping"), ("a: [", "not valid YAML")]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=match):
            _mix("fixed", weights_file=str(path))


def test_weights_only_for_fixed_and_small_rows():
    with pytest.raises(ConfigError, match="only apply to mixture=fixed"):
        _mix("birdie", weights={"ntp": 1.0})
    with pytest.raises(ConfigError, match="no room"):
        _mix("birdie", seq_len=1)
    _mix("clm", seq_len=1)  # no paradigm token: one token per row is enough


# ---------------------------------------------------------------- probabilities and state


def test_set_probabilities_validates():
    m = _mix("ul2_decoder")
    for bad, match in [([0.5, 0.5], r"shape \(4,\)"), ([0.5, 0.5, 0.5, -0.5], "entry 3 .*infill/r50/mu32.* -0.5"),
                       ([np.nan, 1, 0, 0], "entry 0"), ([0.3, 0.3, 0.3, 0.3], "sum to 1"), ("abc", "vector")]:
        with pytest.raises(ConfigError, match=match):
            m.set_probabilities(bad)
    np.testing.assert_allclose(m.probabilities, [0.6, 0.2, 0.1, 0.1])  # unchanged
    m.set_probabilities(np.asarray([0.25, 0.25, 0.25, 0.25 + 5e-5], np.float32))  # within tolerance
    assert abs(m.probabilities.sum() - 1) < 1e-12


def test_state_round_trip():
    m = _mix("birdie")
    p = np.random.default_rng(0).dirichlet(np.ones(len(m.arms)))
    m.set_probabilities(p)
    state = json.loads(json.dumps(m.get_state()))
    fresh = _mix("birdie")
    fresh.set_state(state)
    np.testing.assert_array_equal(fresh.probabilities, m.probabilities)
    with pytest.raises(ConfigError, match="does not match mixture 'ul2'"):
        _mix("ul2").set_state(state)


def test_class_ids_and_fallback_tag():
    m = _mix("ul2_decoder")
    assert m.fallback_id == 4 and m.tag_names[-1] == "ntp/fallback"
    ids = m.class_ids(np.asarray([[0, 1, 2, 3, 4, -1]]))
    assert ids.tolist() == [[OBJECTIVE_CLASSES.index(c) for c in ("ntp", "plm", "infill", "infill", "ntp")] + [-1]]


@pytest.mark.parametrize("name", ["ul2", "ul2_decoder", "birdie", "fixed"])
def test_draw_rates_within_3_points(name):
    """10,000 draws: every arm's and class's rate within 3 percentage points of the vector."""
    m = _mix(name, **({"weights": {"infill": 3, "sc": 1, "plm": 1}} if name == "fixed" else {}))
    if name == "birdie":
        m.set_probabilities(np.random.default_rng(1).dirichlet(np.full(len(m.arms), 0.3)))
    rng = np.random.default_rng(0)
    draws = np.asarray([m.draw_arm(rng) for _ in range(10_000)])
    rates = np.bincount(draws, minlength=len(m.arms)) / 10_000
    assert np.abs(rates - m.probabilities).max() < 0.03
    cls = m.class_ids(draws)
    want = np.bincount(m.class_ids(np.arange(len(m.arms))), weights=m.probabilities, minlength=7)
    assert np.abs(np.bincount(cls, minlength=7) / 10_000 - want).max() < 0.03
    assert (rates[m.probabilities == 0] == 0).all()


def test_pipeline_rates_over_10000_documents():
    """Through the real pipeline: 10,000 short documents, one sample each; the arm ids of the
    samples follow the commanded rates within 3 percentage points."""
    m = _mix("ul2_decoder", seq_len=128)
    m.set_probabilities([0.1, 0.3, 0.2, 0.4])
    docs = _docs(10_000, lo=4, hi=12)  # 20-100 bytes: one sample per document, never a fallback
    batches = list(make_batch_iterator(docs, TOK, seq_len=128, batch_size=64, seed=0, sample_transform=m,
                                       shuffle=False, num_epochs=1))
    tags = np.asarray([s["arm_ids"][0] for s in _segments(batches)])
    assert len(tags) == 10_000
    assert np.abs(np.bincount(tags, minlength=5)[:4] / 10_000 - [0.1, 0.3, 0.2, 0.4]).max() < 0.03


# ---------------------------------------------------------------- the real pipeline


def _check_batches_and_text(batches, docs, mixture, seq_len):
    """Batch format, no label in the prefix region, every sample fits, and the samples'
    source texts concatenate to the documents + EOS in order (nothing lost or repeated)."""
    for b in batches:
        assert set(b) == set(FIELDS)
        assert all(b[k].dtype == np.int32 and b[k].shape[1] == seq_len for k in FIELDS)
        seg, region, targets = b["segment_ids"], b["region"], b["targets"]
        assert (targets[(region != 2) & (seg > 0)] == IGNORE_ID).all()  # no label in the prefix
        assert (targets[(region == 2) & (seg > 0)] != IGNORE_ID).all()
        assert (b["arm_ids"][seg == 0] == -1).all() and (b["arm_ids"][seg > 0] >= 0).all()
    texts = []
    for s in _segments(batches):
        prefix, labels, tag = _sample_of(s)
        assert len(labels) >= 1
        texts.append(recover_text(prefix, labels, mixture.tag_classes[tag]))
    want = np.concatenate([np.append(TOK.encode(d), SP.eos) for d in docs])
    np.testing.assert_array_equal(np.concatenate(texts), want)


EDGE_DOCS = [
    "", "a", "ab", "abc",
    "[BG][MASK][S0][COPY][START][END][CONTEXT][SEP][DONE][P:ntp]<eos><pad>",  # special-looking text
    "\x00\x01\x02\x7f" * 30, "ÿþ€𝄞" * 40,  # control bytes, multi-byte UTF-8
    "x" * 50_000,  # far longer than any configuration
    "The quick brown fox jumps over the lazy dog. " * 60,
]


@pytest.mark.parametrize("name, seq_len", [("birdie", 64), ("birdie", 256), ("ul2", 128), ("clm", 32),
                                           ("ul2_decoder", 48)])
def test_edge_case_documents_through_the_pipeline(name, seq_len):
    m = _mix(name, seq_len=seq_len)
    batches = list(make_batch_iterator(EDGE_DOCS, TOK, seq_len=seq_len, batch_size=4, seed=3, sample_transform=m,
                                       shuffle=False, num_epochs=1))
    _check_batches_and_text(batches, EDGE_DOCS, m, seq_len)


def test_birdie_stream_covers_every_class_without_loss():
    m = _mix("birdie", seq_len=256)
    docs = _docs(60, seed=1, hi=900)
    batches = list(make_batch_iterator(docs, TOK, seq_len=256, batch_size=4, seed=0, sample_transform=m,
                                       shuffle=False, num_epochs=1))
    _check_batches_and_text(batches, docs, m, 256)
    classes = {m.tag_classes[s["arm_ids"][0]] for s in _segments(batches)}
    assert classes == set(OBJECTIVE_CLASSES)


def _switch_run(docs, switch_at, n=12, p_after=(0.0, 1.0)):
    m = Mixture("two", [NTPArm(), CopyArm(8, 16)], [1.0, 0.0], special=SP, seq_len=64)
    it = make_batch_iterator(docs, TOK, seq_len=64, batch_size=2, seed=5, sample_transform=m)
    out = []
    for step in range(n):
        if step == switch_at:
            m.set_probabilities(p_after)
        out.append(next(it))
    return out


def test_set_probabilities_takes_effect_mid_stream():
    """num_workers=0: documents read after the call follow the new vector; the stream is
    deterministic given the steps at which the vector changed."""
    docs = _docs(50, seed=2, hi=30)
    a = _switch_run(docs, 4)
    before = {int(t) for b in a[:4] for t in b["arm_ids"][b["segment_ids"] > 0]}
    after = {int(t) for b in a[6:] for t in b["arm_ids"][b["segment_ids"] > 0]}
    assert before == {0} and after == {1}
    assert _equal(a, _switch_run(docs, 4))
    assert not _equal(a, _switch_run(docs, 5))


def test_restore_mid_document_after_a_switch():
    """The pipeline state pins the vector its open document was made with: a restore right
    after set_probabilities rebuilds that document exactly, and later documents use the new one."""
    docs = _docs(20, seed=3, lo=200, hi=400)  # long documents: the packer is mid-document
    kw = dict(seq_len=64, batch_size=2, seed=1)

    def fresh():
        m = Mixture("two", [NTPArm(), CopyArm(8, 16)], [0.5, 0.5], special=SP, seq_len=64)
        return m, make_batch_iterator(docs, TOK, sample_transform=m, **kw)

    m, it = fresh()
    _take(it, 3)
    m.set_probabilities([0.0, 1.0])
    it_state = json.loads(json.dumps(it.get_state()))
    m_state = m.get_state()
    assert '"skip": 0' not in json.dumps(it_state)
    reference = _take(it, 25)
    m2, it2 = fresh()
    m2.set_state(m_state)
    it2.set_state(it_state)
    assert _equal(_take(it2, 25), reference)


def test_live_vector_shared_with_pickled_copies():
    """What a data worker sees: a pickled mixture reads the owner's latest probabilities."""
    m = _mix("ul2_decoder")
    worker = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(worker.probabilities, [0.6, 0.2, 0.1, 0.1])
    m.set_probabilities([0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(worker.probabilities, [0, 0, 0, 1])
    assert worker.draw_arm(np.random.default_rng(0)) == 3
    with pytest.raises(RuntimeError, match="process that built"):
        worker.set_probabilities([1.0, 0, 0, 0])
    independent = copy.deepcopy(m)
    independent.set_probabilities([1.0, 0, 0, 0])
    np.testing.assert_allclose(m.probabilities, [0, 0, 0, 1])
    v = LiveVector(np.ones(3) / 3)
    assert v.get()[0] == 0 and len(v) == 3


def test_set_probabilities_reaches_a_worker_process():
    """num_workers=1: after set_probabilities, batches follow the new vector once the
    worker's prefetched batches are used up (the switch point itself is not reproducible)."""
    docs = _docs(40, seed=4, hi=30)
    m = Mixture("two", [NTPArm(), CopyArm(8, 16)], [1.0, 0.0], special=SP, seq_len=64)
    it = make_batch_iterator(docs, TOK, seq_len=64, batch_size=2, seed=0, sample_transform=m, num_workers=1)
    try:
        first = next(it)
        assert set(first["arm_ids"][first["segment_ids"] > 0].tolist()) == {0}
        m.set_probabilities([0.0, 1.0])
        for _ in range(200):
            b = next(it)
            if set(b["arm_ids"][b["segment_ids"] > 0].tolist()) == {1}:
                break
        else:
            pytest.fail("the worker never picked up the new probabilities")
    finally:
        it.close()


# ---------------------------------------------------------------- validation sets (§6.8)


def test_validation_sets_per_arm():
    m = _mix("birdie", seq_len=128)
    docs = _docs(6, seed=5, lo=150, hi=300)
    sets = make_validation_sets(docs, TOK, m, seq_len=128, rows_per_arm=3, seed=0, batch_size=2)
    assert list(sets) == list(m.arm_names)
    again = make_validation_sets(docs, TOK, m, seq_len=128, rows_per_arm=3, seed=0, batch_size=2)
    for i, name in enumerate(m.arm_names):
        batches = sets[name]
        assert len(batches) == 2 and _equal(batches, again[name])
        for b in batches:
            assert set(b) == set(FIELDS) and all(b[k].shape == (2, 128) for k in FIELDS)
            assert set(b["arm_ids"][b["segment_ids"] > 0].tolist()) == {i}  # only this arm
        assert (batches[1]["segment_ids"][1] == 0).all()  # row 4 of 3 is padding
        assert (batches[0]["segment_ids"] > 0).any(axis=1).all()


def test_validation_sets_from_arms_and_errors():
    sets = make_validation_sets(_docs(3, lo=50, hi=60), TOK, [PLMArm(), InfillArm(rate=0.5, mean_span=3)],
                                seq_len=64, rows_per_arm=2, seed=1)
    assert list(sets) == ["plm", "infill/r50/mu3"] and sets["plm"][0]["inputs"].shape == (2, 64)
    with pytest.raises(DataError, match="sc/len384-768/n4/after"):
        make_validation_sets(["ab", "cd"], TOK, [SCArm(4, "after", 384, 768)], seq_len=64, rows_per_arm=1, seed=0)


# ---------------------------------------------------------------- objectives show


def _show(capsys, *argv):
    p = argparse.ArgumentParser()
    add_objectives_parser(p.add_subparsers(dest="command"))
    assert run_objectives(p.parse_args(["objectives", "show", *argv])) == 0
    return capsys.readouterr().out


def test_objectives_show_text_and_json(capsys):
    out = _show(capsys, "--text", "Hello there, this is a short example text for every objective class.")
    for c in OBJECTIVE_CLASSES:
        assert f"[{c}] " in out
    assert "[S0]" in out and "[MASK]" in out and "[CONTEXT]" in out and "region: 1" in out
    data = json.loads(_show(capsys, "--json", "--seq-len", "128", "--seed", "2"))
    assert [a["name"] for a in data["arms"]] == [a.name for a in GRID] and data["seq_len"] == 128
    for a in data["arms"]:
        assert len(a["inputs"]) == len(a["targets"]) == len(a["region"]) == len(a["prefix"]) + len(a["labels"]) <= 128
        assert a["inputs"][len(a["prefix"])] == SP.bg
