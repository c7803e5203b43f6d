"""The length-generalization analyses on a tiny random model: files, structure and definitions."""

import argparse
import importlib
import json
import os
import re

import numpy as np
import pytest
from conftest import tiny_model_config
from flax import nnx

from birdie_jax import analysis
from birdie_jax.analysis import cli as analysis_cli
from birdie_jax.analysis.common import AnalysisError, greedy_continue, last_logits, run_chunks
from birdie_jax.evals.copy import character_accuracy, copy_example
from birdie_jax.analysis.effrem import effrem_grid, suffix_rows, total_variation
from birdie_jax.evals.passkey import FILLER, QUESTION, TASK, answer_matches, filler_count, passkey_prompt
from birdie_jax.errors import BirdieError
from birdie_jax.generation import generate
from birdie_jax.inference import LoadedRun
from birdie_jax.models import LanguageModel
from birdie_jax.tokenizer import build_tokenizer

TOKENIZER = build_tokenizer("byte")
DOCS = ["The first document talks about cats.", "A second one, about dogs and birds!", "Third: short."]
TRAIN_LEN = 4


@pytest.fixture(scope="module")
def model():
    """One layer keeps compilation short; every tool works through the model's state contract alone."""
    return LanguageModel(tiny_model_config("mamba2", vocab_size=TOKENIZER.vocab_size, n_layers=1),
                         rngs=nnx.Rngs(params=0))


def _check_files(result, out_dir, name):
    assert result["files"] == {"json": os.path.join(out_dir, f"{name}.json"),
                               "png": os.path.join(out_dir, f"{name}.png")}
    with open(result["files"]["json"]) as f:
        saved = json.load(f)
    with open(result["files"]["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return saved


def test_loss_by_position_files_and_exact_chunking(model, tmp_path):
    result = analysis.loss_by_position(model, documents=DOCS, tokenizer=TOKENIZER, train_len=TRAIN_LEN, max_factor=4,
                                       num_sequences=3, out_dir=str(tmp_path))
    saved = _check_files(result, str(tmp_path), "loss_by_position")
    assert saved["length"] == 16 and len(saved["nll"]) == 16 and saved["num_sequences"] == 3
    assert saved["bins"][0]["start"] == 0 and saved["bins"][-1]["stop"] == 16
    assert all(a["stop"] == b["start"] for a, b in zip(saved["bins"], saved["bins"][1:]))
    one_chunk = analysis.loss_by_position(model, documents=DOCS, tokenizer=TOKENIZER, train_len=TRAIN_LEN,
                                          max_factor=4, num_sequences=3, chunk_len=16)
    np.testing.assert_allclose(one_chunk["nll"], result["nll"], rtol=1e-5, atol=1e-5)


def test_document_sequences_start_with_bg_and_join_with_eos():
    rows = analysis.document_sequences(DOCS, TOKENIZER, num_sequences=2, length=100)
    assert rows.shape == (2, 100) and (rows[:, 0] == TOKENIZER.special.bg).all()
    assert (rows == TOKENIZER.special.eos).sum(1).min() >= 1


def test_effrem_files_and_range(model, tmp_path):
    result = analysis.effrem(model, documents=DOCS, tokenizer=TOKENIZER, train_len=TRAIN_LEN, num_sequences=2,
                             num_points=4, num_last=2, out_dir=str(tmp_path))
    saved = _check_files(result, str(tmp_path), "effrem")
    assert saved["context_len"] == 16 and saved["t"] == [0, 4, 8, 12, 14, 15]
    assert saved["effrem"][0] == 0.0 and all(0.0 <= v <= 1.0 for v in saved["effrem"])


def test_effrem_grid_follows_the_spec():
    ts = effrem_grid(8192)
    assert ts[0] == 0 and ts[-1] == 8191 and len(ts) == 64 + 64
    assert set(range(8192 - 64, 8192)) <= set(ts.tolist())


def test_effrem_definition_on_constructed_models():
    """A model with no memory (next token depends on the last token only) has EffRem ≡ 0;
    one that remembers only the first token has EffRem_T(t) = TV(q(x_0), q(x_t)) for t ≥ 1."""
    rng = np.random.RandomState(0)
    table = rng.randn(16, 7)  # token -> logits
    sequences = rng.randint(0, 16, (3, 10))
    ts = [0, 1, 5, 9]

    def last_token_only(tokens, segments):
        return table[tokens[:, -1]]

    def first_token_only(tokens, segments):
        first = np.argmax(segments > 0, axis=1)  # each row's first real token
        return table[tokens[np.arange(len(tokens)), first]]

    pad = 99
    np.testing.assert_array_equal(analysis.effrem_curve(last_token_only, sequences, ts, pad), 0.0)
    remembered = analysis.effrem_curve(first_token_only, sequences, ts, pad)
    expected = [[_tv(table[s[0]], table[s[t]]) for t in ts] for s in sequences]
    np.testing.assert_allclose(remembered, expected, atol=1e-12)
    assert remembered[:, 0].max() == 0.0


def _tv(logits_a, logits_b):
    """Total variation of the two next-token distributions, re-derived here (independent of
    birdie_jax.analysis): ½ Σ_v |p_v − q_v| with p, q the softmax of the logits."""
    p, q = (np.exp(z - np.max(z)) / np.exp(z - np.max(z)).sum() for z in (np.asarray(logits_a, np.float64),
                                                                            np.asarray(logits_b, np.float64)))
    return 0.5 * float(np.abs(p - q).sum())


def test_total_variation_bounds():
    assert total_variation(np.zeros(5), np.zeros(5)) == 0.0
    assert total_variation(np.array([100.0, 0.0]), np.array([0.0, 100.0])) == pytest.approx(1.0)
    # log(3) vs 0 on two tokens: p = (3/4, 1/4), q = (1/2, 1/2), TV = 1/4.
    assert total_variation(np.array([np.log(3.0), 0.0]), np.zeros(2)) == pytest.approx(0.25)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 9))
    assert total_variation(a, b) == pytest.approx(_tv(a, b), rel=1e-12)


