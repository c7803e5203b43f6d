"""Generated training corpora (recall tasks) and prompt/answer pairs, as pipeline examples.

``data.corpus: mqar | phonebook | set_disjointness`` trains on generated task examples
(sizes in the config's ``generated`` section); ``data.format: pairs`` reads a JSONL file of
``{"prompt", "answer"}`` records (or uses a generated task) as prompt/answer pairs. Each
example is a :class:`TaskExample` (token ids) that the pipeline passes through untokenized;
:func:`task_samples` (the pipeline's sample transform) lays it out:

* **prefix form** (``data.format: pairs``, every non-CLM mixture, bidirectional models): the
  prompt is the prefix (read bidirectionally where the model can), followed by the paradigm
  token of the run's prompt format (:func:`birdie_jax.prompt_format.training_format`), and
  the answer is the labels — the same layout ``generate``/``score`` use at inference;
* **causal form** (``mixture: clm`` on a causal model, ``data.format`` not pairs):
  ``[BG] + prompt + answer`` with loss on the answer only (for MQAR exactly Zoology's labels).

Only the answer's masked tokens carry loss in both forms (MQAR: the values after query keys).
"""

from __future__ import annotations

import dataclasses
import functools
import numpy as np

from birdie_jax.errors import DataError

GENERATED = ("mqar", "phonebook", "set_disjointness")


@dataclasses.dataclass(frozen=True)
class TaskExample:
    """prompt int32[P], answer int32[N ≥ 1], answer_mask bool[N] (the answer tokens that carry loss)."""

    prompt: np.ndarray
    answer: np.ndarray
    answer_mask: np.ndarray


def _example(prompt, answer, mask=None) -> TaskExample:
    answer = np.asarray(answer, np.int32)
    mask = np.ones(len(answer), bool) if mask is None else np.asarray(mask, bool)
    return TaskExample(np.asarray(prompt, np.int32), answer, mask)


def generated_examples(name: str, gcfg, tokenizer, count: int, seed: int) -> list[TaskExample]:
    """``count`` examples of a generated task (example i from a seed of its own)."""
    from birdie_jax.evals import mqar, phonebook, set_disjointness  # noqa: PLC0415

    if name in ("mqar", "set_disjointness") and gcfg.vocab_size > tokenizer.base_vocab_size:
        raise DataError(f"generated.vocab_size={gcfg.vocab_size} exceeds the tokenizer's base vocabulary "
                        f"({tokenizer.base_vocab_size}): task ids would collide with special tokens")
    out = []
    if name == "mqar":
        inputs, labels = mqar.mqar_batch(count, seed, gcfg.mqar_seq_len, gcfg.mqar_num_pairs, gcfg.vocab_size)
        context = 2 * gcfg.mqar_num_pairs
        for x, y in zip(inputs, labels):
            sequence, mask = mqar.mqar_sequence(x, y)
            out.append(_example(sequence[:context], sequence[context:], mask[context:]))
    elif name == "set_disjointness":
        size_a, size_b = gcfg.set_sizes
        prompts, answers = set_disjointness.set_disjointness_batch(count, seed, size_a, size_b, gcfg.vocab_size)
        out = [_example(p, [t]) for p, t in zip(prompts, answers)]
    elif name == "phonebook":
        lo, hi = gcfg.phonebook_queries
        eos = tokenizer.special.eos
        for i in range(count):
            rng = np.random.default_rng([seed, i])
            entries = int(rng.integers(*gcfg.phonebook_entries, endpoint=True))
            item = phonebook.phonebook_example(rng, entries, int(rng.integers(lo, min(hi, entries), endpoint=True)))
            out.append(_example(tokenizer.encode(item.prompt), np.append(tokenizer.encode(item.answer), eos)))
    else:
        raise DataError(f"unknown generated corpus {name!r}; choose one of {', '.join(GENERATED)}")
    return out


def read_pairs(path: str, tokenizer) -> list[TaskExample]:
    """JSONL ``{"prompt": str, "answer": str}`` records → examples (answer + EOS)."""
    from birdie_jax.data.corpus import read_jsonl_records  # noqa: PLC0415

    out = []
    for number, record in read_jsonl_records(path):
        for field in ("prompt", "answer"):
            if not isinstance(record.get(field), str):
                raise DataError(f"{path}, line {number}: missing string field {field!r}")
        if not record["answer"]:
            raise DataError(f"{path}, line {number}: the answer is empty")
        out.append(_example(tokenizer.encode(record["prompt"]),
                            np.append(tokenizer.encode(record["answer"]), tokenizer.special.eos)))
    if not out:
        raise DataError(f"{path} holds no prompt/answer pair")
    return out


def task_samples(example: TaskExample, rng: np.random.Generator, *, as_prefix: bool,
                 paradigm: int | None) -> list[tuple]:
    """Pipeline sample transform: one (prefix, labels, arm_id, label_mask) sample per example."""
    del rng
    if as_prefix:
        prefix = example.prompt if paradigm is None else np.append(example.prompt, paradigm).astype(np.int32)
        return [(prefix, example.answer, -1, example.answer_mask)]
    labels = np.concatenate([example.prompt, example.answer])
    mask = np.concatenate([np.zeros(len(example.prompt), bool), example.answer_mask])
    return [(np.zeros(0, np.int32), labels, -1, mask)]


@dataclasses.dataclass
class TaskData:
    """A run's task examples (train, validation) and the sample transform that lays them out."""

    train: list
    validation: list
    transform: object


def task_data(cfg, tokenizer) -> TaskData | None:
    """The run's task examples when ``data.corpus`` is generated or ``data.format`` is pairs; else None."""
    from birdie_jax.data.corpus import split_documents  # noqa: PLC0415
    from birdie_jax.prompt_format import paradigm_id, training_format  # noqa: PLC0415

    dcfg = cfg.data
    if dcfg.corpus not in GENERATED and dcfg.format != "pairs":
        return None
    if dcfg.corpus in GENERATED:
        g = cfg.generated
        train = generated_examples(dcfg.corpus, g, tokenizer, g.num_examples, cfg.seed)
        n_val = round(dcfg.validation_fraction * g.num_examples)
        validation = generated_examples(dcfg.corpus, g, tokenizer, n_val, cfg.seed + 1_000_003) if n_val else []
    else:
        train, validation = split_documents(read_pairs(dcfg.corpus, tokenizer), dcfg.validation_fraction, cfg.seed)
    longest = max(len(e.prompt) + len(e.answer) + 1 for e in train + validation)  # + a paradigm token
    if longest > dcfg.seq_len:
        raise DataError(f"{dcfg.corpus}: an example of {longest} tokens does not fit data.seq_len={dcfg.seq_len}")
    fmt = training_format(cfg)  # the layout inference will use for this run: train on exactly that
    token = paradigm_id(fmt.paradigm, tokenizer.special)
    return TaskData(train, validation, functools.partial(task_samples, as_prefix=fmt.as_prefix, paradigm=token))
