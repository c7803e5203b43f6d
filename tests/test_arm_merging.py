"""Arms that coincide at a row length are merged (issue 16): distinct configurations only.

The expectations are checked against the objectives themselves (samples built and fitted
by ``fit_sample``), not against the merging module's own size formula.
"""

import collections
import dataclasses

import numpy as np
import pytest
from objective_oracles import ObjectiveOracle

from birdie_jax.cli import main
from birdie_jax.config import load_config
from birdie_jax.objectives import birdie_grid, build, build_mixture, fit_sample
from birdie_jax.objectives.dedup import merge_coinciding, sample_size
from birdie_jax.tokenizer import ByteTokenizer
from birdie_jax.training.loop import train

SP = ByteTokenizer().special
random_text = ObjectiveOracle(SP).random_text
GRID = birdie_grid()
BY_NAME = {a.name: a for a in GRID}


def _birdie(seq_len, **overrides):
    cfg = load_config("hawk_tiny", "mixture=birdie", f"data.seq_len={seq_len}", *overrides.get("extra", ()))
    return build_mixture(cfg.mixture, SP, seq_len=seq_len)


def _fitted_lengths(arm, budget, seeds=range(12)):
    """Text lengths fit_sample uses for ``arm`` from long texts (the arm's length control
    and the row decide), over a few seeds."""
    out = set()
    for seed in seeds:
        rng = np.random.default_rng(seed)
        f = fit_sample(random_text(rng, 3000), arm, rng, special=SP, budget=budget)
        assert not f.fallback
        out.add(f.consumed)
    return out


def test_sample_size_matches_the_built_samples():
    rng = np.random.default_rng(0)
    x = random_text(rng, 2048)
    for arm in GRID:
        if sample_size(arm, 8) is None:
            assert arm.objective in ("ntp", "plm", "sc")
            continue
        for length in rng.integers(2, arm.max_len + 1, 12):
            prefix, labels = build(x[:length], arm, rng, special=SP)
            assert sample_size(arm, int(length)) == len(prefix) + len(labels), (arm.name, length)


def test_seq_len_256_merges_row_bound_length_buckets():
    mixture = _birdie(256)
    assert len(GRID) == 95 and len(mixture.arms) == 57 and mixture.merged_count == 95
    groups = {m[0]: m for m in mixture.arm_members}
    # Spot checks derived by hand (budget 255 = 256 − paradigm token): deshuffling makes 2L
    # tokens, so every bucket from L = 128 up is cut; copy 64–256 still has lengths that fit.
    assert groups["deshuf/len128-256/p50"] == ("deshuf/len128-256/p50", "deshuf/len512-1024/p50")
    assert groups["copy/len64-256"] == ("copy/len64-256",) and groups["copy/len256-1024"] == ("copy/len256-1024",)
    assert groups["infill/len256-512/r15/mu8"] == ("infill/len256-512/r15/mu8", "infill/len512-1024/r15/mu8",
                                                   "infill/len1024-2048/r15/mu8")
    assert groups["infill/len128-256/r15/mu8"] == ("infill/len128-256/r15/mu8",)
    # AE 192–384 at 85 %, μ 3: k is capped at L − n_m + 1 = 30 at L = 192, 2·192 − 163 + 30 = 251 fits.
    assert groups["ae/len192-384/r85/mu3/noshuf"] == ("ae/len192-384/r85/mu3/noshuf",)
    assert groups["ae/len384-768/r85/mu3/noshuf"] == ("ae/len384-768/r85/mu3/noshuf", "ae/len768-1536/r85/mu3/noshuf")
    assert all(a.objective not in ("sc", "ntp", "plm") or len(groups[a.name]) == 1 for a in mixture.arms)
    counts = collections.Counter(a.objective for a in mixture.arms)
    assert [counts[c] for c in ("ntp", "plm", "sc", "copy", "deshuf", "infill", "ae")] == [1, 1, 16, 2, 2, 17, 18]
    # The controller's start: uniform over classes, then over the distinct arms of a class.
    np.testing.assert_allclose(mixture.probabilities[[a.objective == "deshuf" for a in mixture.arms]], 1 / 14)