def test_padded_suffix_equals_the_suffix_alone(model):
    """Left padding (segment 0) in chunks, the suffix start on and off a chunk boundary, equals x[t:T] alone."""
    seq = analysis.document_sequences(DOCS, TOKENIZER, 1, 12)[0]
    tokens, segments = suffix_rows(seq, [4, 6], TOKENIZER.special.pad)
    outputs, _ = run_chunks(model, tokens, last_logits, chunk_len=4, segment_ids=segments)
    for row, t in enumerate([4, 6]):
        alone, _ = run_chunks(model, seq[None, t:], last_logits, chunk_len=12)
        np.testing.assert_allclose(outputs[-1][row], alone[-1][0], rtol=1e-5, atol=1e-5)


def test_state_norm_files_and_structure(model, tmp_path):
    result = analysis.state_norm(model, documents=DOCS, tokenizer=TOKENIZER, train_len=TRAIN_LEN, every=2,
                                 num_sequences=2, out_dir=str(tmp_path))
    saved = _check_files(result, str(tmp_path), "state_norm")
    assert saved["positions"] == list(range(2, 17, 2))
    assert len(saved["std"]) == 8 and all(v > 0 for v in saved["std"])
    assert all(len(layer) == model.cfg.n_layers for layer in saved["per_layer_std"])


def test_state_norm_needs_a_recurrent_model():
    transformer = nnx.eval_shape(lambda: LanguageModel(tiny_model_config("transformer"), rngs=nnx.Rngs(0)))
    with pytest.raises(AnalysisError, match="fixed-size state"):
        analysis.state_norm(transformer, documents=DOCS, tokenizer=TOKENIZER, train_len=TRAIN_LEN)


def test_passkey_prompt_format():
    text = passkey_prompt(54321, 10, 0.5)
    lines = text.split("\n")
    assert lines[0] == TASK and lines[-1] == QUESTION == "What is the pass key? The pass key is"
    assert lines[2] == "The pass key is 54321. Remember it. 54321 is the pass key."
    assert lines[1] == " ".join([FILLER] * 5) and lines[3] == lines[1]
    assert FILLER == "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
    assert passkey_prompt(1, 10, 0.1).split("\n")[1] == FILLER
    n = filler_count(TOKENIZER, 1000)
    assert len(TOKENIZER.encode(passkey_prompt(12345, n, 0.5))) <= 1000 < len(
        TOKENIZER.encode(passkey_prompt(12345, n + 1, 0.5)))
    assert answer_matches(" 54321. Remember", 54321) and not answer_matches(" 5432", 54321)
    with pytest.raises(AnalysisError, match="shorter than the prompt"):
        filler_count(TOKENIZER, 10)


def test_passkey_files_and_heat_map(model, tmp_path):
    result = analysis.passkey(model, TOKENIZER, [260, 300], [0.1, 0.9], trials=2, chunk_len=64,
                              out_dir=str(tmp_path))
    saved = _check_files(result, str(tmp_path), "passkey")
    assert np.asarray(saved["accuracy"]).shape == (2, 2) and saved["depths"] == [0.1, 0.9]
    assert all(n <= limit for n, limit in zip(saved["prompt_tokens"], [260, 300], strict=True))


