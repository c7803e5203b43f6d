"""Text corpora as lists of documents (str), and a deterministic train/validation split.

Sources accepted by :func:`load_documents`:

* ``"markov"`` (through :func:`corpus_documents` only): a synthetic stationary Markov
  source whose shape the ``data.markov_*`` fields set (:mod:`birdie_jax.data.markov`).
* ``"mix"`` (through :func:`corpus_documents` only): the built-in text beside generated
  recall documents (phonebook, QA) in the shares ``data.mix`` sets (:mod:`birdie_jax.data.mix`).
* ``"builtin"``: the English help text of Python's ``pydoc_data.topics`` (ships
  with CPython, no download). One document per topic; topics over 8k characters
  are cut at paragraph boundaries into pieces of about 2.5k (2-8k) characters.
* a plain-text file (``.txt``, ``.md``, anything not ``.jsonl``): documents are
  separated by a line holding only a form feed (``\\f``) or by a run of two or
  more consecutive blank lines. A single blank line is a paragraph break inside
  a document.
* a JSONL file (``.jsonl``): one JSON object per line, the text in ``text_field``;
  blank lines are skipped.
* a directory: every ``*.txt``, ``*.md`` and ``*.jsonl`` file inside it,
  recursively, in sorted path order, each read as above.

Documents that are empty or whitespace-only are dropped. Every problem is a
:class:`~birdie_jax.errors.DataError` naming the file (and line or byte offset).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from birdie_jax.data.markov import MARKOV, MarkovSource, markov_documents
from birdie_jax.data.mix import MIX, mix_documents
from birdie_jax.errors import DataError

BUILTIN = "builtin"
CORPUS_SUFFIXES = (".txt", ".md", ".jsonl")
FORMATS = ("auto", "text", "jsonl")

_BUILTIN_SPLIT_ABOVE = 8000  # topics longer than this are split
_BUILTIN_TARGET = 2500  # target piece length when splitting
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
# A line with only a form feed, or 2+ consecutive blank lines (i.e. 3+ newlines
# with only spaces/tabs between them), separates plain-text documents.
_DOC_BREAK = re.compile(r"^[ \t]*\f[ \t]*(?:\n|$)|\n(?:[ \t]*\n){2,}", re.MULTILINE)


def builtin_documents() -> list[str]:
    """The built-in corpus: ``pydoc_data.topics`` split into documents (deterministic)."""
    from pydoc_data import topics  # noqa: PLC0415 (stdlib, only needed here)

    docs: list[str] = []
    for key in sorted(topics.topics):
        text = topics.topics[key].strip()
        if len(text) <= _BUILTIN_SPLIT_ABOVE:
            docs.append(text)
        else:
            docs.extend(_split_paragraphs(text, _BUILTIN_TARGET))
    return [d for d in docs if d.strip()]


def _split_paragraphs(text: str, target: int) -> list[str]:
    """Cut text at blank lines into ceil(len/target) pieces of roughly equal size."""
    paragraphs = [p for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
    n_pieces = max(1, math.ceil(len(text) / target))
    piece_len = len(text) / n_pieces
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for para in paragraphs:
        current.append(para)
        size += len(para) + 2
        if size >= piece_len and len(pieces) < n_pieces - 1:
            pieces.append("\n\n".join(current))
            current, size = [], 0
    if current:
        pieces.append("\n\n".join(current))
    return pieces


def _read_utf8(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read corpus file {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"corpus file {path} is not valid UTF-8 (byte offset {e.start}: {e.reason})"
        ) from None
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _split_plain_text(text: str) -> list[str]:
    docs = (d.strip("\n") for d in _DOC_BREAK.split(text))
    return [d for d in docs if d.strip()]


def read_jsonl_records(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file; DataError naming the
    file and line for a line that is not a JSON object."""
    path = Path(path)
    records = []
    for line_no, line in enumerate(_read_utf8(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {line_no}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path}, line {line_no}: expected a JSON object, got {type(record).__name__}"
            )
        records.append((line_no, record))
    return records


def _read_jsonl(path: Path, text_field: str) -> list[str]:
    docs: list[str] = []
    for line_no, record in read_jsonl_records(path):
        if text_field not in record:
            raise DataError(f"{path}, line {line_no}: missing text field {text_field!r}")
        text = record[text_field]
        if not isinstance(text, str):
            raise DataError(
                f"{path}, line {line_no}: field {text_field!r} must be a string, "
                f"got {type(text).__name__}"
            )
        if text.strip():
            docs.append(text)
    return docs


