"""Length generalization done right (issue 12): stream packing, carried states of real text only,
carried-vs-reset loss by position, the Markov source, and the bad inputs' error lines.

Oracles re-derive what they check: one pass over the whole stream, each document run alone, the
statistics in NumPy, the chain's frequencies counted from its text.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_model_config
from flax import nnx

from birdie_jax import analysis
from birdie_jax.cli import main
from birdie_jax.config import InitialStateConfig, TrainConfig
from birdie_jax.data.markov import MarkovSource, entropy_rate, markov_documents
from birdie_jax.data.packing import pack_row, stack_rows
from birdie_jax.data.stream_rows import StreamRows
from birdie_jax.errors import DataError
from birdie_jax.models import LanguageModel
from birdie_jax.tokenizer import build_tokenizer
from birdie_jax.training import initial_state as iv
from birdie_jax.training.optim import learning_rate_schedule, make_optimizer
from birdie_jax.training.step import init_train_state, make_train_step

TOK = build_tokenizer("byte")
RECURRENT = ("gated_ssm", "hawk", "mamba2")
DOCS = ["Rows are chunks of one stream.", "No reset inside a row,", "even across documents.", "Short.",
        "The state after T real tokens is what state passing carries."]


@pytest.fixture(scope="module")
def models():
    return {arch: LanguageModel(tiny_model_config(arch, vocab_size=TOK.vocab_size, n_layers=1),
                                rngs=nnx.Rngs(params=i)) for i, arch in enumerate(RECURRENT)}


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, params, tokens, segment_ids, state):
    return nnx.merge(graphdef, params)(tokens, segment_ids, state=state, return_state=True)


def _forward(model):
    """(tokens, segment_ids, state) -> (logits, final state), compiled once per architecture and shape."""
    graphdef, params = nnx.split(model)
    params = jax.tree.map(jnp.copy, params)  # train steps donate their state; keep ours
    return lambda tokens, segment_ids, state: _apply(graphdef, params, tokens, segment_ids, state)


def _stream(docs, rows=None):
    """[BG] d1 EOS d2 EOS ... (re-derived; the data module is not used)."""
    out = [TOK.special.bg]
    for d in docs:
        out += list(TOK.encode(d)) + [TOK.special.eos]
    return np.asarray(out, np.int32)


# --------------------------------------------------------------------------- stream packing


@pytest.mark.parametrize("arch", RECURRENT)
def test_stream_rows_carried_from_row_to_row_equal_one_pass(models, arch):
    model, t, b = models[arch], 8, 2
    run = _forward(model)
    ones = jnp.ones((1, t), jnp.int32)
    # State passing / zero init: one stream, consecutive chunks fill the batch in row order.
    rows = StreamRows(DOCS, TOK, seq_len=t, batch_size=b, seed=0, shuffle=False)
    chunks = [c for _ in range(3) for c in zip(*(lambda x: (x["inputs"], x["targets"]))(next(rows)))]
    stream = _stream(DOCS)
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), stream[1:1 + 6 * t])
    state, pieces = None, []
    for inputs, _ in chunks:  # row k+1 from the carried state of row k
        logits, state = run(jnp.asarray(inputs)[None], ones, state)
        pieces.append(logits[0])
    whole, _ = run(jnp.asarray(stream[:6 * t])[None], jnp.ones((1, 6 * t), jnp.int32), None)
    np.testing.assert_allclose(jnp.concatenate(pieces), whole[0], atol=1e-4, rtol=1e-4)

    # TBTT: row r of every batch continues stream r (documents dealt round-robin), through the intervention.
    cfg = InitialStateConfig(kind="tbtt")
    rows = StreamRows(DOCS, TOK, seq_len=t, batch_size=b, seed=0, shuffle=False, per_row=True)
    zero = model.init_state(b)
    extras, pieces, targets = iv.init_extras(cfg, zero), [], []
    for step in range(3):
        batch = {k: jnp.asarray(v) for k, v in next(rows).items()}
        assert bool(batch["continues"].all()) == (step > 0)
        start = iv.initial_state(cfg, zero, extras, jax.random.key(0), batch)
        logits, final = run(batch["inputs"], batch["segment_ids"], start)
        extras = iv.update_extras(cfg, extras, final)
        pieces.append(logits)
        targets.append(batch["targets"])
    for r in range(b):
        stream = _stream(DOCS[r::b] + DOCS[r::b])  # the second epoch deals the same documents again
        np.testing.assert_array_equal(np.concatenate([x[r] for x in targets]), stream[1:1 + 3 * t])
        whole, _ = run(jnp.asarray(stream[:3 * t])[None], jnp.ones((1, 3 * t), jnp.int32), None)
        np.testing.assert_allclose(jnp.concatenate([p[r] for p in pieces]), whole[0], atol=1e-4, rtol=1e-4)


def test_stream_rows_resume_exactly():
    rows = StreamRows(DOCS, TOK, seq_len=8, batch_size=2, seed=3, per_row=True)
    next(rows)
    saved = rows.get_state()
    expected = [next(rows)["inputs"] for _ in range(4)]
    again = StreamRows(DOCS, TOK, seq_len=8, batch_size=2, seed=3, per_row=True)
    again.set_state(saved)
    for e in expected:
        np.testing.assert_array_equal(next(again)["inputs"], e)
    with pytest.raises(DataError, match="batch_size"):
        StreamRows(DOCS, TOK, seq_len=8, batch_size=4, seed=3, per_row=True).set_state(saved)


# --------------------------------------------------------------------------- carried state of real text


def _packed_batch(pieces_per_row, t):
    """Rows of per-document packing (padding after the last document), from lists of texts."""
    rows = []
    for texts in pieces_per_row:
        samples = []
        for text in texts:
            ids = np.asarray(TOK.encode(text), np.int32)
            samples.append({"inputs": ids, "targets": ids, "region": np.full(len(ids), 2, np.int32)})
        rows.append(pack_row(samples, t, TOK.special.pad))
    return stack_rows(rows, batch_size=len(rows), seq_len=t, pad_id=TOK.special.pad)


def _alone(run, text):
    """The state after ``text`` run alone from zero (its own row, no padding)."""
    ids = jnp.asarray(TOK.encode(text), jnp.int32)[None]
    return run(ids, jnp.ones_like(ids), None)[1]


T = 16
FULL = [["abcdefghijklmnop"], ["qrstuvwxyzabcdef"], ["ABCDEFGHIJKLMNOP"], ["QRSTUVWXYZABCDEF"]]
MIXED = [["ten tokens"],                       # one document, then padding: qualifies (10 >= 8)
         ["short", "eleven toks"],             # two documents, full: the last one qualifies
         ["abc", "nine toks"],                 # two documents, then padding: the last one qualifies
         ["four", "fiv!!"]]                    # the last document holds 5 < 8 tokens: keeps the previous carry
QUALIFIES = [True, True, True, False]


@pytest.mark.parametrize("arch", RECURRENT)
def test_state_passing_carries_states_of_real_text_never_padding(models, arch):
    model = models[arch]
    tcfg = TrainConfig(learning_rate=1e-3, warmup_steps=1, steps=4)
    tx = make_optimizer(tcfg)
    cfg = InitialStateConfig(kind="state_passing", min_carry_fraction=0.5)
    graphdef, params = nnx.split(model)
    step = make_train_step(graphdef, tx, learning_rate_schedule(tcfg), None, cfg)  # donates the state: copy
    state = init_train_state(jax.tree.map(jnp.copy, params), tx, 0, iv.init_extras(cfg, model.init_state(4)))
    state, _ = step(state, {k: jnp.asarray(v) for k, v in _packed_batch(FULL, T).items()})
    run = nnx.merge(graphdef, state["params"])
    forward = _forward(run)
    first_carry = jax.tree.map(jnp.copy, state["extras"]["carry"])
    for r, (text,) in enumerate(FULL):  # full one-document rows carry their final state
        for a, b in zip(jax.tree.leaves(_alone(forward, text)), jax.tree.leaves(first_carry)):
            np.testing.assert_allclose(a[0], b[r], atol=1e-5, rtol=1e-5)
    batch = _packed_batch(MIXED, T)
    assert (batch["segment_ids"][[0, 2, 3], -1] == 0).all() and batch["segment_ids"][1, -1] == 2
    _, naive = forward(jnp.asarray(batch["inputs"]), jnp.asarray(batch["segment_ids"]), first_carry)
    state, _ = step(state, {k: jnp.asarray(v) for k, v in batch.items()})
    carry = state["extras"]["carry"]
    for r, texts in enumerate(MIXED):
        expected = _alone(forward, texts[-1]) if QUALIFIES[r] else jax.tree.map(lambda x: x[r:r + 1], first_carry)
        for key_path, a in jax.tree.leaves_with_path(expected):
            b = _get(carry, key_path)[r]
            np.testing.assert_allclose(a[0], b, atol=1e-5, rtol=1e-5, err_msg=f"row {r} {key_path}")
    for r in (0, 2):  # never the state after the padding, which the naive final state is
        recurrent = [layer[k] for layer in carry for k in layer if k in iv.RECURRENT_KEYS]
        padded = [layer[k] for layer in naive for k in layer if k in iv.RECURRENT_KEYS]
        assert any(float(jnp.abs(a[r] - b[r]).max()) > 1e-3 for a, b in zip(recurrent, padded))


def _get(tree, path):
    for entry in path:
        tree = tree[getattr(entry, "idx", getattr(entry, "key", None))]
    return tree


def test_fitted_noise_statistics_take_only_qualifying_rows(models):
    model = models["hawk"]
    forward = _forward(model)
    batch = {k: jnp.asarray(v) for k, v in _packed_batch(MIXED, T).items()}
    cfg = InitialStateConfig(kind="fitted_noise", min_carry_fraction=0.5)
    from birdie_jax.training.carry import real_text_state

    graphdef, params = nnx.split(model)
    _, final = forward(batch["inputs"], batch["segment_ids"], None)
    chosen, rows = jax.jit(real_text_state, static_argnums=(0, 4))(graphdef, params, batch, final, 0.5)
    np.testing.assert_array_equal(rows, QUALIFIES)
    extras = iv.update_extras(cfg, iv.init_extras(cfg, model.init_state(4)), chosen, rows)
    alone = [_alone(forward, texts[-1]) for texts, ok in zip(MIXED, QUALIFIES) if ok]
    for layer, stats in enumerate(extras["stats"]):
        x = np.concatenate([np.asarray(s[layer]["rnn"]).ravel() for s in alone])
        np.testing.assert_allclose(stats["mean"], [x.mean()], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(iv.statistics_std(extras["stats"])[layer], [x.std()], rtol=1e-4)
        assert float(stats["count"]) == x.size


# --------------------------------------------------------------------------- loss by position


class ResetEveryCall(nnx.Module):
    """A model whose state never survives a call: run in chunks of T, its context is capped at T."""

    def __init__(self, inner):
        self.inner = inner
        self.cfg = inner.cfg

    def init_state(self, batch_size, cache_len=None):
        return self.inner.init_state(batch_size, cache_len)

    def __call__(self, tokens, segment_ids=None, prefix_mask=None, *, state=None, return_state=False):
        return self.inner(tokens, segment_ids, prefix_mask, state=None, return_state=return_state)


def test_carried_minus_reset_is_zero_for_a_model_reset_every_t(models, tmp_path):
    model = models["mamba2"]
    rows = np.random.default_rng(0).integers(0, 256, (4, 4 * 8 + 1))
    capped = analysis.loss_by_position(ResetEveryCall(model), rows, train_len=8, max_factor=4, batch_size=4,
                                       out_dir=str(tmp_path))
    assert capped["beyond"]["difference"] == 0.0 and all(b["difference"] == 0.0 for b in capped["bins"])
    assert (tmp_path / "loss_by_position.png").read_bytes()[:4] == b"\x89PNG"
    plain = analysis.loss_by_position(model, rows, train_len=8, max_factor=4, batch_size=4)
    np.testing.assert_array_equal(plain["nll_reset"], capped["nll"])  # the reset run is the capped model
    diff = np.asarray(plain["difference"])
    assert not diff[:8].any() and np.abs(diff[8:]).max() > 1e-4  # carrying changes predictions only beyond T
    np.testing.assert_allclose(diff, np.asarray(plain["nll"]) - np.asarray(plain["nll_reset"]), atol=1e-9)


# --------------------------------------------------------------------------- the Markov source


def test_markov_source_follows_its_table():
    source = MarkovSource(order=1, symbols=3, documents=1, doc_len=30000, concentration=1.0, seed=5)
    text = markov_documents(source)[0]
    x = np.frombuffer(text.encode(), np.uint8) - ord("a")
    table = source.tables()[0]
    counts = np.zeros((3, 3))
    np.add.at(counts, (x[:-1], x[1:]), 1)
    np.testing.assert_allclose(counts / counts.sum(1, keepdims=True), table, atol=0.02)
    empirical = -np.log(table[x[:-1], x[1:]]).mean()
    assert abs(entropy_rate(table, 3, 1) - empirical) < 0.02
    assert markov_documents(source) == [text]  # deterministic


# --------------------------------------------------------------------------- bad input: one error line


def _error_lines(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


RUN = ("--quiet", "--config", "hawk_tiny", "train.steps=1", "train.tensorboard=false", "train.progress=false")


def test_bad_length_generalization_inputs_give_one_error_line(tmp_path, capsys, monkeypatch, models):
    assert main(["train", *RUN, "initial_state=tbtt", "mixture=ul2", f"train.run_dir={tmp_path / 'a'}"]) == 2
    line = _error_lines(capsys)
    assert "initial_state=tbtt" in line and "data.packing=document" in line and "mixture=ul2" in line
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("a few words\n\n\nand a few more")
    assert main(["train", *RUN, "data.packing=stream", f"data.corpus={corpus}", "data.seq_len=64",
                 "data.validation_fraction=0", f"train.run_dir={tmp_path / 'b'}"]) == 2
    assert "data.seq_len=64 is larger than the token stream" in _error_lines(capsys)

    from birdie_jax import inference
    from birdie_jax.config import Config
    from birdie_jax.inference import LoadedRun

    monkeypatch.setattr(inference, "load_checkpoint",
                        lambda path, step=None: LoadedRun(Config(name="t"), TOK, models["hawk"], 1))
    assert main(["analyze", "loss-by-position", "--checkpoint", str(tmp_path), "--train-len", "16",
                 "--length", "40"]) == 2
    assert "length 40 is not a multiple of the training length T=16" in _error_lines(capsys)
