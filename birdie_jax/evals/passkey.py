"""Passkey retrieval (spec §6.2, the Landmark Attention task): find a 5-digit key in filler text.

The prompt is the canonical Landmark template: an instruction, the filler sentences repeated,
the key line inserted at a depth (fraction of the filler before it), then the question. The
model answers by greedy decoding; a trial counts if the first run of digits it writes is the
key exactly. Accuracy is reported per (length, depth) cell and drawn as a heat map.
"""

import re
from collections.abc import Mapping, Sequence

import numpy as np

from birdie_jax.analysis.common import AnalysisError, figure, greedy_continue, save_figure, write_json

NAME = "passkey"
TASK = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
        "I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KEY_LINE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
DEPTHS = (0.1, 0.5, 0.9)


def passkey_prompt(key: int | str, num_filler: int, depth: float) -> str:
    """TASK, ``num_filler`` filler blocks with KEY_LINE after round(depth·num_filler) of them, QUESTION."""
    if not 0.0 <= depth <= 1.0:
        raise AnalysisError(f"depth must be in [0, 1], got {depth}")
    before = int(round(depth * num_filler))
    lines = [TASK, " ".join([FILLER] * before), KEY_LINE.format(key=key), " ".join([FILLER] * (num_filler - before)),
             QUESTION]
    return "\n".join(lines)


def filler_count(tokenizer, length: int) -> int:
    """Filler blocks that bring the prompt closest to ``length`` tokens without exceeding it."""
    fixed = len(tokenizer.encode(passkey_prompt(12345, 0, 0.5)))
    if length < fixed:
        raise AnalysisError(f"passkey length {length} is shorter than the prompt without filler ({fixed} tokens)")
    one = len(tokenizer.encode(passkey_prompt(12345, 2, 0.5))) - len(tokenizer.encode(passkey_prompt(12345, 1, 0.5)))
    return (length - fixed) // max(one, 1)


def answer_matches(text: str, key: int | str) -> bool:
    """Whether the first run of digits in ``text`` is the key."""
    found = re.search(r"\d+", text)
    return found is not None and found.group() == str(key)


def passkey(model, tokenizer, lengths: Sequence[int], depths: Sequence[float] = DEPTHS, *, trials: int = 20,
            seed: int = 0, chunk_len: int = 2048, batch_size: int = 8, prompt_as_prefix: bool | None = None,
            paradigm: str | None = "auto",
            max_new_tokens: int | None = None, out_dir: str | None = None, label: str = "model") -> dict:
    """Exact-match accuracy of greedy passkey retrieval at every (length, depth).

    Args:
      model, tokenizer: the LanguageModel and its tokenizer.
      lengths: prompt lengths in tokens (the prompt is filled up to at most this).
      depths: key positions as a fraction of the filler (default 0.1, 0.5, 0.9).
      trials: random 5-digit keys per cell.
      chunk_len: prefill chunk length (bounded memory); batch_size: prompts per pass.
      prompt_as_prefix, paradigm: prompt format (see ``birdie_jax.generation``); None/"auto": as trained.
      max_new_tokens: decoding steps (default: the key's tokens + 2).
      out_dir: write ``passkey.json`` and the heat map ``passkey.png`` (None: write nothing).

    Returns:
      {"lengths", "depths", "accuracy": float[len][depth], "prompt_tokens": int[len], "examples": [...]}.
    """
    if not lengths or not depths or trials < 1:
        raise AnalysisError("passkey needs at least one length, one depth and one trial")
    rng = np.random.default_rng(seed)
    max_new = max_new_tokens or len(tokenizer.encode(" 12345.")) + 2
    accuracy = np.zeros((len(lengths), len(depths)))
    prompt_tokens, examples = [], []
    for i, length in enumerate(lengths):
        num_filler = filler_count(tokenizer, int(length))
        for j, depth in enumerate(depths):
            keys = rng.integers(10_000, 100_000, size=trials)
            prompts = [tokenizer.encode(passkey_prompt(k, num_filler, depth)) for k in keys]
            answers = greedy_continue(model, tokenizer, prompts, max_new, chunk_len=chunk_len,
                                      prompt_as_prefix=prompt_as_prefix, paradigm=paradigm,
                                      batch_size=batch_size)
            texts = [tokenizer.decode(a, skip_special=True) for a in answers]
            accuracy[i, j] = np.mean([answer_matches(t, k) for t, k in zip(texts, keys)])
            examples.append({"length": int(length), "depth": float(depth), "key": int(keys[0]), "answer": texts[0]})
        prompt_tokens.append(len(prompts[0]))
    result = {"lengths": [int(n) for n in lengths], "depths": [float(d) for d in depths], "trials": trials,
              "label": label, "accuracy": accuracy.tolist(), "prompt_tokens": prompt_tokens, "examples": examples}
    if out_dir is not None:
        result["files"] = {"json": write_json(out_dir, NAME, result), "png": plot_passkey(result, out_dir)}
    return result


def plot_passkey(result: Mapping, out_dir: str, name: str = NAME) -> str:
    """Heat map of accuracy: depth (rows) × length (columns), each cell annotated."""
    fig, ax = figure()
    acc = np.asarray(result["accuracy"]).T  # [depth, length]
    image = ax.imshow(acc, vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto", origin="lower")
    ax.set_xticks(range(len(result["lengths"])), [str(n) for n in result["lengths"]])
    ax.set_yticks(range(len(result["depths"])), [f"{d:g}" for d in result["depths"]])
    for (r, c), v in np.ndenumerate(acc):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xlabel("prompt length (tokens)")
    ax.set_ylabel("depth of the key")
    ax.set_title(f"passkey retrieval accuracy ({result['label']}, {result['trials']} trials per cell)")
    fig.colorbar(image, ax=ax)
    return save_figure(fig, out_dir, name)


def evaluate_passkey(ev, *, num_examples: int = 8, seed: int = 0, lengths: Sequence[int] = (256, 512),
                     depths: Sequence[float] = DEPTHS, **_) -> dict:
    """:func:`passkey` through an :class:`~birdie_jax.evals.evaluator.Evaluator`."""
    ev.check_fits(max(lengths) + 16, "passkey")
    result = passkey(ev.model, ev.tokenizer, lengths, depths, trials=num_examples, seed=seed,
                     batch_size=ev.batch_size, prompt_as_prefix=ev.prompt_as_prefix, paradigm=ev.paradigm)
    result["mean_accuracy"] = float(np.mean(result["accuracy"]))
    return result


def write_passkey_png(result: dict, out_dir: str, name: str = NAME) -> str:
    return plot_passkey(result, out_dir, name)
