"""Paradigm tokens (spec §4, paper A.7).

Each sample carries one paradigm token telling the model which objective made it: at
the end of the prefix (just before BG) with probability ``append_prob``, else at its
start. It is a prefix token (read bidirectionally, no loss). Modes:

* ``"class"``: the class's own token ``[P:<class>]`` (birdie, fixed);
* ``"ul2"``: UL2's R/X/S, always prepended: PLM -> S, infilling -> R (rate < 30 % and
  mean span < 12, UL2's regular denoisers) else X (extreme); NTP gets none (UL2's
  decoder mixture); any other class falls back to its ``[P:<class>]`` token;
* ``"off"``: no token (clm).
"""

from __future__ import annotations

import numpy as np

from birdie_jax.errors import ConfigError
from birdie_jax.objectives.arms import Arm, InfillArm, NTPArm, PLMArm
from birdie_jax.tokenizer import SpecialTokens

PARADIGM_MODES = ("class", "ul2", "off")
#: UL2 calls a denoiser "extreme" from a corruption rate of 30 % or a mean span of 12.
UL2_EXTREME_RATE = 0.3
UL2_EXTREME_SPAN = 12


def paradigm_token(arm: Arm, mode: str, special: SpecialTokens) -> int | None:
    """The paradigm token id for samples of ``arm`` under ``mode``, or None for no token."""
    if mode == "off":
        return None
    if mode == "class":
        return special.paradigm[arm.objective]
    if mode != "ul2":
        raise ConfigError(f"paradigm mode must be one of {', '.join(PARADIGM_MODES)}, got {mode!r}")
    if isinstance(arm, NTPArm):
        return None
    if isinstance(arm, PLMArm):
        return special.s
    if isinstance(arm, InfillArm):
        extreme = arm.rate >= UL2_EXTREME_RATE or arm.mean_span >= UL2_EXTREME_SPAN
        return special.x if extreme else special.r
    return special.paradigm[arm.objective]


def add_paradigm(prefix: np.ndarray, token: int | None, append_prob: float,
                 rng: np.random.Generator) -> np.ndarray:
    """prefix [P] -> [P+1] with ``token`` appended (probability ``append_prob``) or prepended;
    unchanged (and no rng draw) when ``token`` is None."""
    if token is None:
        return prefix
    tok = np.asarray([token], np.int32)
    parts = (prefix, tok) if rng.random() < append_prob else (tok, prefix)
    return np.concatenate(parts).astype(np.int32)
