"""Objectives, arms, span corruption, row fitting and paradigm tokens (spec §2-§4, §10 items 1-9).

Toy data: random byte ids with the byte tokenizer. Every arm of the grid, many cheap seeds.
"""

import collections
import math

import numpy as np
import pytest
from objective_oracles import ObjectiveOracle, is_concatenation_of, masked_count, span_count, split_at, units_after

from birdie_jax.data.layout import IGNORE_ID, layout_sample
from birdie_jax.data.packing import pack_row
from birdie_jax.errors import ConfigError
from birdie_jax.objectives import (
    AEArm, CopyArm, DeshufArm, InfillArm, Mixture, NTPArm, PLMArm, SCArm, arm_from_dict, birdie_grid, build,
    fit_sample,
)
from birdie_jax.objectives.arms import span_validity
from birdie_jax.objectives.objectives import Placement, selective_copy
from birdie_jax.objectives.spans import corrupt_spans, num_masked, num_spans, random_composition
from birdie_jax.tokenizer import OBJECTIVE_CLASSES, ByteTokenizer

TOK = ByteTokenizer()
SP = TOK.special
ORACLE = ObjectiveOracle(SP)  # tests/objective_oracles.py: the spec's properties, no code shared with the package
PARADIGM_IDS = ORACLE.paradigm_ids
check_sample, random_text, recover_text = ORACLE.check_sample, ORACLE.random_text, ORACLE.recover_text
strip_paradigm = ORACLE.strip_paradigm
GRID = birdie_grid()
BIG = 1 << 16  # a budget that never binds
SPAN_ARMS = [a for a in GRID if a.objective in ("infill", "ae")]


def _draw_length(arm, available, rng):
    """Spec §2: L ~ U{min_len..max_len} of the arm, capped by the text; NTP and PLM take it all."""
    if getattr(arm, "min_len", None) is None:
        return available
    return min(available, int(rng.integers(arm.min_len, arm.max_len + 1)))


def _natural_sample(arm, seed, extra=0):
    """One sample of arm at its own drawn length L (the text is longer, the row never binds)."""
    rng = np.random.default_rng(seed)
    L = _draw_length(arm, 2048 + extra, rng)
    x = random_text(rng, 2048 + extra)[:L]
    return x, build(x, arm, rng, special=SP), rng


# ---------------------------------------------------------------- arms (§3, §10.9)


def test_grid_counts_order_and_validity_filter():
    counts = collections.Counter(a.objective for a in GRID)
    assert [counts[c] for c in OBJECTIVE_CLASSES] == [1, 1, 16, 2, 4, 35, 36] and len(GRID) == 95
    classes = [a.objective for a in GRID]
    assert classes == sorted(classes, key=OBJECTIVE_CLASSES.index)  # table order
    names = [a.name for a in GRID]
    assert len(set(names)) == 95
    assert names[:4] == ["ntp", "plm", "sc/len384-768/n1/before", "sc/len768-1536/n1/before"]
    assert names[18:24] == ["copy/len64-256", "copy/len256-1024", "deshuf/len128-256/p50",
                            "deshuf/len128-256/p100", "deshuf/len512-1024/p50", "deshuf/len512-1024/p100"]
    assert names[24] == "infill/len128-256/r5/mu3" and names[-1] == "ae/len768-1536/r85/mu32/shuf"
    # The one dropped arm and the one min_len override.
    assert span_validity(128, 256, 0.05, 32) is None
    assert span_validity(256, 512, 0.05, 32) == 320
    infill = {(a.min_len, a.max_len, a.rate, a.mean_span) for a in GRID if a.objective == "infill"}
    assert (128, 256, 0.05, 32) not in infill and (320, 512, 0.05, 32) in infill
    assert sum(1 for a in GRID if a.objective == "infill" and a.min_len not in (128, 256, 512, 1024)) == 1
    for a in GRID:  # JSON round trip
        assert arm_from_dict(a.to_dict()) == a


