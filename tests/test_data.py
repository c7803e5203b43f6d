"""Corpus loading, sample layout (spec §5.1), packing (§5.2) and the Grain pipeline."""

import functools
import json

import grain
import numpy as np
import pytest
from conftest import packed_segments

from birdie_jax.data.corpus import load_documents, split_documents
from birdie_jax.data.layout import IGNORE_ID, layout_sample
from birdie_jax.data.packing import pack_row
from birdie_jax.data.pipeline import make_batch_iterator, make_eval_batches
from birdie_jax.errors import DataError
from birdie_jax.tokenizer import ByteTokenizer

TOK = ByteTokenizer()
BG, PAD, EOS = TOK.special.bg, TOK.special.pad, TOK.special.eos
FIELDS = ("inputs", "targets", "segment_ids", "positions", "region")


@pytest.fixture(scope="module")
def builtin_docs():
    return load_documents("builtin")


def _docs(n: int, seed: int = 0) -> list[str]:
    """n small synthetic documents of varied length (some longer than a row)."""
    rng = np.random.default_rng(seed)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 120)))) + f" #{i}" for i in range(n)]


def _random_prefix_lm(tokens, rng, *, max_len):
    """Test transform: cut tokens into (prefix, labels) pairs of random sizes <= max_len."""
    out, i = [], 0
    while i < len(tokens):
        n = int(rng.integers(1, max_len + 1))
        piece = tokens[i : i + n]
        split = int(rng.integers(0, len(piece)))  # labels keep >= 1 token
        out.append((piece[:split], piece[split:]))
        i += n
    return out


def _segments(batches):
    return packed_segments(batches, FIELDS)


def _equal(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


# ---------------------------------------------------------------- layout


def test_layout_paper_example():
    s = layout_sample([4, 5, 6], [7, 8, 9], bg_id=BG)
    assert s["inputs"].tolist() == [4, 5, 6, BG, 7, 8]
    assert s["targets"].tolist() == [IGNORE_ID] * 3 + [7, 8, 9]
    assert s["region"].tolist() == [1, 0, 0, 2, 2, 2]
    assert s["region"].dtype == np.int8 and s["inputs"].dtype == np.int32
    assert IGNORE_ID == -100


def test_layout_empty_prefix_and_empty_labels():
    s = layout_sample([], [7], bg_id=BG)
    assert s["inputs"].tolist() == [BG]
    assert s["targets"].tolist() == [7]
    assert s["region"].tolist() == [2]
    with pytest.raises(ValueError, match="label"):
        layout_sample([1, 2], [], bg_id=BG)


# ---------------------------------------------------------------- packing


def test_pack_row_fields():
    a = layout_sample([4, 5, 6], [7, 8, 9], bg_id=BG)
    b = layout_sample([], [1, 2], bg_id=BG)
    row = pack_row([a, b], seq_len=10, pad_id=PAD)
    assert row["inputs"].tolist() == [4, 5, 6, BG, 7, 8, BG, 1, PAD, PAD]
    assert row["targets"].tolist() == [-100, -100, -100, 7, 8, 9, 1, 2, -100, -100]
    assert row["segment_ids"].tolist() == [1, 1, 1, 1, 1, 1, 2, 2, 0, 0]
    assert row["positions"].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 0, 0]
    assert row["region"].tolist() == [1, 0, 0, 2, 2, 2, 2, 2, 2, 2]
    assert all(v.dtype == np.int32 for v in row.values())


def test_packing_loses_and_duplicates_nothing():
    seq_len, seed, docs = 48, 5, _docs(40)
    transform = functools.partial(_random_prefix_lm, max_len=seq_len)
    batches = list(make_batch_iterator(
        docs, TOK, seq_len=seq_len, batch_size=3, seed=seed, sample_transform=transform,
        shuffle=False, num_epochs=1,
    ))
    # The samples the pipeline should have produced, in order.
    expected = []
    for i, text in enumerate(docs):
        tokens = np.concatenate([TOK.encode(text), [EOS]]).astype(np.int32)
        for p, y in transform(tokens, np.random.default_rng([seed, i])):
            expected.append(layout_sample(p, y, bg_id=BG))
    segs = _segments(batches)
    assert len(segs) == len(expected)
    for got, want in zip(segs, expected):
        for k in ("inputs", "targets", "region"):
            np.testing.assert_array_equal(got[k], want[k])
        np.testing.assert_array_equal(got["positions"], np.arange(len(want["inputs"])))
    for b in batches:
        assert all(b[k].shape == (3, seq_len) and b[k].dtype == np.int32 for k in FIELDS)
        seg = b["segment_ids"]
        pad = seg == 0
        # Segments are 1, 2, ... in order, padding only at the end of a row.
        assert (np.diff(seg, axis=1)[~pad[:, 1:]] >= 0).all()
        assert (np.diff(pad.astype(int), axis=1) >= 0).all()
        assert (b["inputs"][pad] == PAD).all() and (b["targets"][pad] == IGNORE_ID).all()
        assert (b["region"][pad] == 2).all() and (b["positions"][pad] == 0).all()
    # Greedy next fit: a row is closed only when the next sample does not fit.
    lengths = [len(s["inputs"]) for s in segs]
    used = [int((b["segment_ids"][r] > 0).sum()) for b in batches for r in range(3)]
    used = [u for u in used if u]
    idx = 0
    for u in used[:-1]:
        k = 0
        while k < u:
            k += lengths[idx]
            idx += 1
        assert u + lengths[idx] > seq_len


