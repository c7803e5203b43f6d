"""JRT-RNN: configs and sizes, the NTP + MLM mixture, the loss, bad input (jrt.md §2, §3)."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from birdie_jax.config import load_config
from birdie_jax.data.layout import IGNORE_ID
from birdie_jax.data.pipeline import make_batch_iterator
from birdie_jax.errors import ConfigError
from birdie_jax.models import build_model, count_parameters
from birdie_jax.objectives import build_mixture
from birdie_jax.objectives.jrt import ntp_mlm_loss, term_weights
from birdie_jax.tokenizer import build_tokenizer
from birdie_jax.training.loop import train


def _abstract(name):
    cfg = load_config(name)
    return cfg, nnx.eval_shape(lambda: build_model(cfg))


@pytest.mark.parametrize("name, paper_size, tolerance, pla_state", [
    ("jrt_rnn_paper_360m", 360e6, 0.02, 283_920), ("jrt_rnn_paper_1b", 1.3e9, 0.06, 493_584)])
def test_paper_layouts_match_the_paper(name, paper_size, tolerance, pla_state):
    cfg, model = _abstract(name)
    mixers = [cfg.model.layer_mixer(i) for i in range(cfg.model.n_layers)]
    ids = {kind: [i for i, m in enumerate(mixers) if m == kind] for kind in ("pla", "swa", "gated_conv")}
    if cfg.model.n_layers == 26:
        assert ids["pla"] == [1, 6, 11, 16, 21] and ids["swa"] == [2, 7, 12, 17, 22] and len(ids["gated_conv"]) == 16
    else:
        assert ids["pla"] == [1, 6, 11, 16, 21, 27, 33] and ids["swa"] == [2, 7, 12, 17, 22, 28, 34]
        assert len(ids["gated_conv"]) == 22
    assert all(block.mlp is not None for block in model.blocks)
    assert abs(count_parameters(model) / paper_size - 1) < tolerance
    pla = model.blocks[1].mixer.init_state(1)
    assert sum(x.size for x in pla.values()) == pla_state  # H·P·273 + H·273 (jrt.md §1.4)
    assert cfg.model.mlp_hidden == 2 * cfg.model.d_model and cfg.model.mlp_hidden % 256 == 0


def test_jrt_mixture_masks_prefix_tokens_and_predicts_them():
    cfg = load_config("jrt_rnn_tiny", "mixture.mlm_prob=0.5")
    tok = build_tokenizer("byte")
    mixture = build_mixture(cfg.mixture, tok, seq_len=cfg.data.seq_len)
    text = np.random.RandomState(0).randint(0, 256, 150).astype(np.int32)
    pieces = mixture(text, np.random.default_rng(0))
    assert sum(len(p[0]) + len(p[1]) for p in pieces) == 150  # every token used once
    masked = 0
    for prefix, labels, _, _, targets in pieces[:-1]:
        assert 8 <= len(prefix) <= 48 and len(prefix) + len(labels) <= 64
        where = prefix == tok.special.mask
        masked += where.sum()
        np.testing.assert_array_equal(targets == IGNORE_ID, ~where)
    assert masked > 0
    batch = next(iter(make_batch_iterator([tok.decode(text)], tok, seq_len=64, batch_size=2, seed=0,
                                          sample_transform=mixture, shuffle=False, num_epochs=1)))
    prefix = batch["region"] != 2
    mlm = prefix & (batch["targets"] != IGNORE_ID)
    assert mlm.any() and np.all(batch["inputs"][mlm] == tok.special.mask)
    assert np.all(batch["inputs"][~prefix] != tok.special.mask)


def test_half_split_is_the_reference_layout():
    cfg = load_config("jrt_rnn_tiny", "mixture.prefix_split=half")
    mixture = build_mixture(cfg.mixture, build_tokenizer("byte"), seq_len=64)
    pieces = mixture(np.arange(128, dtype=np.int32) % 200, np.random.default_rng(1))
    assert [(len(p[0]), len(p[1])) for p in pieces] == [(32, 32), (32, 32)]


def test_loss_is_ntp_mean_plus_quarter_mlm_mean():
    losses = jnp.asarray([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    mask = jnp.asarray([[True, False, True, True, True, False]])
    prefix = jnp.asarray([[True, True, True, False, False, False]])
    loss, aux = ntp_mlm_loss(losses, mask, prefix, term_weights(0.25, False))
    assert float(aux["loss_mlm"]) == pytest.approx(2.0) and float(aux["loss_ntp"]) == pytest.approx(4.5)
    assert float(loss) == pytest.approx(4.5 + 0.25 * 2.0)
    normalised, _ = ntp_mlm_loss(losses, mask, prefix, term_weights(0.25, True))
    assert float(normalised) == pytest.approx((4.5 + 0.25 * 2.0) / 1.25)


@pytest.mark.parametrize("overrides, message", [
    (("mixture.mask_token_id=65",), "mask_token_id=65 collides with a text id"),
    (("mixture.prefix_len=[8, 64]",), "prefix_len upper bound 64 is not shorter than data.seq_len=64"),
    (("mixture=clm",), r"prefix linear attention \(pla\) at layers \[1\], but mixture=clm"),
    (("model.layers=[gated_conv+mlp, plla+mlp]",), r"model.layers\[1\]: unknown mixer 'plla\+mlp' \(did you mean 'pla'\?\)"),
    (("train.grad_accum=2",), "mixture=jrt averages its NTP and MLM terms"),
])
def test_bad_jrt_settings_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        cfg = load_config("jrt_rnn_tiny", *overrides)
        build_mixture(cfg.mixture, build_tokenizer("byte"), seq_len=cfg.data.seq_len)


def test_cli_reports_bad_jrt_input_on_one_line(capsys):
    from birdie_jax.cli import main

    assert main(["info", "--config", "jrt_rnn_tiny", "mixture=clm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model.layers puts prefix linear attention")


def test_jrt_tiny_trains_with_per_term_metrics(tmp_path):
    cfg = load_config("jrt_rnn_tiny", "model.n_layers=2", "model.layers=[gated_conv+mlp, pla+mlp]",
                      "data.seq_len=32", "mixture.prefix_len=[4, 24]", "train.steps=2", "train.log_every=1",
                      "train.eval_every=0", "train.checkpoint_every=2", "train.tensorboard=false",
                      "train.progress=false", f"train.run_dir={tmp_path}")
    result = train(cfg, quiet=True)
    assert result.step == 2 and np.isfinite(result.final_loss)
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    steps = [r for r in records if "loss_mlm" in r]
    assert steps and all(r["mlm_tokens"] > 0 and r["ntp_tokens"] > 0 for r in steps)
    for r in steps:
        assert r["loss"] == pytest.approx(r["loss_ntp"] + 0.25 * r["loss_mlm"], rel=1e-5)


# ----------------------------------------------------------------------------- inference (jrt.md §1.4, §7.2, §7.4)

import jax  # noqa: E402
from conftest import tiny_model_config  # noqa: E402

from birdie_jax.generation import generate, prefix_part, prompt_layout, score  # noqa: E402
from birdie_jax.models import LanguageModel, state_size  # noqa: E402


@pytest.fixture(scope="module")
def jrt_model():
    return LanguageModel(tiny_model_config("jrt", vocab_size=384, max_prefix_len=6), rngs=nnx.Rngs(params=5))


def test_prefix_is_capped_and_read_twice_fills_it():
    prompt = np.asarray([1, 2, 3], np.int32)
    head, rest = prefix_part(prompt, 7, read_twice=True)
    np.testing.assert_array_equal(head, [3, 1, 2, 3, 1, 2, 3]) and not len(rest)
    head, rest = prefix_part(np.arange(10, dtype=np.int32), 6)
    np.testing.assert_array_equal(head, np.arange(6)) and np.testing.assert_array_equal(rest, [6, 7, 8, 9])
    tokens, prefix = prompt_layout(np.arange(10, dtype=np.int32), 99, True, max_prefix=6)
    np.testing.assert_array_equal(tokens, [0, 1, 2, 3, 4, 5, 99, 6, 7, 8, 9])
    np.testing.assert_array_equal(prefix, [True] * 6 + [False] * 5)


def test_pla_decoding_state_is_constant_size(jrt_model):
    assert state_size(jrt_model, cache_len=16) == state_size(jrt_model, cache_len=4096) > 0


def test_prefill_then_decode_equals_parallel_with_prefix_and_pads(jrt_model):
    """jrt.md §7.2 on the whole hybrid: prefix M < prefill L < N, one row left-padded."""
    rng = np.random.RandomState(0)
    tokens = jnp.asarray(rng.randint(0, 256, (2, 12)), jnp.int32)
    segments = jnp.asarray([[1] * 12, [0, 0] + [1] * 10], jnp.int32)
    prefix = jnp.asarray([[True] * 3 + [False] * 9, [False, False, True, True] + [False] * 8])
    graphdef, params = nnx.split(jrt_model)

    @jax.jit
    def parallel(params, tokens, segments, prefix):
        return nnx.merge(graphdef, params)(tokens, segments, prefix, return_state=True)

    @jax.jit
    def step(params, token, state):
        return nnx.merge(graphdef, params).step(token, state)

    full, _ = parallel(params, tokens, segments, prefix)
    logits, state = parallel(params, tokens[:, :7], segments[:, :7], prefix[:, :7])
    outs = [logits]
    for t in range(7, 12):
        step_logits, state = step(params, tokens[:, t], state)
        outs.append(step_logits[:, None])
    np.testing.assert_allclose(jnp.concatenate(outs, 1)[:, 2:], full[:, 2:], atol=1e-5, rtol=1e-5)


def test_greedy_cached_generation_equals_rerunning_the_parallel_forward(jrt_model):
    """jrt.md §7.4: at every step the cached logits equal a fresh parallel pass on the grown sequence."""
    tok = build_tokenizer("byte")
    prompts = [np.asarray([10, 20, 30, 40], np.int32), np.arange(50, 59, dtype=np.int32)]  # L < M and L > M = 6
    new = 5
    out = generate(jrt_model, prompts, new, return_logits=True)
    rows, masks, picks = [], [], []
    for i, prompt in enumerate(prompts):
        laid, prefix = prompt_layout(prompt, tok.special.bg, True, max_prefix=6)
        assert prefix.sum() == min(len(prompt), 6)
        for k in range(len(out.tokens[i])):
            rows.append(np.concatenate([laid, out.tokens[i][:k]]))
            masks.append(np.concatenate([prefix, np.zeros(k, bool)]))
            picks.append((i, k))
    width = max(len(r) for r in rows)
    pad = lambda xs, fill: np.stack([np.pad(x, (0, width - len(x)), constant_values=fill) for x in xs])  # noqa: E731
    segments = pad([np.ones(len(r), np.int32) for r in rows], 0)
    logits = jrt_model(jnp.asarray(pad(rows, 0)), jnp.asarray(segments), jnp.asarray(pad(masks, False)))
    for j, (i, k) in enumerate(picks):
        last = logits[j, len(rows[j]) - 1]
        np.testing.assert_allclose(out.logits[i, k], last, atol=1e-3, rtol=3e-4)
        assert int(out.tokens[i][k]) == int(jnp.argmax(last))


def test_score_reads_the_context_as_a_capped_prefix(jrt_model):
    context, continuation = np.arange(60, 69, dtype=np.int32), np.asarray([7, 8, 9], np.int32)
    got = score(jrt_model, [context], [continuation])
    laid, prefix = prompt_layout(context, build_tokenizer("byte").special.bg, True, max_prefix=6)
    seq = np.concatenate([laid, continuation[:-1]])
    logp = jax.nn.log_softmax(jrt_model(jnp.asarray(seq[None]), None, jnp.asarray(
        np.concatenate([prefix, np.zeros(2, bool)])[None]))[0])
    want = sum(float(logp[len(laid) - 1 + j, c]) for j, c in enumerate(continuation))
    assert float(got.sum_logprob[0]) == pytest.approx(want, rel=1e-4)