@pytest.mark.parametrize("bad", [
    dict(cls=SCArm, n_spans=5, query="before", min_len=1, max_len=2),
    dict(cls=SCArm, n_spans=1, query="middle", min_len=1, max_len=2),
    dict(cls=CopyArm, min_len=10, max_len=5),
    dict(cls=DeshufArm, min_len=1, max_len=5, fraction=0.0),
    dict(cls=InfillArm, rate=1.5, mean_span=3),
    dict(cls=AEArm, min_len=1, max_len=5, rate=0.5, mean_span=0.5, shuffle=False),
])
def test_bad_arm_controls_are_config_errors(bad):
    cls = bad.pop("cls")
    with pytest.raises(ConfigError, match="arm"):
        cls(**bad)


def test_arm_from_dict_errors():
    with pytest.raises(ConfigError, match="unknown objective class 'lm'"):
        arm_from_dict({"objective": "lm"})
    with pytest.raises(ConfigError, match="does not match"):
        arm_from_dict({"objective": "copy", "name": "copy/len1-2", "min_len": 1, "max_len": 3})


# ---------------------------------------------------------------- every arm (§10.1-7)


@pytest.mark.parametrize("arm", GRID, ids=lambda a: a.name)
def test_every_arm_properties_and_determinism(arm):
    for seed in range(6):
        x, pair, _ = _natural_sample(arm, seed)
        assert pair is not None
        check_sample(arm, x, *pair)
        x2, pair2, _ = _natural_sample(arm, seed)  # same seed, same sample
        assert all(np.array_equal(a, b) for a, b in zip(pair, pair2))
    if arm.objective not in ("ntp", "copy"):  # randomised classes differ across seeds
        samples = {tuple(np.concatenate(_natural_sample(arm, s)[1]).tolist()) for s in range(4)}
        assert len(samples) > 1


@pytest.mark.parametrize("seq_len", [24, 96, 256])
@pytest.mark.parametrize("objective", OBJECTIVE_CLASSES)
def test_every_arm_fits_the_row(objective, seq_len):
    """fit_sample: fits the budget, >= 1 label, consumes >= 1 token, the properties hold for
    the text it consumed (or it is a flagged NTP fallback)."""
    for arm in (a for a in GRID if a.objective == objective):
        for seed in range(3):
            rng = np.random.default_rng([seed, seq_len])
            tokens = random_text(rng, int(rng.integers(1, 3000)))
            f = fit_sample(tokens, arm, rng, special=SP, budget=seq_len - 1)
            assert len(f.prefix) + len(f.labels) <= seq_len - 1 and len(f.labels) >= 1
            assert 1 <= f.consumed <= len(tokens)
            if f.fallback:
                assert len(f.prefix) == 0 and f.consumed == min(len(tokens), seq_len - 1)
                np.testing.assert_array_equal(f.labels, tokens[:f.consumed])
            else:
                check_sample(arm, tokens[:f.consumed], f.prefix, f.labels)


def test_short_text_falls_back_to_ntp():
    for n in range(1, 8):
        tokens = random_text(np.random.default_rng(n), n)
        for arm in GRID:
            f = fit_sample(tokens, arm, np.random.default_rng(0), special=SP, budget=64)
            assert f.consumed == n and len(f.labels) >= 1
            if f.fallback:
                np.testing.assert_array_equal(f.labels, tokens)
    tokens = random_text(np.random.default_rng(0), 7)
    assert fit_sample(tokens, PLMArm(), np.random.default_rng(0), special=SP, budget=64).fallback  # PLM needs 8
    assert not fit_sample(random_text(np.random.default_rng(0), 8), PLMArm(), np.random.default_rng(0),
                          special=SP, budget=64).fallback
    # A row too small for selective copying's query: NTP of the row.
    f = fit_sample(random_text(np.random.default_rng(1), 500), GRID[2], np.random.default_rng(0), special=SP, budget=8)
    assert f.fallback and f.consumed == 8


def test_length_control_cuts_and_uses_the_row():
    """A long text and a small row: the sample is rebuilt from fewer tokens until it fits, the
    rest is left over (copying: about half the row each for prefix and labels)."""
    tokens = random_text(np.random.default_rng(0), 5000)
    f = fit_sample(tokens, CopyArm(256, 1024), np.random.default_rng(0), special=SP, budget=255)
    assert not f.fallback and 100 <= f.consumed <= 127 and len(f.prefix) + len(f.labels) <= 255


