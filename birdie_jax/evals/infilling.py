"""Story infilling (Birdie §4.5, A.16; spec ``birdie.md`` §9.3), from the corpus.

An item is 3–7 consecutive sentences of one document, numbered, one replaced by
"(blank)"; four choices (A)–(D): the removed sentence and three sentences of other
documents. The model picks the choice "(X) text" with the lowest loss per token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from birdie_jax.errors import DataError
from birdie_jax.evals.squad import sentences

INSTRUCTION = ("Consider the following sequence of events, then select a choice that best fills in the "
               "missing entry:")
QUESTION = "Which choice best fills in the missing entry?"
LETTERS = "ABCD"
ENTRIES = (3, 7)
SENTENCE_CHARS = (20, 200)


@dataclasses.dataclass(frozen=True)
class InfillingItem:
    prompt: str
    choices: tuple[str, ...]  # the continuations "(A) text", ...
    answer: int  # index of the correct choice


def _usable(doc: str) -> list[str]:
    lo, hi = SENTENCE_CHARS
    return [s for s in sentences(doc) if lo <= len(s) <= hi]


def infilling_item(documents: Sequence[str], rng: np.random.Generator) -> InfillingItem:
    """One item: entries from one document, distractors from three others."""
    pools = [_usable(d) for d in documents]
    eligible = [i for i, p in enumerate(pools) if len(p) >= ENTRIES[0]]
    if len(eligible) < 1 or sum(1 for p in pools if p) < 4:
        raise DataError("infilling needs a document of >= 3 usable sentences and 3 other documents with one")
    doc = eligible[int(rng.integers(len(eligible)))]
    count = int(rng.integers(ENTRIES[0], min(ENTRIES[1], len(pools[doc])) + 1))
    start = int(rng.integers(len(pools[doc]) - count + 1))
    entries = pools[doc][start:start + count]
    blank = int(rng.integers(count))
    correct = entries[blank]
    others = [i for i, p in enumerate(pools) if p and i != doc]
    distractors: list[str] = []
    for i in rng.permutation(others):
        candidates = [s for s in pools[i] if s != correct and s not in distractors]
        if candidates:
            distractors.append(candidates[int(rng.integers(len(candidates)))])
        if len(distractors) == 3:
            break
    if len(distractors) < 3:
        raise DataError("infilling needs three distinct distractor sentences from other documents")
    options = [correct] + distractors
    order = rng.permutation(4)
    answer = int(np.flatnonzero(order == 0)[0])
    lines = [INSTRUCTION] + [f"{j + 1}. {'(blank)' if j == blank else e}" for j, e in enumerate(entries)]
    lines += ["Choices:"] + [f"({LETTERS[j]}) {options[o]}" for j, o in enumerate(order)] + [QUESTION]
    choices = tuple(f"({LETTERS[j]}) {options[o]}" for j, o in enumerate(order))
    return InfillingItem("\n".join(lines), choices, answer)


def infilling_items(documents: Sequence[str], num_items: int, seed: int) -> list[InfillingItem]:
    return [infilling_item(documents, np.random.default_rng([seed, i])) for i in range(num_items)]


def pick_choice(mean_logprobs: Sequence[float]) -> int:
    """The choice with the lowest loss per token (highest mean log-probability)."""
    return int(np.argmax(np.asarray(mean_logprobs)))


def evaluate_infilling(ev, *, documents: Sequence[str] = (), num_examples: int = 16, seed: int = 0, **_) -> dict:
    """Accuracy of the lowest-loss-per-token choice (chance 25%)."""
    items = infilling_items(documents, num_examples, seed)
    contexts = [item.prompt for item in items for _ in item.choices]
    continuations = [c for item in items for c in item.choices]
    scores = ev.loglik(contexts, continuations, desc="infilling").mean_logprob.reshape(len(items), 4)
    correct = [pick_choice(s) == item.answer for s, item in zip(scores, items)]
    return {"accuracy": float(np.mean(correct)), "chance": 0.25, "num_items": len(items)}


def plot_infilling(result: dict, ax) -> None:
    ax.bar(["model", "chance"], [result["accuracy"], result["chance"]], color=["tab:purple", "grey"])
    ax.set_ylabel("accuracy")
    ax.set_title(f"story infilling ({result['num_items']} items)")