def test_merged_arms_behave_alike_and_kept_ones_differ():
    """Through fit_sample: every member of a merged group ends up at the same few lengths (the
    row's, up to the cut's rounding); copy 64–256 and 256–1024, kept apart, do not."""
    mixture = _birdie(256)
    for members in mixture.arm_members:
        if len(members) > 1:
            lengths = [_fitted_lengths(BY_NAME[n], 255, range(4)) for n in members]
            union = set().union(*lengths)
            assert max(union) - min(union) <= 2, (members, lengths)
    assert _fitted_lengths(BY_NAME["copy/len256-1024"], 255) == {127}
    assert min(_fitted_lengths(BY_NAME["copy/len64-256"], 255)) < 127


def test_paper_row_length_keeps_the_grid():
    mixture = _birdie(2048)
    assert mixture.arm_names == tuple(a.name for a in GRID) and mixture.merged_count == 95
    assert all(len(m) == 1 for m in mixture.arm_members)


def test_fixed_weights_of_merged_arms_are_summed():
    cfg = load_config("hawk_tiny", "mixture=fixed", "data.seq_len=256").mixture
    cfg = dataclasses.replace(cfg, weights={"deshuf/len128-256/p50": 1.0, "deshuf/len512-1024/p50": 2.0,
                                            "copy/len64-256": 1.0})
    mixture = build_mixture(cfg, SP, seq_len=256)
    assert mixture.arm_names == ("copy/len64-256", "deshuf/len128-256/p50")
    np.testing.assert_allclose(mixture.probabilities, [0.25, 0.75])
    assert mixture.to_dict()["merged"] == [["deshuf/len128-256/p50", "deshuf/len512-1024/p50"]]


def test_merge_keeps_order_and_handles_no_probabilities():
    arms = [BY_NAME["deshuf/len512-1024/p100"], BY_NAME["copy/len64-256"], BY_NAME["deshuf/len128-256/p100"]]
    merged = merge_coinciding(arms, budgets=[255] * 3)
    assert [a.name for a in merged.arms] == ["deshuf/len512-1024/p100", "copy/len64-256"]
    assert merged.probabilities is None and merged.merged == (("deshuf/len512-1024/p100", "deshuf/len128-256/p100"),)
    assert merge_coinciding(arms, budgets=[2047] * 3).members == tuple((a.name,) for a in arms)


def test_objectives_show_and_training_start_line_report_the_count(tmp_path, capsys):
    assert main(["objectives", "show", "--seq-len", "256"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("seq_len 256: 95 arms, 57 distinct")
    assert "  deshuf/len128-256/p50 = deshuf/len512-1024/p50\n" in out
    assert main(["objectives", "show", "--seq-len", "2048"]) == 0
    assert capsys.readouterr().out.startswith("seq_len 2048: 95 arms, 95 distinct\n")
    # The fixed mixture prints the line by the same code as birdie; a birdie run stopped before
    # its first step aborts the interpreter at exit (a controller thread), so it is not used here.
    cfg = load_config("gated_ssm_tiny", "mixture=fixed", "data.seq_len=256", "data.batch_size=1",
                      "mixture.val_rows_per_config=1", "train.steps=2", "train.progress=true",
                      "train.tensorboard=false", f"train.run_dir={tmp_path / 'run'}")
    train(cfg, stop_after=0)
    assert "mixture fixed (57 distinct arms of 95)" in capsys.readouterr().out


@pytest.mark.parametrize("seq_len", [128, 512])
def test_merged_groups_are_row_bound_at_other_lengths(seq_len):
    mixture = _birdie(seq_len)
    assert len(mixture.arms) < 95 and mixture.merged_count == 95
    for members in mixture.arm_members:
        for name in members[1:] if len(members) > 1 else ():
            arm = BY_NAME[name]
            assert sample_size(arm, arm.min_len) > seq_len - 1
