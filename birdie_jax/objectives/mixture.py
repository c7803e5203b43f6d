"""A mixture of objective arms: the per-document sample transform of the data pipeline.

:class:`Mixture` holds the arms, their current probability vector and the paradigm
token settings. Used as ``make_batch_iterator(..., sample_transform=mixture)`` it turns
each document into samples (spec §6.2): it draws an arm from the current probabilities,
fits one sample of that arm into a row (:func:`~birdie_jax.objectives.fitting.fit_sample`),
adds the paradigm token, and draws a fresh arm for the leftover text until the document
is consumed. Every sample is tagged with the index of its arm (``arm_ids`` in the
batches; ``fallback_id`` = ``len(arms)`` for NTP fallback samples), see :meth:`class_ids`.

**Live probabilities.** The training loop may call :meth:`set_probabilities` between
steps; the pipeline keeps running, nothing is rebuilt:

* ``num_workers=0``: the transform runs in the consumer's thread when the packer reads
  the next document, so every document read after the call uses the new vector, and
  the batch stream is a deterministic function of the seed and of the steps at which
  the vector changed. Documents already read (the one the packer is in the middle of)
  keep their samples.
* ``num_workers>0``: the vector lives in shared memory (:mod:`~birdie_jax.objectives.live`)
  and workers read it for every document they transform. They work ahead by their
  prefetch buffers, so the new vector reaches the batches a few batches later, and the
  exact switch point depends on timing (not reproducible).

**Checkpoints.** :meth:`get_state` / :meth:`set_state` save and restore the probability
vector (JSON). The pipeline's own state also records the vector in force for the
document it is in the middle of (see :mod:`birdie_jax.data.samples`), so a restored
iterator continues exactly, provided the mixture state is saved at the same time as the
iterator state (after the step's last :meth:`set_probabilities`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from birdie_jax.errors import ConfigError
from birdie_jax.objectives.arms import Arm, NTPArm
from birdie_jax.objectives.fitting import fit_sample
from birdie_jax.objectives.live import LiveVector
from birdie_jax.objectives.paradigm import PARADIGM_MODES, add_paradigm, paradigm_token
from birdie_jax.tokenizer import OBJECTIVE_CLASSES, SpecialTokens

#: |sum(p) − 1| allowed by set_probabilities (the vector is renormalised after the check).
SUM_TOLERANCE = 1e-4
FALLBACK_NAME = "ntp/fallback"

Triple = tuple[np.ndarray, np.ndarray, int]


def check_probabilities(p: Any, n: int, names: Sequence[str] = (), *, normalize: bool = True) -> np.ndarray:
    """p -> float64 [n] summing to 1 (divided by its sum if ``normalize``); ConfigError naming
    the problem (shape, NaN, < 0, sum)."""
    try:
        arr = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"mixture probabilities must be a vector of {n} numbers, got {p!r}") from None
    if arr.shape != (n,):
        raise ConfigError(f"mixture probabilities must have shape ({n},) (one per arm), got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        which = f" ({names[i]})" if i < len(names) else ""
        raise ConfigError(f"mixture probabilities must be finite and >= 0; entry {i}{which} is {arr[i]}")
    total = float(arr.sum())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ConfigError(f"mixture probabilities must sum to 1 (within {SUM_TOLERANCE}), they sum to {total!r}")
    return arr / total if normalize else arr


class Mixture:
    """Arms + live probabilities + paradigm settings; callable as a pipeline sample transform.

    Args:
      name: a label (``clm``, ``ul2``, ``ul2_decoder``, ``fixed``, ``birdie`` or your own).
      arms: the arms, distinct names; their order defines the arm ids.
      probabilities: initial vector [len(arms)] (>= 0, sums to 1).
      special: the tokenizer's special ids.
      seq_len: row length of the pipeline (each sample fits one row).
      paradigm: ``"class"``, ``"ul2"`` or ``"off"`` (see :mod:`~birdie_jax.objectives.paradigm`).
      append_prob: probability the paradigm token goes at the end of the prefix.
      members: per arm, the names of the arms it stands for (itself first) when coinciding
        arms were merged (:func:`~birdie_jax.objectives.dedup.merge_coinciding`); default: itself.
    """

    def __init__(self, name: str, arms: Sequence[Arm], probabilities: Any, *, special: SpecialTokens,
                 seq_len: int, paradigm: str = "class", append_prob: float = 0.5,
                 members: Sequence[Sequence[str]] | None = None):
        arms = tuple(arms)
        if not arms:
            raise ConfigError(f"mixture {name!r} has no arms")
        names = tuple(a.name for a in arms)
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"mixture {name!r} lists arms twice: {', '.join(dup)}")
        if paradigm not in PARADIGM_MODES:
            raise ConfigError(f"paradigm mode must be one of {', '.join(PARADIGM_MODES)}, got {paradigm!r}")
        if not 0.0 <= append_prob <= 1.0:
            raise ConfigError(f"paradigm append probability must be in [0, 1], got {append_prob}")
        self.name = name
        self.arms = arms
        self.arm_names = names
        self.arm_classes = tuple(a.objective for a in arms)
        self.special = special
        self.seq_len = int(seq_len)
        self.paradigm = paradigm
        self.append_prob = float(append_prob)
        self._paradigm_ids = tuple(paradigm_token(a, paradigm, special) for a in arms)
        self._fallback_paradigm = paradigm_token(NTPArm(), paradigm, special)
        self._budgets = tuple(self.seq_len - (t is not None) for t in self._paradigm_ids)
        if min(self._budgets) < 1:
            raise ConfigError(f"seq_len={seq_len} leaves no room for a sample after the paradigm token")
        self.arm_members = tuple((n,) for n in names) if members is None else tuple(tuple(m) for m in members)
        if len(self.arm_members) != len(arms) or any(m[0] != n for m, n in zip(self.arm_members, names)):
            raise ConfigError(f"mixture {name!r}: members must list each arm's own name first")
        self._live = LiveVector(check_probabilities(probabilities, len(arms), names))
        self._snap_version = -1
        self._snap: tuple[float, ...] = ()
        self._cdf_key: Any = None
        self._cdf = np.zeros(0)

    # ------------------------------------------------------------------ arm ids and classes

    @property
    def fallback_id(self) -> int:
        """Arm id of NTP fallback samples (text too short for the drawn arm): ``len(arms)``."""
        return len(self.arms)

    @property
    def tag_names(self) -> tuple[str, ...]:
        """Name per arm id: the arm names, then ``"ntp/fallback"``."""
        return self.arm_names + (FALLBACK_NAME,)

    @property
    def tag_classes(self) -> tuple[str, ...]:
        """Objective class per arm id (the fallback id is ``"ntp"``)."""
        return self.arm_classes + ("ntp",)

    @property
    def class_lookup(self) -> np.ndarray:
        """int32 [len(arms) + 1]: arm id -> index into OBJECTIVE_CLASSES (usable on device:
        ``jnp.where(arm_ids >= 0, lookup[jnp.maximum(arm_ids, 0)], -1)``)."""
        return np.asarray([OBJECTIVE_CLASSES.index(c) for c in self.tag_classes], np.int32)

    def class_ids(self, arm_ids: np.ndarray) -> np.ndarray:
        """arm ids (any shape, −1 = padding) -> index into OBJECTIVE_CLASSES (−1 kept), int32."""
        lut = self.class_lookup
        arm_ids = np.asarray(arm_ids)
        return np.where(arm_ids >= 0, lut[np.clip(arm_ids, 0, len(lut) - 1)], -1).astype(np.int32)

    @property
    def budgets(self) -> tuple[int, ...]:
        """Per arm, the laid-out tokens a sample may take: seq_len, minus one for a paradigm token."""
        return self._budgets

    @property
    def merged_count(self) -> int:
        """How many configurations the arms stand for (>= len(arms); more when some were merged)."""
        return sum(len(m) for m in self.arm_members)

    def paradigm_id(self, arm_index: int) -> int | None:
        """The paradigm token of arm ``arm_index`` (None: no token)."""
        return self._paradigm_ids[arm_index]

    # ------------------------------------------------------------------ probabilities and state

    @property
    def probabilities(self) -> np.ndarray:
        """A copy of the current vector, float64 [len(arms)]."""
        return self._live.get()[1].copy()

    def set_probabilities(self, p: Any) -> None:
        """Replaces the vector (checked: shape [len(arms)], finite, >= 0, sums to 1 ± 1e-4; then
        renormalised). Documents read from now on use it; see the module docstring."""
        self._live.set(check_probabilities(p, len(self.arms), self.arm_names))

    def get_state(self) -> dict[str, Any]:
        """JSON-able: {"mixture", "arms" (names), "probabilities"}."""
        return {"mixture": self.name, "arms": list(self.arm_names), "probabilities": self.probabilities.tolist()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores :meth:`get_state` exactly; ConfigError if the state lists other arms."""
        arms = list(state.get("arms", []))
        if arms != list(self.arm_names):
            missing = sorted(set(self.arm_names) - set(arms))
            extra = sorted(set(arms) - set(self.arm_names))
            detail = f"missing {missing[:5]}, unexpected {extra[:5]}" if missing or extra else "in another order"
            raise ConfigError(f"saved mixture state does not match mixture {self.name!r}: arms {detail}")
        self._live.set(check_probabilities(state["probabilities"], len(self.arms), self.arm_names, normalize=False))

    def to_dict(self) -> dict[str, Any]:
        """Description saved with the config: name, paradigm settings and every arm's controls."""
        return {"name": self.name, "paradigm": self.paradigm, "append_prob": self.append_prob,
                "seq_len": self.seq_len, "arms": [a.to_dict() for a in self.arms],
                "merged": [list(m) for m in self.arm_members if len(m) > 1]}

    # ------------------------------------------------------------------ sampling

    def snapshot(self) -> tuple[float, ...]:
        """The current vector as a tuple (the pipeline records it in its state, see
        :mod:`birdie_jax.data.samples`); cached per version."""
        version, values = self._live.get()
        if version != self._snap_version:
            self._snap, self._snap_version = tuple(values.tolist()), version
        return self._snap

    def _cdf_of(self, snapshot: Sequence[float] | None) -> np.ndarray:
        if snapshot is None:
            snapshot = self.snapshot()
        if snapshot is not self._cdf_key:  # a new vector, or one restored from a pipeline state
            probs = check_probabilities(snapshot, len(self.arms), self.arm_names, normalize=False)
            self._cdf, self._cdf_key = np.cumsum(probs), snapshot
        return self._cdf

    def draw_arm(self, rng: np.random.Generator, snapshot: Sequence[float] | None = None) -> int:
        """One arm index drawn from ``snapshot`` (default: the current vector); one rng draw."""
        cdf = self._cdf_of(snapshot)
        i = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
        while i >= len(cdf) or (cdf[i] == (cdf[i - 1] if i else 0.0)):  # float edge: never a zero arm
            i -= 1
        return i

    def document_samples(self, tokens: np.ndarray, rng: np.random.Generator, *,
                         snapshot: Sequence[float] | None = None, arm_index: int | None = None,
                         keep_fallback: bool = True) -> list[Triple]:
        """tokens [n] -> [(prefix, labels, arm id)] covering every token in order.

        Each piece draws an arm (or uses ``arm_index``); ``keep_fallback=False`` drops NTP
        fallback samples (validation sets hold only their arm's samples).
        """
        tokens = np.asarray(tokens, np.int32)
        if snapshot is None and arm_index is None:
            snapshot = self.snapshot()  # one vector for the whole document
        out: list[Triple] = []
        pos, n = 0, int(tokens.shape[0])
        while pos < n:
            i = self.draw_arm(rng, snapshot) if arm_index is None else arm_index
            fitted = fit_sample(tokens[pos:], self.arms[i], rng, special=self.special, budget=self._budgets[i])
            pos += fitted.consumed
            if fitted.fallback:
                if not keep_fallback:
                    continue
                tag, token = self.fallback_id, self._fallback_paradigm
            else:
                tag, token = i, self._paradigm_ids[i]
            out.append((add_paradigm(fitted.prefix, token, self.append_prob, rng), fitted.labels, tag))
        return out

    def __call__(self, tokens: np.ndarray, rng: np.random.Generator,
                 snapshot: Sequence[float] | None = None) -> list[Triple]:
        """The pipeline's sample transform (``make_batch_iterator(sample_transform=mixture)``)."""
        return self.document_samples(tokens, rng, snapshot=snapshot)

    @property
    def sample_transform(self) -> Mixture:
        """The transform to pass to ``make_batch_iterator`` (the mixture itself)."""
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["special"] = dataclasses.replace(self.special)  # drops cached properties (not picklable)
        state["_cdf_key"], state["_snap_version"] = None, -1
        return state

    def __deepcopy__(self, memo) -> Mixture:
        new = copy.copy(self)
        new._live = copy.deepcopy(self._live, memo)
        new._snap_version, new._cdf_key = -1, None
        return new

    def __repr__(self) -> str:
        return f"Mixture(name={self.name!r}, arms={len(self.arms)}, paradigm={self.paradigm!r})"
