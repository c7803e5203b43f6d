"""Generation (prefill → step decoding), scoring and JRT-Prompt."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ARCHITECTURES, CAUSAL_ONLY_ARCHITECTURES, tiny_lm
from flax import nnx

from birdie_jax.cli import main
from birdie_jax.generation import Sampling, generate, score
from birdie_jax.prompts import jrt_prompt, truncate_around_answer
from birdie_jax.tokenizer import build_tokenizer

TOK = build_tokenizer("byte")
PROMPTS = ["Hello wor", "ab", "The quick brown fox"]
NEW = 6
# Every architecture with and without bidirectional layers; Mamba-2 is causal only.
SETTINGS = [(a, bi) for a in ARCHITECTURES for bi in ("none", "alternate")] + [(a, "none") for a in
                                                                                CAUSAL_ONLY_ARCHITECTURES]


def reference_layout(prompt, as_prefix):
    """The model input that starts an answer, re-derived from spec §5.1 (independent of
    ``birdie_jax.generation``): a prompt read as a prefix is ``prompt + [BG]`` with the
    prompt in the prefix (BG predicts the first answer token); a causal prompt is an NTP
    sample ``[BG] + prompt`` with no prefix."""
    prompt = np.asarray(prompt, np.int32)
    if as_prefix:
        return np.append(prompt, TOK.special.bg).astype(np.int32), np.arange(len(prompt) + 1) < len(prompt)
    return np.concatenate([[TOK.special.bg], prompt]).astype(np.int32), np.zeros(len(prompt) + 1, bool)


@functools.lru_cache(maxsize=None)
def full_forward(arch, bidirectional="none"):
    """The plain forward of ``tiny_lm(arch, bidirectional)``, jitted: (tokens [1, T], prefix_mask
    [1, T]) -> logits. Jitted, each length compiles the model once, not each of its operations."""
    graphdef, params = nnx.split(tiny_lm(arch, bidirectional))
    forward = jax.jit(lambda params, tokens, prefix: nnx.merge(graphdef, params)(tokens, prefix_mask=prefix))
    return functools.partial(forward, params)


@pytest.fixture(scope="module")
def batched():
    return {(arch, bi): generate(tiny_lm(arch, bi), PROMPTS, NEW, return_logits=True) for arch, bi in SETTINGS}


@pytest.mark.parametrize("arch, bidirectional", SETTINGS)
def test_decoding_equals_full_forward(arch, bidirectional, batched):
    out = batched[(arch, bidirectional)]
    for i, prompt in enumerate(PROMPTS):
        tokens, prefix = reference_layout(TOK.encode(prompt), bidirectional != "none")
        generated = out.tokens[i]
        full = np.concatenate([tokens, generated[:-1]])
        full_prefix = np.concatenate([prefix, np.zeros(len(generated) - 1, bool)])
        logits = np.asarray(full_forward(arch, bidirectional)(jnp.asarray(full)[None],
                                                              jnp.asarray(full_prefix)[None]))[0]
        start = len(tokens) - 1
        np.testing.assert_allclose(out.logits[i, : len(generated)], logits[start:start + len(generated)],
                                   atol=2e-5, rtol=1e-5)
        np.testing.assert_array_equal(generated, logits[start:start + len(generated)].argmax(-1))


@pytest.mark.parametrize("arch, bidirectional", SETTINGS)
def test_batched_prompts_equal_each_prompt_alone(arch, bidirectional, batched):
    model, out = tiny_lm(arch, bidirectional), batched[(arch, bidirectional)]
    for i, prompt in enumerate(PROMPTS):
        alone = generate(model, [prompt], NEW, return_logits=True)
        np.testing.assert_array_equal(alone.tokens[0], out.tokens[i])
        np.testing.assert_allclose(alone.logits[0], out.logits[i], atol=1e-5, rtol=1e-5)


def test_sampling_options():
    model = tiny_lm("hawk")
    greedy = generate(model, PROMPTS, NEW).tokens
    top1 = generate(model, PROMPTS, NEW, Sampling(temperature=1.0, top_k=1, seed=3)).tokens
    tiny_p = generate(model, PROMPTS, NEW, Sampling(temperature=1.0, top_p=1e-6, seed=3)).tokens
    for a, b, c in zip(greedy, top1, tiny_p):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    hot = Sampling(temperature=2.0, seed=7)
    first, second = generate(model, PROMPTS, NEW, hot).tokens, generate(model, PROMPTS, NEW, hot).tokens
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="top_p"):
        Sampling(top_p=1.5)


def test_stop_token_ends_a_row():
    model = tiny_lm("gated_ssm")
    free = generate(model, ["xyz"], NEW).tokens[0]
    stop = int(free[2])
    stopped = generate(model, ["xyz"], NEW, Sampling(stop_ids=(stop,))).tokens[0]
    first = int(np.flatnonzero(free == stop)[0])
    np.testing.assert_array_equal(stopped, free[: first + 1])


@pytest.mark.parametrize("as_prefix", [False, True])
def test_score_matches_manual_log_likelihood(as_prefix):
    model = tiny_lm("transformer", "alternate" if as_prefix else "none")
    contexts, continuations = ["abc", "Hello", "x"], ["d", " world", "yz"]
    scores = score(model, contexts, continuations, prompt_as_prefix=as_prefix, batch_size=2)
    for i, (ctx, cont) in enumerate(zip(contexts, continuations)):
        tokens, prefix = reference_layout(TOK.encode(ctx), as_prefix)
        cont_ids = TOK.encode(cont)
        full = np.concatenate([tokens, cont_ids[:-1]])
        full_prefix = np.concatenate([prefix, np.zeros(len(cont_ids) - 1, bool)])
        logits = np.asarray(full_forward("transformer", "alternate" if as_prefix else "none")(
            jnp.asarray(full)[None], jnp.asarray(full_prefix)[None]))[0]
        logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
        start = len(tokens) - 1
        expected = sum(logp[start + j, cont_ids[j]] for j in range(len(cont_ids)))
        assert scores.sum_logprob[i] == pytest.approx(expected, abs=1e-4)
        assert scores.num_tokens[i] == len(cont_ids)
        assert scores.mean_logprob[i] == pytest.approx(expected / len(cont_ids), abs=1e-4)


def test_jrt_prompt_templates():
    assert jrt_prompt("kv", context="Acme was founded in 1990. founded:", question="founded") == (
        "Information about Founded. Acme was founded in 1990.\nAcme was founded in 1990. Founded:")
    assert jrt_prompt("kv", context="Acme, 1990", question="year", repeat=False) == "Acme, 1990. Year:"
    assert jrt_prompt("qa", context="Paris is in France.", question="Where is Paris?",
                      cloze="Paris is in") == "Where is Paris? Paris is in France.\nParis is in France. Paris is in"
    assert jrt_prompt("squad", context="C.", question="Q?", cloze="A is") == "Q? C.\nC. A is"
    with pytest.raises(ValueError, match="template"):
        jrt_prompt("chat", context="c", question="q")


def test_truncate_around_answer_keeps_window():
    tokens = np.arange(3000)
    window = truncate_around_answer(tokens, np.array([2000, 2001]), max_tokens=950)
    assert len(window) == 950 and 2000 in window and window[0] == 2000 - 475


def test_bidirectional_model_trains_and_generates_from_checkpoint(tmp_path, capsys):
    run = tmp_path / "bi"
    assert main(["train", "--config", "hawk_tiny", "--quiet", "model.bidirectional=alternate", "train.steps=2",
                 "data.seq_len=32", "data.batch_size=2", "train.eval_every=0", f"train.run_dir={run}"]) == 0
    capsys.readouterr()  # the training summary
    assert main(["generate", "--checkpoint", str(run), "--prompt", "The ", "--max-new-tokens", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "The " and lines[1] == "----- continuation -----"  # the answer set apart
    assert main(["generate", "--checkpoint", str(run), "--jrt", "--context", "Paris is in France.",
                 "--question", "Where is Paris?", "--max-new-tokens", "3"]) == 0
    assert "Paris is in France.\nParis is in France." in capsys.readouterr().out