# ---------------------------------------------------------------- span corruption (§2.5, §10.4)


def test_span_corruption_exact_counts():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        L = int(rng.integers(1, 300))
        r = float(rng.choice([0.05, 0.15, 0.5, 0.85, 0.99]))
        mu = float(rng.choice([1, 3, 8, 32, 64]))
        c = corrupt_spans(L, r, mu, rng)
        n_m = max(1, math.floor(r * L + 0.5))
        assert c.num_masked == n_m == num_masked(L, r) == masked_count(L, r)
        assert c.num_spans == max(1, min(math.floor(n_m / mu + 0.5), L - n_m + 1)) == num_spans(L, n_m, mu)
        assert c.num_spans == span_count(L, n_m, mu)
        assert (c.lengths >= 1).all() and c.starts[0] >= 0 and c.ends[-1] <= L
        assert (c.starts[1:] > c.ends[:-1]).all()  # a gap of >= 1 between spans
        assert c.mask().sum() == n_m


def test_composition_is_uniform():
    """All C(5, 2) = 10 compositions of 6 into 3 positive parts come up about equally often."""
    rng = np.random.default_rng(0)
    counts = collections.Counter(tuple(random_composition(6, 3, rng)) for _ in range(20_000))
    assert len(counts) == 10
    assert all(abs(c / 20_000 - 0.1) < 0.01 for c in counts.values())


@pytest.mark.parametrize("arm", SPAN_ARMS, ids=lambda a: a.name)
def test_realised_rate_and_mean_span(arm):
    """Over 40 samples at the arm's own lengths: realised corruption rate within 0.5 percentage
    points of nominal (rounding error <= 0.5/L, L >= 128); mean span length over samples whose
    span count is not capped at L - n_m + 1 within mu/(2 k) + 2 % of mu, k the smallest span count
    at min_len (round(n_m/mu) rounds by at most half a span); capped samples have the cap."""
    masked = total = spans_masked = spans = 0
    k_min = span_count(10**9, masked_count(arm.min_len, arm.rate), arm.mean_span)
    for seed in range(40):
        rng = np.random.default_rng(seed)
        L = _draw_length(arm, 4096, rng)
        c = corrupt_spans(L, arm.rate, arm.mean_span, rng)
        masked, total = masked + c.num_masked, total + L
        if max(1, math.floor(c.num_masked / arm.mean_span + 0.5)) > L - c.num_masked + 1:
            assert c.num_spans == L - c.num_masked + 1  # capped: as many spans as fit
        else:
            spans_masked, spans = spans_masked + c.num_masked, spans + c.num_spans
    assert abs(masked / total - arm.rate) < 0.005
    if spans:
        assert abs(spans_masked / spans - arm.mean_span) <= arm.mean_span * (1 / (2 * k_min) + 0.02)
    else:
        assert arm.rate > 0.5  # only the 85 % AE arms are capped throughout


# ---------------------------------------------------------------- class details


def test_infill_table1_format():
    """Each span is followed by its sentinel; sentinels S0.. in order; filling gives back x."""
    x = TOK.encode("abcdefghijklmnopqrstuvwxyz0123456789")
    for seed in range(50):
        prefix, labels = build(x, InfillArm(rate=0.5, mean_span=3), np.random.default_rng(seed), special=SP)
        k = int(np.isin(prefix, SP.sentinels).sum())
        assert prefix[np.isin(prefix, SP.sentinels)].tolist() == [SP.sentinel(j) for j in range(k)]
        assert labels[np.isin(labels, SP.sentinels)].tolist() == [SP.sentinel(j) for j in range(k)]
        assert labels[-1] == SP.sentinel(k - 1)
        assert TOK.decode(recover_text(prefix, labels, "infill")) == TOK.decode(x)


def test_sentinels_cycle_past_the_pool():
    x = random_text(np.random.default_rng(0), 2000)
    prefix, labels = build(x, InfillArm(rate=0.5, mean_span=1), np.random.default_rng(0), special=SP)
    k = int(np.isin(prefix, SP.sentinels).sum())
    assert k > SP.num_sentinels
    np.testing.assert_array_equal(recover_text(prefix, labels, "infill"), x)


