"""Initial-state interventions (length generalization): each one's defining behaviour,
TBTT's equivalence with whole-document processing, and exact resume of a carried state."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_model_config

from birdie_jax.config import InitialStateConfig, load_config
from birdie_jax.data.streams import ContinuingStreams
from birdie_jax.errors import ConfigError
from birdie_jax.models import LanguageModel
from birdie_jax.tokenizer import build_tokenizer
from birdie_jax.training import initial_state as iv
from birdie_jax.training.loop import train
from flax import nnx

TOK = build_tokenizer("byte")
TINY_RUN = ("data.seq_len=32", "data.batch_size=2", "train.warmup_steps=1", "train.eval_every=0",
            "train.checkpoint_every=3", "train.log_every=1", "train.tensorboard=false", "train.progress=false")


@pytest.fixture(scope="module")
def hawk():
    return LanguageModel(tiny_model_config("hawk", vocab_size=TOK.vocab_size), rngs=nnx.Rngs(0))


def test_statistics_match_the_states_they_were_fitted_on():
    rng = np.random.default_rng(0)
    batches = [[{"rnn": rng.normal(1.5, 2.0, (4, 6)).astype(np.float32)},
                {"ssm": rng.normal(size=(4, 3, 2, 5)).astype(np.float32) * np.arange(1, 4)[None, :, None, None]}]
               for _ in range(5)]
    stats = iv.init_statistics([{k: jnp.asarray(v) for k, v in layer.items()} for layer in batches[0]])
    for b in batches:
        stats = iv.update_statistics(stats, [{k: jnp.asarray(v) for k, v in layer.items()} for layer in b])
    rnn = np.concatenate([b[0]["rnn"] for b in batches])
    ssm = np.concatenate([b[1]["ssm"] for b in batches])
    std = iv.statistics_std(stats)
    np.testing.assert_allclose(stats[0]["mean"], [rnn.mean()], rtol=1e-5)
    np.testing.assert_allclose(std[0], [rnn.std()], rtol=1e-5)
    np.testing.assert_allclose(stats[1]["mean"], ssm.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(std[1], ssm.std(axis=(0, 2, 3)), rtol=1e-5)
    assert float(stats[1]["count"]) == ssm.size / 3


def test_random_noise_has_the_configured_std_and_zero_conv(hawk):
    zero = hawk.init_state(256)
    state = iv.initial_state(InitialStateConfig(kind="random_noise", noise_std=0.7), zero, {}, jax.random.key(0), {})
    for layer in state:
        assert abs(float(jnp.std(layer["rnn"])) - 0.7) < 0.02 and abs(float(jnp.mean(layer["rnn"]))) < 0.02
        assert not bool(jnp.any(layer["conv"]))
    silent = iv.initial_state(InitialStateConfig(kind="random_noise", noise_std=0.0), zero, {}, jax.random.key(0), {})
    tokens = jnp.asarray(TOK.encode("abcdefgh"))[None].repeat(256, 0)
    np.testing.assert_array_equal(hawk(tokens, state=silent), hawk(tokens))  # sigma = 0 is zero-init


def test_fitted_noise_draws_from_the_fitted_statistics(hawk):
    zero = hawk.init_state(512)
    stats = [{"count": jnp.float32(10), "mean": jnp.array([2.0]), "m2": jnp.array([10 * 0.25])} for _ in zero]
    state = iv.initial_state(InitialStateConfig(kind="fitted_noise"), zero, {"stats": stats}, jax.random.key(1), {})
    for layer in state:
        assert abs(float(jnp.mean(layer["rnn"])) - 2.0) < 0.02 and abs(float(jnp.std(layer["rnn"])) - 0.5) < 0.02


def test_state_passing_feeds_row_i_its_own_final_state(hawk):
    cfg = InitialStateConfig(kind="state_passing")
    zero = hawk.init_state(3)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 256, (3, 10)), jnp.int32)
    extras = iv.init_extras(cfg, zero)
    start = iv.initial_state(cfg, zero, extras, jax.random.key(0), {})
    _, final = hawk(tokens, state=start, return_state=True)
    extras = iv.update_extras(cfg, extras, final)
    start2 = iv.initial_state(cfg, zero, extras, jax.random.key(1), {})
    for i in range(3):  # row i alone reaches the state that row i then starts from
        _, alone = hawk(tokens[i:i + 1], return_state=True)
        chex.assert_trees_all_close(alone, jax.tree.map(lambda x: x[i:i + 1], start2), atol=1e-6)
    reset_all = iv.initial_state(InitialStateConfig(kind="state_passing", reset_prob=1.0), zero, extras,
                                 jax.random.key(2), {})
    assert not any(bool(jnp.any(x)) for x in jax.tree.leaves(reset_all))


def test_streams_lose_no_token_and_flag_continuations():
    docs = ["alpha beta gamma " * 3, "delta", "epsilon zeta eta theta " * 2, "iota kappa"]
    streams = ContinuingStreams(docs, TOK, seq_len=8, batch_size=2, seed=0, shuffle=False)
    rows = {0: [], 1: []}
    flags = {0: [], 1: []}
    for _ in range(16):
        batch = next(streams)
        for r in range(2):
            rows[r].append(batch["targets"][r])
            flags[r].append(bool(batch["continues"][r]))
    for r, share in ((0, [docs[0], docs[2]]), (1, [docs[1], docs[3]])):
        expected = np.concatenate([np.append(TOK.encode(d), TOK.special.eos) for d in share])
        got = np.concatenate(rows[r])[: len(expected)]
        np.testing.assert_array_equal(got, expected)
    assert flags[0][0] is False and flags[0][1] is True
    state = streams.get_state()
    after = next(streams)
    streams.set_state(state)
    np.testing.assert_array_equal(next(streams)["inputs"], after["inputs"])


def test_tbtt_chunks_equal_the_unsplit_document(hawk):
    doc = "The state of a recurrent model carries the past. " * 3
    cfg = InitialStateConfig(kind="tbtt")
    streams = ContinuingStreams([doc], TOK, seq_len=16, batch_size=1, seed=0, shuffle=False)
    zero = hawk.init_state(1)
    extras = iv.init_extras(cfg, zero)
    n = len(TOK.encode(doc)) + 1
    pieces = []
    for _ in range(-(-n // 16)):
        batch = {k: jnp.asarray(v) for k, v in next(streams).items()}
        start = iv.initial_state(cfg, zero, extras, jax.random.key(0), batch)
        logits, final = hawk(batch["inputs"], batch["segment_ids"], state=start, return_state=True)
        extras = iv.update_extras(cfg, extras, final)
        pieces.append(logits[0])
    whole = hawk(jnp.asarray(np.concatenate([[TOK.special.bg], TOK.encode(doc)]))[None])[0]
    np.testing.assert_allclose(jnp.concatenate(pieces)[:n], whole, atol=2e-5, rtol=1e-5)


def test_attention_models_refuse_interventions():
    with pytest.raises(ConfigError, match="recurrent layers"):
        iv.check_supported("state_passing", [{"k": 0}], "transformer")


def test_killed_state_passing_run_resumes_bit_identically(tmp_path):
    def cfg(run):
        return load_config("gated_ssm_tiny", *TINY_RUN, "train.steps=6", "initial_state=state_passing",
                           "initial_state.reset_prob=0.3", f"train.run_dir={tmp_path / run}")

    full = train(cfg("full"), quiet=True)
    train(cfg("killed"), stop_after=3, quiet=True)
    resumed = train(cfg("killed"), resume=True, quiet=True)
    chex.assert_trees_all_equal(resumed.params, full.params)
    from birdie_jax.inference import load_checkpoint

    carried = [load_checkpoint(str(tmp_path / run)).extras["carry"] for run in ("full", "killed")]
    chex.assert_trees_all_equal(*carried)
    assert any(bool(jnp.any(x)) for x in jax.tree.leaves(carried[0]))


def test_post_training_recipe_starts_from_the_checkpoint(tmp_path):
    base = train(load_config("hawk_tiny", *TINY_RUN, "train.steps=3", f"train.run_dir={tmp_path / 'base'}"),
                 quiet=True)
    # The recipe config carries no model: the model and tokenizer come from the checkpoint.
    post = load_config("configs/lengthgen/fitted_noise.yaml", *TINY_RUN, "train.steps=2",
                       "initial_state.calibration_batches=2", f"init_from={tmp_path / 'base'}",
                       f"train.run_dir={tmp_path / 'post'}")
    started = train(post, stop_after=0, quiet=True)
    chex.assert_trees_all_equal(started.params, base.params)
    from birdie_jax.cli import main

    assert main(["train", "--quiet", "--config", "configs/lengthgen/state_passing.yaml", *TINY_RUN,
                 "train.steps=2", f"init_from={tmp_path / 'base'}", f"train.run_dir={tmp_path / 'sp'}"]) == 0
