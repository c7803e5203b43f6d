"""SQuAD-style extractive QA without network (Birdie §4.4; spec ``birdie.md`` §9.2).

Passages are real text (the run's corpus, or any corpus) with one generated fact sentence
inserted at a sentence boundary — "The code name of Ada Novak is heron." — and the question
"What is the code name of Ada Novak?", whose gold answer is a span of the passage. A JSONL
file of ``{"context", "question", "answers"}`` records (``answers`` a list of strings, or
SQuAD's ``{"text": [...]}``) is accepted instead. Prompt ``"{context}\\n\\n{question}"``,
greedy decoding stopped at a newline; metrics *contains* and SQuAD F1, reported per
context-length bucket (the papers plot QA quality against context length).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from birdie_jax.errors import DataError
from birdie_jax.evals.names import CODE_WORDS, unique_names

PROMPT = "{context}\n\n{question}"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclasses.dataclass(frozen=True)
class QAExample:
    context: str
    question: str
    answers: tuple[str, ...]
    cloze: str  # the question as a statement to complete (JRT's squad template)

    @property
    def prompt(self) -> str:
        return PROMPT.format(context=self.context, question=self.question)


def sentences(text: str) -> list[str]:
    """The text's sentences, whitespace collapsed (a rough split at . ! ? followed by space)."""
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def fact(rng: np.random.Generator) -> tuple[str, str, str, str]:
    """(fact sentence, question, answer, cloze) about a random name."""
    name = unique_names(rng, 1)[0]
    word = str(rng.choice(CODE_WORDS))
    return (f"The code name of {name} is {word}.", f"What is the code name of {name}?", word,
            f"The code name of {name} is")


def passage(documents: Sequence[str], rng: np.random.Generator, length: int, count_tokens) -> list[str]:
    """Consecutive sentences of random documents, about ``length`` tokens in all."""
    out, total = [], 0
    while total < length:
        doc = sentences(documents[int(rng.integers(len(documents)))])
        if not doc:
            continue
        start = int(rng.integers(len(doc)))
        for s in doc[start:]:
            out.append(s)
            total += count_tokens(s) + 1
            if total >= length:
                break
    return out


def qa_example(documents: Sequence[str], rng: np.random.Generator, length: int, count_tokens=len) -> QAExample:
    """A passage of about ``length`` tokens (``count_tokens(text)``) with one fact inserted."""
    if not documents or not any(d.strip() for d in documents):
        raise DataError("QA passages need at least one non-empty document")
    text = passage(documents, rng, length, count_tokens)
    sentence, question, answer, cloze = fact(rng)
    text.insert(int(rng.integers(len(text) + 1)), sentence)
    return QAExample(" ".join(text), question, (answer,), cloze)


def qa_examples(documents: Sequence[str], num_examples: int, seed: int, length: int, count_tokens=len):
    """``num_examples`` generated examples of about ``length`` tokens; example i from
    ``default_rng([seed, length, i])``."""
    return [qa_example(documents, np.random.default_rng([seed, length, i]), length, count_tokens)
            for i in range(num_examples)]


def read_qa_jsonl(path: str) -> list[QAExample]:
    """Records ``{"context", "question", "answers"}`` (optional ``"cloze"``), one per line."""
    from birdie_jax.data.corpus import read_jsonl_records  # noqa: PLC0415

    out = []
    for number, record in read_jsonl_records(path):
        for field in ("context", "question", "answers"):
            if field not in record:
                raise DataError(f"{path}, line {number}: missing field {field!r}")
        answers = record["answers"]
        answers = answers.get("text") if isinstance(answers, dict) else answers
        answers = [answers] if isinstance(answers, str) else answers
        if not answers or not all(isinstance(a, str) for a in answers):
            raise DataError(f"{path}, line {number}: 'answers' must be a string or a non-empty list of strings")
        out.append(QAExample(str(record["context"]), str(record["question"]), tuple(answers),
                             str(record.get("cloze", record["question"]))))
    if not out:
        raise DataError(f"{path} holds no QA record")
    return out


DEFAULT_LENGTHS = (128, 256, 512)


def evaluate_squad(ev, *, documents: Sequence[str] = (), num_examples: int = 16, seed: int = 0,
                   lengths: Sequence[int] = DEFAULT_LENGTHS, qa_file: str | None = None,
                   max_new_tokens: int = 32, jrt: bool = False, **_) -> dict:
    """*contains* and SQuAD F1 per context-length bucket: the target length of generated
    passages, or for a ``qa_file`` the power of two at or above each context's token count.
    With ``jrt``, also the JRT-Prompt (``{question} {context}\n{context} {cloze}``) per bucket."""
    from birdie_jax.evals.metrics import contains, squad_f1  # noqa: PLC0415

    if qa_file:
        examples = read_qa_jsonl(qa_file)
        examples = examples[:num_examples] if num_examples else examples
        # A file's examples are bucketed by the power of two at or above their context length.
        buckets = [1 << max(0, len(ev.encode(e.context)) - 1).bit_length() for e in examples]
    else:
        examples, buckets = [], []
        for n in lengths:
            examples += qa_examples(documents, num_examples, seed, int(n), lambda s: len(ev.encode(s)))
            buckets += [int(n)] * num_examples
    outputs = ev.complete([e.prompt for e in examples], max_new_tokens, desc="squad")
    twice = None
    if jrt:
        from birdie_jax.prompts import jrt_prompt  # noqa: PLC0415

        twice = ev.complete([jrt_prompt("squad", context=e.context, question=e.question, cloze=e.cloze)
                             for e in examples], max_new_tokens, desc="squad (JRT)")
    table = []
    for bucket in sorted(set(buckets)):
        picked = [i for i, b in enumerate(buckets) if b == bucket]
        row = {"tokens": bucket, "count": len(picked),
               "contains": float(np.mean([contains(outputs[i], examples[i].answers) for i in picked])),
               "f1": float(np.mean([squad_f1(outputs[i], examples[i].answers) for i in picked]))}
        if twice is not None:
            row["jrt_contains"] = float(np.mean([contains(twice[i], examples[i].answers) for i in picked]))
        table.append(row)
    overall = {"contains": float(np.mean([contains(o, e.answers) for o, e in zip(outputs, examples)])),
               "f1": float(np.mean([squad_f1(o, e.answers) for o, e in zip(outputs, examples)]))}
    return {"by_length": table, **overall,
            "examples": [{"question": e.question, "answers": list(e.answers), "output": o}
                         for e, o in list(zip(examples, outputs))[:3]]}


def plot_squad(result: dict, ax) -> None:
    from birdie_jax.evals.runner import paired_bars  # noqa: PLC0415

    paired_bars(ax, [f"~{r['tokens']}" for r in result["by_length"]],
                {"contains": [r["contains"] for r in result["by_length"]], "F1": [r["f1"] for r in result["by_length"]]})
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("score")
    ax.set_title("SQuAD-style QA by context length")