def test_default_ntp_keeps_every_token():
    seq_len, docs = 32, _docs(12)
    batches = list(make_batch_iterator(
        docs, TOK, seq_len=seq_len, batch_size=4, seed=0, shuffle=False, num_epochs=1,
    ))
    targets = np.concatenate([b["targets"].reshape(-1) for b in batches])
    want = np.concatenate([np.append(TOK.encode(d), EOS) for d in docs])
    np.testing.assert_array_equal(targets[targets != IGNORE_ID], want)
    for s in _segments(batches):  # NTP: empty prefix, BG then the labels shifted by one
        assert s["inputs"][0] == BG and (s["region"] == 2).all()
        np.testing.assert_array_equal(s["inputs"][1:], s["targets"][:-1])


def test_sample_longer_than_row_is_an_error():
    def whole_document(tokens, rng):
        return [(tokens, tokens)]

    it = make_batch_iterator(_docs(3), TOK, seq_len=16, batch_size=2, seed=0,
                             sample_transform=whole_document)
    with pytest.raises(ValueError, match="seq_len=16"):
        next(it)


def test_empty_document_list():
    with pytest.raises(DataError, match="empty"):
        make_batch_iterator([], TOK, seq_len=16, batch_size=2, seed=0)


# ---------------------------------------------------------------- determinism and state


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_determinism_and_seed(builtin_docs):
    kw = dict(seq_len=128, batch_size=4)
    a = _take(make_batch_iterator(builtin_docs, TOK, seed=1, **kw), 5)
    b = _take(make_batch_iterator(builtin_docs, TOK, seed=1, **kw), 5)
    c = _take(make_batch_iterator(builtin_docs, TOK, seed=2, **kw), 5)
    assert _equal(a, b)
    assert not _equal(a, c)


def test_state_restore_continues_exactly():
    docs = _docs(8)
    kw = dict(seq_len=64, batch_size=2, seed=3,
              sample_transform=functools.partial(_random_prefix_lm, max_len=64))
    it = make_batch_iterator(docs, TOK, **kw)
    reference = _take(make_batch_iterator(docs, TOK, **kw), 60)  # about 2.5 epochs
    mid_document = 0
    for step in range(60):
        if step in (0, 1, 7, 23, 41, 59) or step % 5 == 2:
            state = it.get_state()
            mid_document += '"skip": 0' not in json.dumps(state)  # checkpointable as JSON
            fresh = make_batch_iterator(docs, TOK, **kw)
            fresh.set_state(state)
            assert _equal(_take(fresh, 60 - step), reference[step:])
        assert _equal([next(it)], [reference[step]])
    assert mid_document > 0  # some restores resumed inside a document


def test_epochs_and_shards():
    """Two shards together hold exactly the full stream's samples (same per-document rngs)."""
    docs = _docs(10)
    kw = dict(seq_len=32, batch_size=2, seed=0, num_epochs=2,
              sample_transform=functools.partial(_random_prefix_lm, max_len=32))
    full = _segments(make_batch_iterator(docs, TOK, **kw))
    shards = [_segments(make_batch_iterator(docs, TOK, shard_index=i, shard_count=2, **kw))
              for i in range(2)]
    n_tokens = sum(len(s["inputs"]) for s in full)
    assert n_tokens == 2 * sum(len(d.encode()) + 1 for d in docs)
    assert sum(len(s["inputs"]) for sh in shards for s in sh) == n_tokens
    key = lambda segs: sorted(s["targets"].tobytes() for s in segs)  # noqa: E731
    assert key(shards[0] + shards[1]) == key(full)
    assert key(shards[0]) != key(shards[1])


