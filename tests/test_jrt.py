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
    cfg = load_config("jrt_rnn_tiny", "model.n_layers=3", "model.layers=[gated_conv+mlp, pla+mlp, swa+mlp]",
                      "data.seq_len=32", "mixture.prefix_len=[4, 24]", "train.steps=2", "train.log_every=1",
                      "train.eval_every=2", "train.checkpoint_every=2", "train.tensorboard=false",
                      "train.progress=false", f"train.run_dir={tmp_path}")
    result = train(cfg, quiet=True)
    assert result.step == 2 and np.isfinite(result.final_loss)
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    steps = [r for r in records if "loss_mlm" in r]
    assert steps and all(r["mlm_tokens"] > 0 and r["ntp_tokens"] > 0 for r in steps)
    for r in steps:
        assert r["loss"] == pytest.approx(r["loss_ntp"] + 0.25 * r["loss_mlm"], rel=1e-5)
