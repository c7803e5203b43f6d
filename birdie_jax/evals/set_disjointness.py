"""Set disjointness (JRT paper §3, Alg. 1; spec ``jrt.md`` §5.2).

Two sets A and B over ids ≥ 4 of a vocabulary V share exactly one element t; the model
reads ``[1] A [2] B [3]`` and must answer t. A takes |A| distinct ids from one random half
of [4, V), B takes |B| distinct ids from the other half with one random element replaced by
a random element of A. The single label sits at the last position (after the answer
marker 3). The paper's finding: a causal model does better when |A| < |B|; a model that
reads the whole prompt both ways (non-causal, here: the prompt as a bidirectional prefix)
does better when |A| > |B|, so each (|A|, |B|) is reported next to its swap.
"""

from __future__ import annotations

import numpy as np

from birdie_jax.errors import DataError

START, SEPARATOR, ANSWER = 1, 2, 3
FIRST_ELEMENT = 4


def check_sizes(size_a: int, size_b: int, vocab_size: int) -> None:
    half = (vocab_size - FIRST_ELEMENT) // 2
    if min(size_a, size_b) < 1:
        raise DataError(f"set disjointness needs |A|, |B| >= 1, got {size_a}, {size_b}")
    if max(size_a, size_b) > half:
        raise DataError(f"set disjointness: vocab_size={vocab_size} has only {half} ids per half, "
                        f"fewer than max(|A|, |B|) = {max(size_a, size_b)}")


def set_disjointness_example(rng: np.random.Generator, size_a: int, size_b: int,
                             vocab_size: int = 256) -> tuple[np.ndarray, int]:
    """(prompt int32[|A|+|B|+3] = [1] A [2] B [3], the shared element t)."""
    check_sizes(size_a, size_b, vocab_size)
    middle = FIRST_ELEMENT + (vocab_size - FIRST_ELEMENT) // 2
    halves = [np.arange(FIRST_ELEMENT, middle), np.arange(middle, vocab_size)]
    first = int(rng.integers(2))
    a = rng.choice(halves[first], size_a, replace=False)
    b = rng.choice(halves[1 - first], size_b, replace=False)
    shared = int(a[rng.integers(size_a)])
    b[rng.integers(size_b)] = shared
    prompt = np.concatenate([[START], a, [SEPARATOR], b, [ANSWER]]).astype(np.int32)
    return prompt, shared


def set_disjointness_batch(num_examples: int, seed: int, size_a: int, size_b: int,
                           vocab_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(prompts int32[N |A|+|B|+3], answers int32[N]); example i from ``default_rng([seed, |A|, |B|, i])``."""
    if num_examples < 1:
        raise DataError(f"set disjointness needs num_examples >= 1, got {num_examples}")
    rows = [set_disjointness_example(np.random.default_rng([seed, size_a, size_b, i]), size_a, size_b, vocab_size)
            for i in range(num_examples)]
    return np.stack([p for p, _ in rows]), np.asarray([t for _, t in rows], np.int32)


DEFAULT_SIZES = ((4, 16), (16, 4))


def evaluate_set_disjointness(ev, *, num_examples: int = 64, seed: int = 0, sizes=DEFAULT_SIZES,
                              vocab_size: int = 256, **_) -> dict:
    """Accuracy (argmax at the answer position is the shared element) per (|A|, |B|)."""
    table = []
    for size_a, size_b in sizes:
        prompts, answers = set_disjointness_batch(num_examples, seed, int(size_a), int(size_b), vocab_size)
        scores = ev.loglik(list(prompts), [[t] for t in answers], desc=f"set disjointness {size_a}/{size_b}")
        table.append({"size_a": int(size_a), "size_b": int(size_b), "accuracy": float(scores.greedy.mean())})
    return {"slices": table, "accuracy": float(np.mean([r["accuracy"] for r in table])), "vocab_size": vocab_size,
            "prompt_as_prefix": ev.format.as_prefix}


def plot_set_disjointness(result: dict, ax) -> None:
    names = [f"|A|={r['size_a']}\n|B|={r['size_b']}" for r in result["slices"]]
    ax.bar(names, [r["accuracy"] for r in result["slices"]], color="tab:green")
    ax.set_ylabel("accuracy")
    ax.set_title("set disjointness accuracy by (|A|, |B|)")
