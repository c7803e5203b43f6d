"""Synthetic copying (spec §6.3, after Jelassi et al. 2024): repeat a random string, beyond T.

A trial shows a random string of ``n`` characters followed by the tokenizer's [COPY] token;
the model should write the string again, then EOS. Character accuracy is the share of
positions where the greedy output matches the string (missing characters count as wrong),
averaged over trials, and reported as mean ± std over seeds per length. Train a model on
:func:`copy_example` rows to use it; spec: test lengths ≥ 3× the training length.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from birdie_jax.analysis.common import AnalysisError, figure, greedy_continue, mark_train_len, save_figure, write_json

NAME = "copy"
ALPHABET = "abcdefghijklmnopqrstuvwxyz"
SEEDS = (0, 1, 2)


def copy_example(tokenizer, length: int, rng: np.random.Generator,
                 alphabet: str = ALPHABET) -> tuple[np.ndarray, np.ndarray]:
    """(prompt ids = string + [COPY], answer ids = string + [EOS]) for a random string of ``length`` characters."""
    text = "".join(rng.choice(list(alphabet), size=length))
    ids = tokenizer.encode(text)
    special = tokenizer.special
    return (np.concatenate([ids, [special.copy]]).astype(np.int32),
            np.concatenate([ids, [special.eos]]).astype(np.int32))


def character_accuracy(output: str, target: str) -> float:
    """Share of the target's characters reproduced at the same position."""
    if not target:
        raise AnalysisError("the copy target is empty")
    return sum(a == b for a, b in zip(output, target)) / len(target)


def copy_task(model, tokenizer, lengths: Sequence[int], *, train_len: int | None = None, trials: int = 16,
              seeds: Sequence[int] = SEEDS, alphabet: str = ALPHABET, chunk_len: int = 2048, batch_size: int = 8,
              prompt_as_prefix: bool | None = None, paradigm: str | None = "auto", out_dir: str | None = None,
              label: str = "model") -> dict:
    """Character accuracy of greedy copying for strings of each length, mean ± std over seeds.

    Args:
      model, tokenizer: the LanguageModel and its tokenizer.
      lengths: string lengths in characters.
      train_len: the length the model was trained to copy (marked on the plot).
      trials: strings per (length, seed); seeds: independent draws (spec: 3).
      chunk_len, batch_size, prompt_as_prefix, paradigm: as in :func:`~birdie_jax.analysis.common.greedy_continue`.
      out_dir: write ``copy.json`` and ``copy.png`` there (None: write nothing).

    Returns:
      {"lengths", "accuracy": float[len] (mean over seeds), "std": float[len],
       "per_seed": float[len][seed], "examples": [...]}.
    """
    if not lengths or trials < 1 or not seeds:
        raise AnalysisError("copy needs at least one length, one trial and one seed")
    per_seed = np.zeros((len(lengths), len(seeds)))
    examples = []
    for i, length in enumerate(lengths):
        if length < 1:
            raise AnalysisError(f"copy lengths must be >= 1, got {length}")
        for j, seed in enumerate(seeds):
            rng = np.random.default_rng([int(seed), int(length)])
            pairs = [copy_example(tokenizer, int(length), rng, alphabet) for _ in range(trials)]
            outputs = greedy_continue(model, tokenizer, [p for p, _ in pairs], max(len(a) for _, a in pairs),
                                      chunk_len=chunk_len, prompt_as_prefix=prompt_as_prefix, paradigm=paradigm,
                                      batch_size=batch_size)
            texts = [tokenizer.decode(o, skip_special=True) for o in outputs]
            targets = [tokenizer.decode(a, skip_special=True) for _, a in pairs]
            per_seed[i, j] = np.mean([character_accuracy(o, t) for o, t in zip(texts, targets)])
            if j == 0:
                examples.append({"length": int(length), "target": targets[0], "output": texts[0]})
    result = {"lengths": [int(n) for n in lengths], "train_len": train_len, "trials": trials,
              "seeds": [int(s) for s in seeds], "label": label, "accuracy": per_seed.mean(1).tolist(),
              "std": per_seed.std(1).tolist(), "per_seed": per_seed.tolist(), "examples": examples}
    if out_dir is not None:
        result["files"] = {"json": write_json(out_dir, NAME, result), "png": plot_copy({label: result}, out_dir)}
    return result


def plot_copy(results: Mapping[str, dict], out_dir: str, name: str = NAME) -> str:
    """Character accuracy (± std over seeds) against string length; one curve per model."""
    fig, ax = figure()
    for label, r in results.items():
        ax.errorbar(r["lengths"], r["accuracy"], yerr=r["std"], fmt="o-", capsize=3, label=label)
    mark_train_len(ax, next(iter(results.values()))["train_len"])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("string length (characters)")
    ax.set_ylabel("character accuracy")
    ax.set_title("synthetic copying")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out_dir, name)


def evaluate_copy(ev, *, num_examples: int = 8, seed: int = 0, lengths: Sequence[int] = (16, 32),
                  train_len: int | None = None, **_) -> dict:
    """:func:`copy_task` through an :class:`~birdie_jax.evals.evaluator.Evaluator` (copy paradigm
    for a model trained with class paradigm tokens)."""
    ev.check_fits(2 * max(lengths) + 4, "copy")
    paradigm = ev.task_paradigm("copy")
    result = copy_task(ev.model, ev.tokenizer, lengths, train_len=train_len, trials=num_examples, seeds=(seed,),
                       batch_size=ev.batch_size, prompt_as_prefix=ev.prompt_as_prefix, paradigm=paradigm,
                       label="model")
    return {**result, "paradigm": paradigm}


def write_copy_png(result: dict, out_dir: str, name: str = NAME) -> str:
    return plot_copy({result.get("label", "model"): result}, out_dir, name)
