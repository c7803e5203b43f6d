"""Phonebook retrieval (Birdie §4.3, A.9; spec ``birdie.md`` §9.1).

A book of "First Last: ddd-ddd-dddd" lines sits between two copies of the question
"What are the phone numbers for A, B, …, and Z?"; the answer is the k numbers in query
order joined by ", ". Metric: digit accuracy = correct aligned digits / 10k, a missing
number scoring 0 (random ≈ 10%). The paper evaluates 1,024 books of 750–800 entries with
k = 1..32; the sizes here scale down (``entries``, ``queries``) for CPU.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from birdie_jax.errors import DataError
from birdie_jax.evals.names import phone_number, unique_names

QUESTION = "What are the phone numbers for {names}? Find them in the phonebook {where}."


@dataclasses.dataclass(frozen=True)
class PhonebookExample:
    prompt: str
    answer: str
    names: tuple[str, ...]
    numbers: tuple[str, ...]
    entries: int


def join_names(names: Sequence[str]) -> str:
    """"A" (k = 1), "A and B" (k = 2), "A, B, …, and Z" (k ≥ 3)."""
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return ", ".join(names[:-1]) + ", and " + names[-1]


def phonebook_prompt(book: Sequence[tuple[str, str]], queries: Sequence[str]) -> str:
    """The paper's exact prompt for a book of (name, number) entries and the queried names."""
    names = join_names(queries)
    lines = [QUESTION.format(names=names, where="below"), "Phonebook:"]
    lines += [f"{name}: {number}" for name, number in book]
    lines.append(QUESTION.format(names=names, where="above"))
    return "\n".join(lines)


def phonebook_example(rng: np.random.Generator, entries: int, k: int) -> PhonebookExample:
    """A book of ``entries`` unique names and k distinct queried names among them."""
    if entries < 1:
        raise DataError(f"a phonebook needs at least one entry, got {entries}")
    if not 1 <= k <= entries:
        raise DataError(f"phonebook: k={k} queries must be between 1 and the book's {entries} entries")
    names = unique_names(rng, entries)
    book = [(name, phone_number(rng)) for name in names]
    picked = rng.choice(entries, k, replace=False)
    queries = tuple(book[i][0] for i in picked)
    numbers = tuple(book[i][1] for i in picked)
    return PhonebookExample(phonebook_prompt(book, queries), ", ".join(numbers), queries, numbers, entries)


def phonebook_examples(num_examples: int, seed: int, entries: tuple[int, int], k: int) -> list[PhonebookExample]:
    """``num_examples`` books with entries in [lo, hi] and k queries; example i from
    ``default_rng([seed, k, i])``."""
    lo, hi = entries
    if lo < 1 or hi < lo:
        raise DataError(f"phonebook entries must be 1 <= min <= max, got {entries}")
    out = []
    for i in range(num_examples):
        rng = np.random.default_rng([seed, k, i])
        out.append(phonebook_example(rng, int(rng.integers(lo, hi + 1)), k))
    return out


_NUMBER = re.compile(r"\d[\d-]*")


def digit_accuracy(output: str, numbers: Sequence[str]) -> float:
    """Correct aligned digits / (10·k): the i-th number written is compared digit by digit
    with the i-th gold number; numbers not written score 0."""
    if not numbers:
        raise DataError("digit accuracy needs at least one gold number")
    written = [m.group().replace("-", "") for m in _NUMBER.finditer(output)]
    correct, total = 0, 0
    for i, gold in enumerate(numbers):
        digits = gold.replace("-", "")
        total += len(digits)
        if i < len(written):
            correct += sum(a == b for a, b in zip(written[i], digits))
    return correct / total


def evaluate_phonebook(ev, *, num_examples: int = 8, seed: int = 0, entries: tuple[int, int] = (20, 40),
                       queries: Sequence[int] = (1, 2, 4, 8), **_) -> dict:
    """Digit accuracy per k (greedy, the answer's length plus a margin, stopped at a newline)."""
    table, examples = [], []
    # One decoding length for every k (the longest answer's, plus a margin): one compilation.
    max_new = len(ev.encode(", ".join(["000-000-0000"] * max(queries)))) + 4
    for k in queries:
        items = phonebook_examples(num_examples, seed, tuple(entries), int(k))
        outputs = ev.complete([e.prompt for e in items], max_new, desc=f"phonebook k={k}")
        scores = [digit_accuracy(o, e.numbers) for o, e in zip(outputs, items)]
        table.append({"k": int(k), "digit_accuracy": float(np.mean(scores))})
        examples.append({"k": int(k), "answer": items[0].answer, "output": outputs[0]})
    return {"by_k": table, "digit_accuracy": float(np.mean([r["digit_accuracy"] for r in table])),
            "entries": list(entries), "examples": examples}


def plot_phonebook(result: dict, ax) -> None:
    ks = [r["k"] for r in result["by_k"]]
    ax.plot(ks, [r["digit_accuracy"] for r in result["by_k"]], "o-")
    ax.axhline(0.1, color="grey", ls="--", lw=1, label="random (≈10%)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (numbers asked)")
    ax.set_ylabel("digit accuracy")
    ax.set_title(f"phonebook ({result['entries'][0]}–{result['entries'][1]} entries)")
