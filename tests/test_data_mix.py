"""``data.corpus: mix``: shares of characters, well-formed recall documents, clear errors."""

import re

import pytest

from birdie_jax.cli import main
from birdie_jax.config import load_config
from birdie_jax.data.corpus import builtin_documents, corpus_documents, split_documents
from birdie_jax.data.mix import held_out_text
from birdie_jax.errors import ConfigError
from birdie_jax.evals.phonebook import phonebook_examples


def _source(doc: str) -> str:
    """The test's own classifier: a phonebook has its header line, a QA document its question."""
    if "\nPhonebook:\n" in doc:
        return "phonebook"
    if re.search(r"\n\nWhat is the code name of [A-Z][a-z]+ [A-Z][a-z]+\? \w+$", doc):
        return "qa"
    return "builtin"


@pytest.fixture(scope="module")
def mixed():
    cfg = load_config("hawk_tiny", "data.corpus=mix", "data.mix={builtin: 2, phonebook: 1, qa: 1}")
    return cfg, corpus_documents(cfg.data)


def test_shares_of_characters_follow_the_weights(mixed):
    _, docs = mixed
    chars = {"builtin": 0, "phonebook": 0, "qa": 0}
    for d in docs:
        chars[_source(d)] += len(d)
    total = sum(chars.values())
    builtin_total = sum(len(d) for d in builtin_documents())
    assert abs(total - builtin_total) / builtin_total < 0.03  # as large as the built-in text
    for name, share in {"builtin": 0.5, "phonebook": 0.25, "qa": 0.25}.items():
        assert abs(chars[name] / total - share) < 0.03, (name, chars)
    assert all(d in set(builtin_documents()) for d in docs if _source(d) == "builtin")
    assert corpus_documents(mixed[0].data) == docs  # deterministic


def test_phonebook_documents_answer_their_question(mixed):
    cfg, docs = mixed
    books = [d for d in docs if _source(d) == "phonebook"]
    assert books
    lo, hi = cfg.data.mix_phonebook_entries
    for doc in books[:50]:
        lines = doc.split("\n")
        entries = dict(line.split(": ") for line in lines[2:-1])
        assert lo <= len(entries) <= hi
        question, answer = lines[-1].split("above. ")
        asked = re.match(r"What are the phone numbers for (.*)\? Find them in the phonebook ", question).group(1)
        names = re.split(r", and |, | and ", asked)
        assert lines[0] == question.replace("above", "below") + "below."
        assert answer == ", ".join(entries[n] for n in names)


def test_qa_documents_answer_from_their_passage(mixed):
    _, docs = mixed
    for doc in [d for d in docs if _source(d) == "qa"][:50]:
        passage, tail = doc.split("\n\n")[-2:] if doc.count("\n\n") else ("", "")
        name, word = re.match(r"What is the code name of (.*)\? (\w+)$", tail).groups()
        assert f"The code name of {name} is {word}." in doc.rsplit("\n\nWhat is", 1)[0]


def test_training_books_are_not_the_evaluation_books(mixed):
    _, docs = mixed
    prompts = {d.rsplit(" ", 2)[0] for d in docs if _source(d) == "phonebook"}
    for k in (1, 2, 4):
        for example in phonebook_examples(16, 0, (4, 8), k):
            assert not any(d.startswith(example.prompt) for d in docs)
    assert prompts


def test_held_out_text_is_unseen_builtin_text():
    cfg = load_config("hawk_tiny", "data.corpus=mix", "data.validation_fraction=0.1", "seed=3")
    held = held_out_text(cfg)
    train, _ = split_documents(corpus_documents(cfg.data), 0.1, 3)
    text = set(builtin_documents())
    assert held and all(d in text for d in held) and not set(held) & set(train)


@pytest.mark.parametrize("override, message", [
    ("data.mix={builtin: 1, phonbook: 1}", "unknown source 'phonbook'"),
    ("data.mix={builtin: -1, qa: 2}", "data.mix.builtin must be a finite number >= 0"),
    ("data.mix={builtin: .nan}", "data.mix.builtin must be a finite number"),
    ("data.mix={builtin: 0, qa: 0}", "must sum to more than 0"),
    ("data.mix_phonebook_entries=[8, 4]", "data.mix_phonebook_entries must be [min, max]"),
    ("data.mix_phonebook_queries=[5, 6]", "asks more names than the smallest book"),
])
def test_bad_mix_is_a_config_error(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("hawk_tiny", "data.corpus=mix", override)


def test_cli_reports_a_bad_source_in_one_line(capsys, tmp_path):
    code = main(["train", "--config", "hawk_tiny", "data.corpus=mix", "data.mix={text: 1}",
                 f"train.run_dir={tmp_path}/run"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "data.mix: unknown source 'text'" in err
    assert "Traceback" not in err