def test_orbax_checkpoint_round_trip(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    docs = _docs(20)
    kw = dict(seq_len=64, batch_size=2, seed=4)
    it = make_batch_iterator(docs, TOK, **kw)
    _take(it, 5)
    with ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data",)) as mgr:
        mgr.save(5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        mgr.wait_until_finished()
        expected = _take(it, 4)
        fresh = make_batch_iterator(docs, TOK, **kw)
        mgr.restore(5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
    assert _equal(_take(fresh, 4), expected)


def test_mp_prefetch_one_worker_matches_in_process():
    docs = _docs(20)
    kw = dict(seq_len=64, batch_size=2, seed=6)
    it = make_batch_iterator(docs, TOK, num_workers=1, **kw)
    try:
        got = _take(it, 4)
        state = it.get_state()
    finally:
        it.close()
    ref_it = make_batch_iterator(docs, TOK, **kw)
    assert _equal(got, _take(ref_it, 4))
    again = make_batch_iterator(docs, TOK, num_workers=1, **kw)
    try:
        again.set_state(state)
        assert _equal(_take(again, 2), _take(ref_it, 2))
    finally:
        again.close()


def test_eval_batches_fixed():
    docs = _docs(3)
    a = make_eval_batches(docs, TOK, seq_len=32, batch_size=2, num_batches=50, seed=0)
    b = make_eval_batches(docs, TOK, seq_len=32, batch_size=2, num_batches=50, seed=0)
    assert len(a) == 50 and _equal(a, b)  # cycles through the 3 documents
    first = _segments(a)[0]["targets"]
    np.testing.assert_array_equal(first, TOK.encode(docs[0])[:32])  # no shuffle


# ---------------------------------------------------------------- corpus


def test_builtin_corpus(builtin_docs):
    assert 150 <= len(builtin_docs) <= 400
    total = sum(map(len, builtin_docs))
    assert 440_000 <= total <= 470_000
    assert max(map(len, builtin_docs)) <= 8_500
    assert all(d.strip() for d in builtin_docs)
    assert load_documents("builtin") == builtin_docs


def test_plain_text_file(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("doc one\npara\n\nstill one\n\n\ndoc two\n  \n\t\ndoc three\n\f\ndoc four\n\n\n\n")
    assert load_documents(path) == ["doc one\npara\n\nstill one", "doc two", "doc three", "doc four"]


def test_jsonl_and_directory(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.jsonl").write_text('{"body": "j1"}\n\n{"body": "j2", "id": 3}\n')
    (tmp_path / "a.md").write_text("m1\n\n\nm2")
    (tmp_path / "skip.csv").write_text("ignored")
    assert load_documents(tmp_path / "b" / "x.jsonl", text_field="body") == ["j1", "j2"]
    assert load_documents(tmp_path, text_field="body") == ["m1", "m2", "j1", "j2"]


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("bad.jsonl", b'{"text": "ok"}\nnot json\n', r"bad.jsonl, line 2: not valid JSON"),
        ("nofield.jsonl", b'{"text": "ok"}\n{"content": "x"}\n',
         r"nofield.jsonl, line 2: missing text field 'text'"),
        ("notstr.jsonl", b'{"text": 5}\n', r"notstr.jsonl, line 1: field 'text' must be a string"),
        ("latin1.txt", "caf\u00e9".encode("latin-1"), r"latin1.txt is not valid UTF-8 \(byte offset 3"),
        ("empty.txt", b"\n \n\n\n\t\n", r"empty.txt holds no non-empty document"),
    ],
)
def test_bad_corpus_files(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        load_documents(str(path))


def test_missing_and_empty_paths(tmp_path):
    with pytest.raises(DataError, match="not found: .*missing.txt"):
        load_documents(tmp_path / "missing.txt")
    with pytest.raises(DataError, match=str(tmp_path)):
        load_documents(tmp_path)  # no corpus files inside
    with pytest.raises(DataError, match="format"):
        load_documents("builtin", fmt="csv")


def test_split_documents():
    docs = [f"d{i}" for i in range(10)]
    train, val = split_documents(docs, 0.2, seed=0)
    assert (train, val) == split_documents(docs, 0.2, seed=0)
    assert len(val) == 2 and sorted(train + val) == sorted(docs)
    assert [d for d in docs if d in train] == train  # corpus order kept
    assert len(split_documents(docs[:2], 0.01, seed=0)[1]) == 1
    assert len(split_documents(docs[:2], 0.99, seed=0)[0]) == 1
    assert split_documents(docs, 0.0, seed=0) == (docs, [])
    text = "one two three four five six seven eight nine ten"
    (tr,), (va,) = split_documents([text], 0.3, seed=0)
    assert tr + va == text and 0 < len(va) < len(text) / 2
    with pytest.raises(DataError, match="validation_fraction"):
        split_documents(docs, 1.0, seed=0)
