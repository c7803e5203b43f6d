"""Answer metrics shared by the generation tasks.

* :func:`contains`: some gold answer appears in the output, case-insensitively (JRT
  "contains", Birdie's "Answer Contains Label").
* :func:`squad_f1`: SQuAD's token F1 after its normalisation (lower case, punctuation and
  the articles a/an/the removed, whitespace collapsed), maximum over the gold answers.
* :func:`exact_match`: SQuAD exact match after the same normalisation.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence

from birdie_jax.errors import DataError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _golds(answers: Sequence[str]) -> Sequence[str]:
    if isinstance(answers, str) or not answers:
        raise DataError(f"gold answers must be a non-empty list of strings, got {answers!r}")
    return answers


def contains(output: str, answers: Sequence[str]) -> float:
    """1.0 if some gold answer is a case-insensitive substring of the output, else 0.0."""
    lowered = output.lower()
    return float(any(a.lower() in lowered for a in _golds(answers) if a))


def _f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_f1(output: str, answers: Sequence[str]) -> float:
    """Token F1 between the normalised output and the best-matching gold answer."""
    return max(_f1(output, a) for a in _golds(answers))


def exact_match(output: str, answers: Sequence[str]) -> float:
    return float(any(normalize_answer(output) == normalize_answer(a) for a in _golds(answers)))