def _read_file(path: Path, fmt: str, text_field: str) -> list[str]:
    if fmt == "jsonl" or (fmt == "auto" and path.suffix.lower() == ".jsonl"):
        return _read_jsonl(path, text_field)
    return _split_plain_text(_read_utf8(path))


def load_documents(
    source: str | os.PathLike = BUILTIN, *, fmt: str = "auto", text_field: str = "text"
) -> list[str]:
    """Load a corpus as a list of non-empty documents (see the module docstring).

    Args:
      source: "builtin", a file or a directory.
      fmt: "auto" (by suffix: ``.jsonl`` is JSONL, anything else plain text),
        "text" or "jsonl" (forced, for a file or every file of a directory).
      text_field: the JSONL field holding the text.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown corpus format {fmt!r}; expected one of {FORMATS}")
    if isinstance(source, str) and source == BUILTIN:
        docs = builtin_documents()
        source_name = "builtin corpus"
    else:
        path = Path(source).expanduser()
        source_name = str(path)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in CORPUS_SUFFIXES
            )
            if not files:
                raise DataError(
                    f"corpus directory {path} holds no {'/'.join(CORPUS_SUFFIXES)} files"
                )
            docs = [d for f in files for d in _read_file(f, fmt, text_field)]
        elif path.is_file():
            docs = _read_file(path, fmt, text_field)
        else:
            raise DataError(f"corpus path not found: {path}")
    if not docs:
        raise DataError(f"{source_name} holds no non-empty document")
    return docs


def split_documents(
    docs: Sequence[str], validation_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Deterministic (train_docs, val_docs) split; both keep the corpus order.

    ``round(fraction * n)`` random documents go to validation, clamped so that each
    side gets at least one document when there are >= 2 and the fraction is > 0.
    A single document is split by text instead: its last ``fraction`` of
    characters (cut at a whitespace when one is near) becomes validation.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise DataError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    docs = list(docs)
    if not docs:
        raise DataError("cannot split an empty corpus")
    if validation_fraction == 0.0:
        return docs, []
    if len(docs) == 1:
        return _split_text(docs[0], validation_fraction)
    n_val = min(max(round(validation_fraction * len(docs)), 1), len(docs) - 1)
    order = np.random.default_rng(seed).permutation(len(docs))
    val_idx = set(order[:n_val].tolist())
    train = [d for i, d in enumerate(docs) if i not in val_idx]
    val = [d for i, d in enumerate(docs) if i in val_idx]
    return train, val


def _split_text(text: str, fraction: float) -> tuple[list[str], list[str]]:
    if len(text) < 2:
        raise DataError(
            f"cannot split a single document of {len(text)} characters into train and validation"
        )
    cut = min(max(round(len(text) * (1.0 - fraction)), 1), len(text) - 1)
    # Prefer a whitespace boundary within 10% of the text around the cut.
    window = max(1, len(text) // 10)
    for delta in range(window):
        for c in (cut + delta, cut - delta):
            if 0 < c < len(text) and text[c].isspace():
                return [text[:c]], [text[c:]]
    return [text[:cut]], [text[cut:]]


def markov_source(data) -> MarkovSource:
    """The ``corpus: markov`` source a :class:`~birdie_jax.config.DataConfig`'s ``markov_*`` fields describe."""
    return MarkovSource(order=data.markov_order, symbols=data.markov_symbols, topics=data.markov_topics,
                        concentration=data.markov_concentration, documents=data.markov_documents,
                        doc_len=data.markov_doc_len, seed=data.markov_seed)


def corpus_documents(data) -> list[str]:
    """The documents of a :class:`~birdie_jax.config.DataConfig`: ``corpus: markov`` generates the
    synthetic stationary source (:mod:`birdie_jax.data.markov`), ``corpus: mix`` mixes the built-in
    text with generated recall documents (:mod:`birdie_jax.data.mix`), anything else is :func:`load_documents`."""
    if data.corpus == MARKOV:
        return markov_documents(markov_source(data))
    if data.corpus == MIX:
        return mix_documents(data)
    return load_documents(data.corpus, fmt=data.format, text_field=data.text_field)
