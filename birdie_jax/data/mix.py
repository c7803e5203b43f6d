"""``data.corpus: mix``: text documents from named sources, in given shares of characters.

The Birdie paper pretrains on The Pile, where text sits beside documents that reward recall;
this corpus puts the built-in text beside generated recall documents, so that every mixture
(``birdie``, ``ul2``, ``fixed``, ``clm``) trains on the same documents:

* ``builtin``: the built-in English text (:func:`~birdie_jax.data.corpus.builtin_documents`);
* ``phonebook``: a phonebook prompt of the phonebook evaluation (:mod:`birdie_jax.evals.phonebook`)
  with ``data.mix_phonebook_entries`` entries and ``data.mix_phonebook_queries`` names asked,
  then a space and the answer (the numbers in query order);
* ``qa``: a SQuAD-style passage of about ``data.mix_qa_length`` characters of built-in text with
  one generated fact inserted (:mod:`birdie_jax.evals.squad`), the question, a space and the answer;
* ``kv``: an FDA/SWDE-like key–value document of the JRT-Prompt evaluation (:mod:`birdie_jax.evals.jrt`):
  an entity's attributes among about ``data.mix_kv_length`` characters of built-in text, its default
  prompt ``{doc}. {Key}:``, a space and the value.

A recall document is the evaluation's prompt followed by a space and the answer, the layout an
evaluation reads (generation stops at the first newline). The names, numbers and facts come
from seeds of their own, never those the evaluations draw with.

``data.mix`` maps source names to weights (default :data:`DEFAULT_MIX`); a weight is the
source's share of the corpus's characters (weights are normalised). The corpus holds as many
characters as the built-in text: the built-in documents are subsampled (a fixed random subset,
in corpus order) to their share, and each generated source makes documents until it reaches
its share. Keep a recall document shorter than ``data.seq_len`` (byte tokenizer: one token per
character) so that objectives see it whole; a longer one is cut like any long document.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from birdie_jax.errors import ConfigError

MIX = "mix"
MIX_SOURCES = ("builtin", "phonebook", "qa", "kv")
DEFAULT_MIX = {"builtin": 0.6, "phonebook": 0.2, "qa": 0.2}
# Seeds of the generated sources: [tag, i] for document i; the evaluations draw with
# default_rng([seed, k or length, i]) from small seeds, so these tags keep the two apart.
_SEED_TAGS = {"builtin": 0xB1D1E_0, "phonebook": 0xB1D1E_1, "qa": 0xB1D1E_2, "kv": 0xB1D1E_3}


def check_mix(weights: Mapping[str, float] | None) -> dict[str, float]:
    """The normalised weights of ``data.mix`` (None: :data:`DEFAULT_MIX`); ConfigError naming
    an unknown source, a weight that is negative or not finite, or weights that sum to 0."""
    weights = DEFAULT_MIX if weights is None else weights
    for name, weight in weights.items():
        if name not in MIX_SOURCES:
            raise ConfigError(f"data.mix: unknown source {name!r}; choose from {', '.join(MIX_SOURCES)}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or weight < 0:
            raise ConfigError(f"data.mix.{name} must be a finite number >= 0, got {weight!r}")
    total = sum(weights.values())
    if total <= 0:
        raise ConfigError(f"data.mix weights must sum to more than 0, got {dict(weights)}")
    return {name: float(w) / total for name, w in weights.items() if w > 0}


def phonebook_document(rng: np.random.Generator, entries: tuple[int, int], queries: tuple[int, int]) -> str:
    """One phonebook evaluation prompt, a space, and its answer."""
    from birdie_jax.evals.phonebook import phonebook_example  # noqa: PLC0415

    size = int(rng.integers(entries[0], entries[1] + 1))
    k = int(rng.integers(queries[0], min(queries[1], size) + 1))
    example = phonebook_example(rng, size, k)
    return f"{example.prompt} {example.answer}"


def qa_document(rng: np.random.Generator, text: list[str], length: int) -> str:
    """One SQuAD-style evaluation prompt over ``text`` (a passage of about ``length`` characters
    with one fact inserted), a space, and its answer."""
    from birdie_jax.evals.squad import qa_example  # noqa: PLC0415

    example = qa_example(text, rng, length)
    return f"{example.prompt} {example.answers[0]}"


def kv_document(rng: np.random.Generator, text: list[str], length: int) -> str:
    """One key–value evaluation prompt of the JRT-Prompt harness (``{doc}. {Key}:``, the doc holding
    an entity's attributes among about ``length`` characters of ``text``), a space, and the value."""
    from birdie_jax.evals.jrt import kv_document as kv_triple  # noqa: PLC0415
    from birdie_jax.prompts import jrt_prompt  # noqa: PLC0415

    doc, key, value = kv_triple(rng, text, length)
    return f"{jrt_prompt('kv', context=doc, question=key, repeat=False)} {value}"


def _fill(make: Callable[[np.random.Generator], str], tag: int, chars: float) -> list[str]:
    """Documents ``make(default_rng([tag, i]))`` for i = 0, 1, … until they hold ``chars`` characters."""
    docs, size = [], 0
    while size < chars:
        docs.append(make(np.random.default_rng([tag, len(docs)])))
        size += len(docs[-1])
    return docs


def _subsample(text: list[str], chars: float) -> list[str]:
    """A fixed random subset of ``text`` holding about ``chars`` characters, in corpus order."""
    keep, size = set(), 0
    for i in np.random.default_rng(_SEED_TAGS["builtin"]).permutation(len(text)):
        if size >= chars:
            break
        keep.add(int(i))
        size += len(text[i])
    return [d for i, d in enumerate(text) if i in keep]


def mix_documents(data) -> list[str]:
    """The documents of ``data.corpus: mix`` for a :class:`~birdie_jax.config.DataConfig`: each
    source's documents in turn (builtin, phonebook, qa, kv), each source at its share of characters."""
    from birdie_jax.data.corpus import builtin_documents  # noqa: PLC0415

    shares = check_mix(data.mix)
    text = builtin_documents()
    total = sum(len(d) for d in text)
    makers = {
        "phonebook": lambda rng: phonebook_document(rng, data.mix_phonebook_entries, data.mix_phonebook_queries),
        "qa": lambda rng: qa_document(rng, text, data.mix_qa_length),
        "kv": lambda rng: kv_document(rng, text, data.mix_kv_length),
    }
    docs = []
    for name in MIX_SOURCES:
        if name not in shares:
            continue
        if name == "builtin":
            docs += text if shares[name] == 1.0 else _subsample(text, shares[name] * total)
        else:
            docs += _fill(makers[name], _SEED_TAGS[name], shares[name] * total)
    return docs


def held_out_text(cfg) -> list[str]:
    """The built-in text documents of a run's validation split (``cfg``: a whole
    :class:`~birdie_jax.config.Config`, split as training splits it): text the run never trained
    on, for the passages of text evaluations (QA, infilling). Works for any corpus."""
    from birdie_jax.data.corpus import builtin_documents, corpus_documents, split_documents  # noqa: PLC0415

    text = set(builtin_documents())
    train, validation = split_documents(corpus_documents(cfg.data), cfg.data.validation_fraction, cfg.seed)
    seen = set(train)  # the built-in text holds a document twice: a copy in training is not held out
    return [d for d in validation if d in text and d not in seen]
