"""JRT-RNN's training objective: next-token prediction plus masked language modelling (jrt.md §3).

Each document is cut into pieces of at most a row; a piece of L tokens x gets a prefix of
M tokens (M ~ U{lo..hi} of ``mixture.prefix_len``, or M = L/2 with ``prefix_split: half``,
the reference's fixed split; always 1 ≤ M ≤ L − 1) and is laid out as a prefix-LM sample
(:func:`birdie_jax.data.layout.layout_sample`): prefix x[:M], [BG], x[M:−1].

- **NTP**: the decoder positions (BG onwards, region 2) predict x[M:], as in every
  prefix-LM sample. (Decision: the reference instead drops the prediction at M − 1 and
  has no BG; with BG the prompt-as-prefix layout of generation is the training layout.)
- **MLM**: each prefix token is replaced by ``mask_token_id`` with probability ``mlm_prob``
  (always [MASK], no 80/10/10); its target is the original token at the same position.
  The decoder sees the masked prefix.
- **Loss**: L = L_NTP + w·L_MLM (w = ``mlm_weight``, 0.25), each the mean over its own
  tokens; ``mlm_normalized`` divides by 1 + w (the paper's Eq. 5).

``mask_token_id`` must be an id the tokenizer never emits (default: its reserved [MASK]).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from birdie_jax.data.layout import IGNORE_ID
from birdie_jax.errors import ConfigError
from birdie_jax.objectives.arms import PLMArm
from birdie_jax.objectives.mixture import Mixture, Triple
from birdie_jax.tokenizer import SpecialTokens

PREFIX_SPLITS = ("range", "half")


def check_mask_token(mask_token_id: int | None, special: SpecialTokens) -> int:
    """The [MASK] id to use: the tokenizer's reserved one by default; ConfigError if it collides with text."""
    if mask_token_id is None:
        return special.mask
    if 0 <= mask_token_id < special.base_vocab_size:
        raise ConfigError(f"mixture.mask_token_id={mask_token_id} collides with a text id: the tokenizer emits ids "
                          f"0..{special.base_vocab_size - 1}; use a reserved id in [{special.base_vocab_size}, "
                          f"{special.vocab_size}) (default: its [MASK] id {special.mask})")
    if not special.base_vocab_size <= mask_token_id < special.vocab_size:
        raise ConfigError(f"mixture.mask_token_id={mask_token_id} is outside the vocabulary [0, {special.vocab_size})")
    return int(mask_token_id)


class JRTMixture(Mixture):
    """The ``jrt`` mixture: one prefix-LM + MLM sample per piece of text (see the module docstring).

    Pieces are (masked prefix, labels, arm id 0, None (no label mask), prefix targets), the
    last entry giving the MLM targets of the prefix positions (``IGNORE_ID`` where unmasked).
    """

    def __init__(self, *, special: SpecialTokens, seq_len: int, mask_token_id: int | None = None,
                 mlm_prob: float = 0.15, prefix_len: tuple[int, int] = (1, 1024), prefix_split: str = "range"):
        super().__init__("jrt", [PLMArm()], [1.0], special=special, seq_len=seq_len, paradigm="off")
        if prefix_split not in PREFIX_SPLITS:
            raise ConfigError(f"mixture.prefix_split must be one of {', '.join(PREFIX_SPLITS)}, got {prefix_split!r}")
        self.mask_token_id = check_mask_token(mask_token_id, special)
        self.mlm_prob = float(mlm_prob)
        self.prefix_len = (int(prefix_len[0]), int(prefix_len[1]))
        self.prefix_split = prefix_split

    def _prefix_length(self, length: int, rng: np.random.Generator) -> int:
        if self.prefix_split == "half":
            return max(length // 2, 1)
        return min(int(rng.integers(self.prefix_len[0], self.prefix_len[1] + 1)), length - 1)

    def document_samples(self, tokens: np.ndarray, rng: np.random.Generator, *, snapshot: Any = None,
                         arm_index: int | None = None, keep_fallback: bool = True) -> list[Triple]:
        """tokens [n] → pieces covering every token in order; a 1-token remainder is an NTP sample."""
        tokens = np.asarray(tokens, np.int32)
        out: list = []
        for start in range(0, tokens.shape[0], self.seq_len):
            piece = tokens[start:start + self.seq_len]
            if piece.shape[0] < 2:
                if keep_fallback:
                    out.append((np.zeros(0, np.int32), piece, self.fallback_id))
                continue
            m = self._prefix_length(piece.shape[0], rng)
            prefix = piece[:m]
            masked = rng.random(m) < self.mlm_prob
            out.append((np.where(masked, self.mask_token_id, prefix).astype(np.int32), piece[m:], 0, None,
                        np.where(masked, prefix, IGNORE_ID).astype(np.int32)))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "mask_token_id": self.mask_token_id, "mlm_prob": self.mlm_prob,
                "prefix_len": list(self.prefix_len), "prefix_split": self.prefix_split}


def term_weights(mlm_weight: float, normalized: bool) -> tuple[float, float]:
    """(w_NTP, w_MLM): (1, w), or divided by 1 + w for the paper's normalised Eq. 5."""
    total = 1.0 + mlm_weight if normalized else 1.0
    return 1.0 / total, mlm_weight / total


def ntp_mlm_loss(losses: jax.Array, mask: jax.Array, prefix: jax.Array,
                 weights: tuple[float, float]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """w_NTP·mean(NTP losses) + w_MLM·mean(MLM losses); NTP = labelled decoder positions,
    MLM = labelled prefix positions. Also returns each term's mean and token count."""
    terms = {"ntp": mask & ~prefix, "mlm": mask & prefix}
    aux, total = {}, 0.0
    for (name, where), weight in zip(terms.items(), weights):
        count = where.sum()
        mean = jnp.where(where, losses, 0.0).sum() / jnp.maximum(count, 1)
        aux[f"loss_{name}"], aux[f"{name}_tokens"] = mean, count
        total = total + weight * mean
    return total, aux