def test_deshuffle_fraction_is_honoured():
    """p = 0.5 moves at most round(L/2) tokens and p = 1 moves most of them."""
    x = np.random.default_rng(0).permutation(256).astype(np.int32)  # 256 distinct ids
    half = build(x, DeshufArm(128, 256, 0.5), np.random.default_rng(1), special=SP)[0]
    full = build(x, DeshufArm(128, 256, 1.0), np.random.default_rng(1), special=SP)[0]
    assert 100 <= (half != x).sum() <= 128
    assert (full != x).sum() >= 240


def test_autoencoding_shuffle_permutes_units():
    """Shuffled and unshuffled prefixes (same seed, so the same corruption) hold the same
    multiset of units (gap + MASK, and the final gap: cut after each MASK of the unshuffled
    prefix, which the oracle checks against x); labels are the original either way."""
    rng0 = np.random.default_rng(0)
    moved = 0
    for seed in range(100):
        x = random_text(rng0, int(rng0.integers(2, 300)))
        kw = dict(min_len=1, max_len=1000, rate=float(rng0.choice([0.15, 0.85])), mean_span=3)
        plain = build(x, AEArm(shuffle=False, **kw), np.random.default_rng(seed), special=SP)
        shuf = build(x, AEArm(shuffle=True, **kw), np.random.default_rng(seed), special=SP)
        check_sample(AEArm(shuffle=False, **kw), x, *plain)
        check_sample(AEArm(shuffle=True, **kw), x, *shuf)
        units = units_after(plain[0], SP.mask)
        np.testing.assert_array_equal(shuf[1], x)
        assert is_concatenation_of(shuf[0].tolist(), units)
        moved += not np.array_equal(shuf[0], plain[0])
    assert moved > 80


def test_selective_copy_paper_example():
    """x = ABCDEF, span DE, a = 2, b = 1, query after (paper A.5)."""
    x = TOK.encode("ABCDEF")
    prefix, labels = selective_copy(x, [Placement(start=3, length=2, before=2, after=1)], False, SP)
    assert TOK.decode(prefix) == "[CONTEXT]ABCDEF[COPY][START]BC[END]F"
    assert prefix.tolist() == [SP.context, *TOK.encode("ABCDEF"), SP.copy, SP.start, *TOK.encode("BC"),
                               SP.end, *TOK.encode("F")]
    assert labels.tolist() == [*TOK.encode("DE"), SP.done]
    before, _ = selective_copy(x, [Placement(start=3, length=2, before=2, after=1)], True, SP)
    assert TOK.decode(before) == "[COPY][START]BC[END]F[CONTEXT]ABCDEF"


def test_selective_copy_two_spans_and_separator():
    x = TOK.encode("0123456789abcdefghijklmnopqrstuvwxyz")
    placements = [Placement(start=2, length=4, before=1, after=2), Placement(start=20, length=5, before=3, after=1)]
    prefix, labels = selective_copy(x, placements, True, SP)
    assert TOK.decode(labels) == "2345[SEP]klmno[DONE]"
    assert TOK.decode(prefix).startswith("[COPY][START]1[END]67[START]hij[END]p[CONTEXT]0123")


def test_selective_copy_reduces_spans_then_falls_back():
    arm = SCArm(n_spans=4, query="after", min_len=384, max_len=768)
    counts = collections.Counter()
    for seed in range(30):
        x = random_text(np.random.default_rng(seed), 40)
        pair = build(x, arm, np.random.default_rng(seed), special=SP)
        assert pair is not None
        check_sample(arm, x, *pair)
        counts[len(split_at(pair[1][:-1], {SP.sep}))] += 1
    assert max(counts) < 4  # 4 superspans of >= 6 tokens rarely fit 40 by rejection
    assert build(random_text(np.random.default_rng(0), 5), arm, np.random.default_rng(0), special=SP) is None