def test_passkey_scores_each_cell(monkeypatch):
    """A stub reader that finds the key only in the first half of the prompt: accuracy 1 at
    depth 0.1 and 0 at depth 0.9, at every length, in the right cells (lengths × depths)."""
    def reader(model, tokenizer, prompts, max_new, **kw):
        out = []
        for ids in prompts:
            text = tokenizer.decode(ids)
            found = re.search(r"The pass key is (\d+)\.", text)
            key = int(found.group(1)) if found.start() < len(text) / 2 else int(found.group(1)) + 1
            out.append(tokenizer.encode(f" {key}. Remember"[:max_new]))
        return out

    monkeypatch.setattr(importlib.import_module("birdie_jax.evals.passkey"), "greedy_continue", reader)
    result = analysis.passkey(None, TOKENIZER, [500, 700, 900], [0.1, 0.9], trials=3)
    assert result["accuracy"] == [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
    assert [e["depth"] for e in result["examples"]] == [0.1, 0.9] * 3


def test_copy_task_scores_characters(monkeypatch):
    """A stub copier that gets every other character right and stops one short (a missing
    character counts as wrong): accuracy ⌈(n−1)/2⌉/n per length, std 0."""
    def copier(model, tokenizer, prompts, max_new, **kw):
        out = []
        for ids in prompts:
            text = tokenizer.decode(ids[:-1])[:-1]  # the string without [COPY], one character short
            out.append(np.append(tokenizer.encode("".join(c if i % 2 == 0 else "#" for i, c in enumerate(text))),
                                 tokenizer.special.eos))
        return out

    monkeypatch.setattr(importlib.import_module("birdie_jax.evals.copy"), "greedy_continue", copier)
    result = analysis.copy_task(None, TOKENIZER, [3, 4, 7], trials=2, seeds=(0, 1))
    np.testing.assert_allclose(result["accuracy"], [1 / 3, 2 / 4, 3 / 7])
    np.testing.assert_allclose(result["per_seed"], [[1 / 3] * 2, [2 / 4] * 2, [3 / 7] * 2])
    assert result["std"] == [0.0, 0.0, 0.0]


def test_chunked_prefill_generation_equals_generate(model):
    prompts = [TOKENIZER.encode("The pass key is"), TOKENIZER.encode("Hello there, a longer prompt!")]
    chunked = greedy_continue(model, TOKENIZER, prompts, 6, chunk_len=8)
    whole = generate(model, prompts, 6, tokenizer=TOKENIZER, prompt_as_prefix=False)
    for a, b in zip(chunked, whole.tokens):
        np.testing.assert_array_equal(a, b)


def test_copy_task_files_and_accuracy(model, tmp_path):
    result = analysis.copy_task(model, TOKENIZER, [3, 5], train_len=2, trials=2, seeds=(0, 1), chunk_len=4,
                                out_dir=str(tmp_path))
    saved = _check_files(result, str(tmp_path), "copy")
    assert np.asarray(saved["per_seed"]).shape == (2, 2) and len(saved["accuracy"]) == 2
    prompt, answer = copy_example(TOKENIZER, 4, np.random.default_rng(0))
    assert prompt[-1] == TOKENIZER.special.copy and answer[-1] == TOKENIZER.special.eos
    assert (prompt[:-1] == answer[:-1]).all()
    assert character_accuracy("abxd", "abcd") == 0.75 and character_accuracy("ab", "abcd") == 0.5


def _parse(*argv):
    parser = argparse.ArgumentParser()
    analysis_cli.add_analyze_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def test_cli_runs_a_tool_on_a_loaded_run(model, tmp_path, monkeypatch, capsys):
    from birdie_jax import inference
    from birdie_jax.config import Config

    cfg = Config(name="tiny")
    monkeypatch.setattr(inference, "load_checkpoint", lambda path, step=None: LoadedRun(cfg, TOKENIZER, model, 1))
    args = _parse("analyze", "state-norm", "--checkpoint", str(tmp_path), "--train-len", "4", "--every", "4",
                  "--num-sequences", "1")
    assert analysis_cli.run_analyze(args) == 0
    assert os.path.exists(tmp_path / "analysis" / "state_norm.json") and "state-norm: wrote" in capsys.readouterr().out


def test_cli_errors_are_birdie_errors(tmp_path):
    with pytest.raises(BirdieError):
        analysis_cli.run_analyze(_parse("analyze", "effrem", "--checkpoint", str(tmp_path / "missing")))
    with pytest.raises(AnalysisError, match="--batch-size must be >= 1"):
        analysis_cli.run_analyze(_parse("analyze", "loss-by-position", "--checkpoint", "x", "--batch-size", "0"))
    assert _parse("analyze", "passkey", "--checkpoint", "x", "--lengths", "512,1024").lengths == [512, 1024]
