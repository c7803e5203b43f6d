"""Training end to end on tiny shapes: loss falls, checkpoints resume exactly, plots and metrics appear."""

import json
import os

import chex
import numpy as np
import pytest
from flax import nnx

from birdie_jax.config import load_config
from birdie_jax.errors import CheckpointError
from birdie_jax.inference import generate_text, load_checkpoint
from birdie_jax.training.loop import train

TINY_RUN = ("data.seq_len=32", "data.batch_size=2", "train.warmup_steps=1", "train.eval_every=3",
            "train.checkpoint_every=3", "train.log_every=1", "train.tensorboard=false", "train.progress=false")


def _cfg(run_dir, *extra):
    return load_config("hawk_tiny", *TINY_RUN, f"train.run_dir={run_dir}", *extra)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full")
    return train(_cfg(run_dir, "train.steps=6"), quiet=True)


def test_tiny_run_loss_decreases(tmp_path):
    cfg = load_config("gated_ssm_tiny", *TINY_RUN, f"train.run_dir={tmp_path}", "train.steps=25",
                      "train.learning_rate=1e-2", "train.checkpoint_every=0", "train.eval_every=0")
    result = train(cfg, quiet=True)
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        losses = [r["loss"] for r in map(json.loads, f) if "loss" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 0.5
    assert os.path.exists(os.path.join(tmp_path, "loss.png"))
    assert result.step == 25


def test_run_folder_contents(uninterrupted):
    run_dir = uninterrupted.run_dir
    for name in ("config.yaml", "metrics.jsonl", "loss.png", "checkpoints"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["3", "6"]
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert any("val_loss" in r for r in records)


def test_stop_then_resume_reproduces_uninterrupted_parameters(tmp_path, uninterrupted):
    cfg = _cfg(tmp_path, "train.steps=6")
    stopped = train(cfg, stop_after=3, quiet=True)  # as if killed right after the step-3 checkpoint
    assert stopped.step == 3
    resumed = train(cfg, resume=True, quiet=True)
    assert resumed.step == 6
    chex.assert_trees_all_equal(resumed.params, uninterrupted.params)
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f if '"loss"' in line]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_training_into_a_used_run_dir_without_resume_is_refused(uninterrupted):
    cfg = _cfg(uninterrupted.run_dir, "train.steps=6")
    before = sorted(os.listdir(os.path.join(uninterrupted.run_dir, "checkpoints")))
    with pytest.raises(CheckpointError, match="--resume"):
        train(cfg, quiet=True)
    assert sorted(os.listdir(os.path.join(uninterrupted.run_dir, "checkpoints"))) == before


def test_resume_with_another_model_config_is_refused(uninterrupted):
    cfg = _cfg(uninterrupted.run_dir, "train.steps=9", "model.d_model=48")
    with pytest.raises(CheckpointError, match="model.d_model"):
        train(cfg, resume=True, quiet=True)


def test_checkpoint_loads_for_generation(uninterrupted):
    run = load_checkpoint(uninterrupted.run_dir)
    assert run.step == 6
    chex.assert_trees_all_equal(nnx.state(run.model), nnx.state(uninterrupted.model))
    text = generate_text(run, "The ", max_new_tokens=5)
    assert isinstance(text, str)


@pytest.mark.parametrize("mixture", ["ul2", "fixed"])
def test_objective_mixtures_train_end_to_end(tmp_path, mixture):
    cfg = _cfg(tmp_path, "train.steps=3", f"mixture={mixture}", "data.seq_len=128", "train.eval_every=3",
               "mixture.val_rows_per_config=1")
    result = train(cfg, quiet=True)
    assert result.step == 3 and np.isfinite(result.final_loss)
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert any(k.startswith("loss/") for r in records for k in r)
    evals = [r for r in records if "val_loss" in r]
    assert evals and any(k.startswith("val_loss/") for k in evals[-1])


BIRDIE_SMALL = ("mixture=birdie", "data.seq_len=128", "mixture.val_rows_per_config=1", "model.bidirectional=alternate",
                "controller.critic_width=16", "controller.critic_state=16", "controller.critic_layers=1",
                "controller.critic_steps=5", "controller.num_candidates=64", "train.steps=8", "train.eval_every=4")


def _final_probabilities(run_dir):
    from birdie_jax.training.checkpoint import Checkpointer

    ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"), read_only=True)
    try:
        return np.asarray(ckpt.read_meta()["mixture"]["probabilities"])
    finally:
        ckpt.close()


def test_birdie_run_resumes_with_the_same_mixture_decisions(tmp_path, capsys):
    full = train(_cfg(tmp_path / "full", *BIRDIE_SMALL), quiet=True)
    cfg = _cfg(tmp_path / "killed", *BIRDIE_SMALL)
    train(cfg, stop_after=3, quiet=True)
    resumed = train(cfg, resume=True, quiet=True)
    np.testing.assert_array_equal(_final_probabilities(tmp_path / "killed"), _final_probabilities(tmp_path / "full"))
    chex.assert_trees_all_equal(resumed.params, full.params)
    with open(os.path.join(tmp_path / "full", "metrics.jsonl")) as f:
        evals = [json.loads(line) for line in f if "mixture/prob/infill" in line]
    assert len(evals) >= 3 and all(abs(sum(r[f"mixture/prob/{c}"] for c in
                                           ("ntp", "plm", "sc", "copy", "deshuf", "infill", "ae")) - 1) < 1e-6
                                       for r in evals)
    assert os.path.exists(tmp_path / "full" / "mixture.png")
    from birdie_jax.cli import main

    assert main(["plot-mixture", str(tmp_path / "full")]) == 0


def test_default_run_is_a_bidirectional_birdie_hawk():
    cfg = load_config("default")
    assert (cfg.mixture.name, cfg.model.architecture, cfg.model.bidirectional) == ("birdie", "hawk", "alternate")