def test_plm_split_bounds():
    for L in (8, 9, 10, 33, 256):
        splits = set()
        for seed in range(200):
            prefix, labels = build(np.arange(L) % 256, PLMArm(), np.random.default_rng(seed), special=SP)
            assert len(prefix) >= max(4, math.ceil(L / 2)) and len(labels) >= 4
            splits.add(len(prefix))
        assert min(splits) == max(4, math.ceil(L / 2)) and max(splits) == L - 4


# ---------------------------------------------------------------- paradigm tokens (§4, §10.8)


def test_paradigm_token_once_at_an_end_half_appended():
    mixture = Mixture("all", GRID, np.full(95, 1 / 95), special=SP, seq_len=256)
    rng = np.random.default_rng(0)
    appended = placed = 0
    for i in range(1500):
        tokens = random_text(rng, int(rng.integers(1, 600)))
        for prefix, labels, tag in mixture(tokens, np.random.default_rng(i)):
            cls = mixture.tag_classes[tag]
            ids = prefix.tolist()
            where = [j for j, t in enumerate(ids) if t in PARADIGM_IDS]
            assert len(where) == 1 and where[0] in (0, len(ids) - 1)
            assert ids[where[0]] == SP.paradigm[cls]
            assert not set(labels.tolist()) & PARADIGM_IDS
            if len(ids) > 1:
                placed += 1
                appended += where[0] == len(ids) - 1
    assert placed > 2500 and abs(appended / placed - 0.5) < 0.04  # 0.04 is over 4 standard errors


@pytest.mark.parametrize("append_prob", [0.0, 1.0])
def test_paradigm_append_probability_extremes(append_prob):
    mixture = Mixture("copy", [CopyArm(4, 8)], [1.0], special=SP, seq_len=64, append_prob=append_prob)
    for prefix, _, _ in mixture(random_text(np.random.default_rng(0), 200), np.random.default_rng(0)):
        assert prefix[-1 if append_prob else 0] == SP.paradigm["copy"]


def test_paradigm_off_and_ul2_tokens():
    off = Mixture("plain", [PLMArm()], [1.0], special=SP, seq_len=64, paradigm="off")
    (prefix, labels, _), = off(random_text(np.random.default_rng(0), 40), np.random.default_rng(0))
    assert not set(prefix.tolist()) & PARADIGM_IDS
    arms = [NTPArm(), PLMArm(), InfillArm(rate=0.15, mean_span=3), InfillArm(rate=0.5, mean_span=3),
            InfillArm(rate=0.15, mean_span=64)]
    ul2 = Mixture("u", arms, np.full(5, 0.2), special=SP, seq_len=64, paradigm="ul2", append_prob=0.0)
    assert [ul2.paradigm_id(i) for i in range(5)] == [None, SP.s, SP.r, SP.x, SP.x]


# ---------------------------------------------------------------- layout and packing (§10.10)


def test_layout_regions_positions_and_arm_ids():
    a = layout_sample([4, 5, 6], [7, 8, 9], bg_id=SP.bg, arm_id=3)
    b = layout_sample([], [1, 2], bg_id=SP.bg, arm_id=0)
    assert a["inputs"].tolist() == [4, 5, 6, SP.bg, 7, 8] and a["region"].tolist() == [1, 0, 0, 2, 2, 2]
    assert a["targets"].tolist() == [IGNORE_ID] * 3 + [7, 8, 9] and a["arm_ids"].tolist() == [3] * 6
    row = pack_row([a, b, a], seq_len=16, pad_id=SP.pad)
    assert row["segment_ids"].tolist() == [1] * 6 + [2] * 2 + [3] * 6 + [0] * 2
    assert row["positions"].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 0, 1, 2, 3, 4, 5, 0, 0]
    assert row["region"][6:8].tolist() == [2, 2]  # empty prefix: all causal, still a new segment
    assert row["arm_ids"].tolist() == [3] * 6 + [0] * 2 + [3] * 6 + [-1] * 2
    assert layout_sample([1], [2], bg_id=SP.bg)["arm_ids"].tolist() == [-1, -1]


def test_strip_paradigm_oracle():
    p, where = strip_paradigm(np.asarray([SP.paradigm["ae"], 1, 2]))
    assert p.tolist() == [1, 2] and where == [0]
