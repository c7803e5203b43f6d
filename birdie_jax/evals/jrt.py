"""JRT-Prompt harness (Just Read Twice §4; spec ``jrt.md`` §4): default vs read-twice prompts.

Two tasks, both generated offline:

* ``squad``: the SQuAD-style passages of :mod:`birdie_jax.evals.squad`, template ``squad``
  (``{text}`` = context + cloze, JRT: ``{question} {context}\\n{text}``);
* ``kv``: an FDA/SWDE-like information-extraction task: a key–value document about an
  entity ("Name: Acme. Headquarters: Oslo. ...", attributes in random order, mixed with
  corpus sentences) and the prompt ``{doc}. {Key}:`` (JRT: ``Information about {Key}.
  {doc}.\\n{doc}. {Key}:``).

The context is cut to 950 tokens around the answer's first occurrence; greedy decoding
stopped at a newline, at most 48 new tokens; metric *contains*. One call scores both
prompts on the same examples, side by side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from birdie_jax.evals.names import CITIES, CODE_WORDS, unique_names
from birdie_jax.evals.squad import passage
from birdie_jax.prompts import jrt_prompt, truncate_around_answer

MAX_CONTEXT_TOKENS = 950
MAX_NEW_TOKENS = 48
TASKS = ("squad", "kv")


@dataclasses.dataclass(frozen=True)
class JRTExample:
    task: str
    default: str  # the default prompt
    twice: str  # the JRT prompt
    answers: tuple[str, ...]


def kv_document(rng: np.random.Generator, documents: Sequence[str], filler_tokens: int,
                count_tokens=len) -> tuple[str, str, str]:
    """(document, queried key, its value): an entity's attributes among corpus sentences."""
    people = unique_names(rng, 2)
    attributes = {
        "name": f"{str(rng.choice(CODE_WORDS)).capitalize()} {str(rng.choice(['Labs', 'Works', 'Systems']))}",
        "headquarters": str(rng.choice(CITIES)),
        "founded": str(int(rng.integers(1850, 2020))),
        "chief executive": people[0],
        "founder": people[1],
        "employees": str(int(rng.integers(10, 90_000))),
        "product": str(rng.choice(CODE_WORDS)),
    }
    lines = [f"{key.capitalize()}: {value}." for key, value in attributes.items()]
    lines = [lines[i] for i in rng.permutation(len(lines))]
    if filler_tokens and documents:
        filler = passage(documents, rng, filler_tokens, count_tokens)
        for line in lines:
            filler.insert(int(rng.integers(len(filler) + 1)), line)
        lines = filler
    key = str(rng.choice([k for k in attributes if k != "name"]))
    return " ".join(lines), key, attributes[key]


def truncate_context(context: str, answer: str, tokenizer, max_tokens: int = MAX_CONTEXT_TOKENS) -> str:
    """The context cut to ``max_tokens`` tokens around the answer's first occurrence."""
    ids = tokenizer.encode(context)
    if len(ids) <= max_tokens:
        return context
    return tokenizer.decode(truncate_around_answer(ids, tokenizer.encode(answer), max_tokens), skip_special=True)


def jrt_examples(task: str, qa_or_kv: Sequence, tokenizer, max_tokens: int = MAX_CONTEXT_TOKENS) -> list[JRTExample]:
    """Both prompts for each example: QA examples (task ``squad``) or (doc, key, value) triples (``kv``)."""
    out = []
    for item in qa_or_kv:
        if task == "squad":
            context = truncate_context(item.context, item.answers[0], tokenizer, max_tokens)
            kw = dict(context=context, question=item.question, cloze=item.cloze)
            answers = item.answers
        else:
            doc, key, value = item
            kw = dict(context=truncate_context(doc, value, tokenizer, max_tokens), question=key)
            answers = (value,)
        out.append(JRTExample(task, jrt_prompt(task, repeat=False, **kw), jrt_prompt(task, repeat=True, **kw), answers))
    return out


def evaluate_jrt(ev, *, documents: Sequence[str] = (), num_examples: int = 16, seed: int = 0,
                 length: int = 256, max_context: int = MAX_CONTEXT_TOKENS, **_) -> dict:
    """*contains* with the default and the JRT prompt, per task, on the same examples."""
    from birdie_jax.evals.metrics import contains  # noqa: PLC0415
    from birdie_jax.evals.squad import qa_examples  # noqa: PLC0415

    count = lambda s: len(ev.encode(s))  # noqa: E731
    sources = {
        "squad": qa_examples(documents, num_examples, seed, length, count),
        "kv": [kv_document(np.random.default_rng([seed, 7, i]), documents, length, count) for i in range(num_examples)],
    }
    table, shown = [], []
    for task in TASKS:
        examples = jrt_examples(task, sources[task], ev.tokenizer, max_context)
        row, outputs = {"task": task}, {}
        for name in ("default", "twice"):
            outputs[name] = ev.complete([getattr(e, name) for e in examples], MAX_NEW_TOKENS, desc=f"jrt {task} {name}")
            row[name] = float(np.mean([contains(o, e.answers) for o, e in zip(outputs[name], examples)]))
        table.append(row)
        shown += [{"task": task, "prompt_end": e.default[-80:], "answers": list(e.answers), "default": d, "twice": t}
                  for e, d, t in list(zip(examples, outputs["default"], outputs["twice"]))[:3]]
    return {"tasks": table, "default": float(np.mean([r["default"] for r in table])),
            "twice": float(np.mean([r["twice"] for r in table])), "examples": shown}


def plot_jrt(result: dict, ax) -> None:
    from birdie_jax.evals.runner import paired_bars  # noqa: PLC0415

    paired_bars(ax, [r["task"] for r in result["tasks"]], {"default prompt": [r["default"] for r in result["tasks"]],
                                                          "JRT-Prompt": [r["twice"] for r in result["tasks"]]})
    ax.set_ylabel("contains")
    ax.set_title("default vs JRT-Prompt")
