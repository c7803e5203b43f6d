"""Tokenizers: byte round trip, special-id reservation (spec §1, §4), file tokenizers."""

import pickle
import sys

import numpy as np
import pytest

from birdie_jax.errors import DataError
from birdie_jax.tokenizer import (
    OBJECTIVE_CLASSES,
    ByteTokenizer,
    SpecialTokens,
    build_tokenizer,
)

TEXTS = ["Hello, world!", "héllo wörld — ünïcode ✓ 日本語 🐦", "", "tab\tnew\nline\x00nul"]


def _check_reservation(tok) -> None:
    """Specials: distinct, >= base size, < vocab_size; vocab a multiple of 128."""
    sp = tok.special
    ids = sorted(sp.all_ids)
    assert len(ids) == len(set(ids)) == 10 + len(OBJECTIVE_CLASSES) + 3 + sp.num_sentinels
    assert ids == list(range(tok.base_vocab_size, tok.base_vocab_size + len(ids)))
    assert ids[-1] < tok.vocab_size
    assert tok.vocab_size % 128 == 0
    assert tok.vocab_size - (tok.base_vocab_size + len(ids)) < 128
    assert sp.num_sentinels >= 100


# ---------------------------------------------------------------- byte tokenizer


@pytest.mark.parametrize("text", TEXTS)
def test_byte_round_trip(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert ids.tolist() == list(text.encode("utf-8"))
    assert tok.decode(ids) == text


def test_byte_special_layout():
    tok = build_tokenizer("byte")
    sp = tok.special
    expected = dict(pad=256, eos=257, bg=258, mask=259, copy=260, start=261, end=262,
                    context=263, sep=264, done=265, r=273, x=274, s=275)
    assert {k: getattr(sp, k) for k in expected} == expected
    assert dict(sp.paradigm) == dict(zip(OBJECTIVE_CLASSES, range(266, 273)))
    assert sp.sentinels == tuple(range(276, 376))
    assert tok.vocab_size == 384
    _check_reservation(tok)


def test_special_ids_never_encoded():
    tok = ByteTokenizer()
    every_char = "".join(chr(c) for c in range(1, 0x3000, 7)) + "".join(TEXTS)
    ids = tok.encode(every_char)
    assert ids.max() < tok.base_vocab_size
    assert not set(ids.tolist()) & tok.special.all_ids


@pytest.mark.parametrize("num_sentinels", [100, 128, 300])
def test_vocab_size_multiple_of_128(num_sentinels):
    tok = ByteTokenizer(num_sentinels=num_sentinels)
    assert tok.special.num_sentinels == num_sentinels
    _check_reservation(tok)


def test_too_few_sentinels():
    with pytest.raises(DataError, match="at least 100"):
        SpecialTokens.reserve(256, num_sentinels=99)


def test_sentinel_cycles_and_names():
    sp = ByteTokenizer().special
    assert sp.sentinel(0) == sp.sentinels[0]
    assert sp.sentinel(3) == sp.sentinels[3]
    assert sp.sentinel(100) == sp.sentinels[0]
    assert sp.name_of(sp.bg) == "[BG]"
    assert sp.name_of(sp.sentinel(3)) == "[S3]"
    assert sp.name_of(sp.paradigm["infill"]) == "[P:infill]"
    assert sp.name_of(sp.r) == "[UL2:R]"
    assert sp.name_of(380) == "[UNUSED:380]"
    with pytest.raises(KeyError):
        sp.name_of(65)
    assert len(set(sp.to_dict())) == len(sp.all_ids)


def test_decode_specials_and_invalid_utf8():
    tok = ByteTokenizer()
    sp = tok.special
    ids = [*tok.encode("ab"), sp.bg, *tok.encode("c"), sp.sentinel(3), sp.eos]
    assert tok.decode(ids) == "ab[BG]c[S3][EOS]"
    assert tok.decode(ids, skip_special=True) == "abc"
    assert tok.decode([0xFF, 0x41]) == "\ufffdA"
    assert tok.decode([]) == ""


@pytest.mark.parametrize("bad", [384, 10_000, -1])
def test_out_of_range_id(bad):
    tok = ByteTokenizer()
    with pytest.raises(DataError, match=rf"{bad}.*384"):
        tok.decode([65, bad])


def test_build_tokenizer_errors(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(DataError, match="nope.json"):
        build_tokenizer(str(missing))
    with pytest.raises(DataError, match="nope.model"):
        build_tokenizer(str(tmp_path / "nope.model"))
    with pytest.raises(DataError, match="unknown tokenizer"):
        build_tokenizer("gpt2")


def test_missing_optional_package(tmp_path, monkeypatch):
    path = tmp_path / "tok.json"
    path.write_text("{}")
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import now raises ImportError
    with pytest.raises(DataError, match=r"pip install birdie-jax\[tokenizers\]"):
        build_tokenizer(str(path))


def test_byte_to_dict_and_pickle():
    tok = ByteTokenizer()
    d = tok.to_dict()
    assert d == {"name": "byte", "spec": "byte", "vocab_size": 384, "base_vocab_size": 256,
                 "num_sentinels": 100}
    again = build_tokenizer(d["spec"], d["num_sentinels"])
    assert again.special == tok.special
    assert pickle.loads(pickle.dumps(tok)).special == tok.special


# ---------------------------------------------------------------- file tokenizers

_TRAIN_TEXT = ["the quick brown fox jumps over the lazy dog"] * 30 + ["héllo wörld ünïcode"] * 10


def _check_file_tokenizer(tok, base_size):
    assert tok.base_vocab_size == base_size
    assert tok.special.pad == base_size
    _check_reservation(tok)
    ids = tok.encode("the lazy fox")
    assert ids.dtype == np.int32 and ids.size > 0 and ids.max() < base_size
    assert tok.decode(ids).strip() == "the lazy fox"
    assert tok.decode([*ids, tok.special.bg]).endswith("[BG]")
    assert tok.encode("").size == 0
    with pytest.raises(DataError, match=str(tok.vocab_size)):
        tok.decode([tok.vocab_size])
    assert len(tok.to_dict()["sha256"]) == 64
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode("the lazy fox").tolist() == ids.tolist()


def test_hf_tokenizer(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["[UNK]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    hf.train_from_iterator(_TRAIN_TEXT, trainer)
    path = tmp_path / "tok.json"
    hf.save(str(path))
    tok = build_tokenizer(str(path))
    assert tok.name == "hf:tok.json"
    _check_file_tokenizer(tok, hf.get_vocab_size(with_added_tokens=True))


def test_sentencepiece_tokenizer(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(_TRAIN_TEXT * 4), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "sp"), vocab_size=40,
        model_type="bpe", character_coverage=1.0, minloglevel=2,
    )
    tok = build_tokenizer(str(tmp_path / "sp.model"), num_sentinels=120)
    assert tok.name == "sp:sp.model"
    assert tok.special.num_sentinels == 120
    _check_file_tokenizer(tok, 40)


def test_corrupt_tokenizer_file(tmp_path):
    pytest.importorskip("tokenizers")
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="broken.json"):
        build_tokenizer(str(path))
