"""The named mixtures of spec §6.1 and :func:`build_mixture` from a ``mixture:`` config.

* ``clm``: NTP only, no paradigm token.
* ``ul2`` (paper A.6, Table 5): R = infilling (μ 3, 15 %) and (μ 8, 15 %) at 20 % each;
  X = (3, 50 %), (8, 50 %), (64, 15 %), (64, 50 %) at 10 % each; S = PLM at 20 %.
  The denoisers corrupt whole rows (no length range). R/X/S tokens, prepended.
* ``ul2_decoder`` (Table 6): NTP 60 %, S 20 %, R (3, 15 %) 10 %, X (32, 50 %) 10 %.
* ``fixed``: the paper's grid with user weights per class (split equally over the
  class's arms) and/or per arm name; only arms with weight > 0 are in the mixture.
* ``birdie``: all 95 arms of the grid; starts uniform over classes, then uniform
  within a class (spec §6.7); the controller sets the probabilities from outside.

``fixed`` and ``birdie`` merge the arms that coincide at the row length
(:mod:`~birdie_jax.objectives.dedup`: at ``seq_len`` 256, 95 arms are 57 distinct ones).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import yaml

from birdie_jax.errors import ConfigError
from birdie_jax.objectives.arms import Arm, InfillArm, NTPArm, PLMArm, birdie_grid
from birdie_jax.objectives.dedup import merge_coinciding
from birdie_jax.objectives.mixture import Mixture
from birdie_jax.tokenizer import OBJECTIVE_CLASSES, SpecialTokens

UL2_WEIGHTS: tuple[tuple[Arm, float], ...] = (
    (InfillArm(rate=0.15, mean_span=3), 0.2),
    (InfillArm(rate=0.15, mean_span=8), 0.2),
    (InfillArm(rate=0.5, mean_span=3), 0.1),
    (InfillArm(rate=0.5, mean_span=8), 0.1),
    (InfillArm(rate=0.15, mean_span=64), 0.1),
    (InfillArm(rate=0.5, mean_span=64), 0.1),
    (PLMArm(), 0.2),
)
UL2_DECODER_WEIGHTS: tuple[tuple[Arm, float], ...] = (
    (NTPArm(), 0.6),
    (PLMArm(), 0.2),
    (InfillArm(rate=0.15, mean_span=3), 0.1),
    (InfillArm(rate=0.5, mean_span=32), 0.1),
)
MIXTURE_NAMES = ("clm", "ul2", "ul2_decoder", "fixed", "birdie", "jrt")


def class_uniform(arms: Sequence[Arm]) -> np.ndarray:
    """Uniform over the classes present, then uniform within each class: float64 [len(arms)]."""
    classes = [a.objective for a in arms]
    present = sorted(set(classes), key=OBJECTIVE_CLASSES.index)
    return np.asarray([1.0 / (len(present) * classes.count(c)) for c in classes])


def load_weights_file(path: str | os.PathLike) -> dict[str, float]:
    """A YAML file holding ``weights: {name: weight}`` (or just the mapping) -> the mapping."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"mixture.weights_file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"mixture.weights_file {path} is not valid YAML: {e}") from None
    if isinstance(data, Mapping) and set(data) == {"weights"}:
        data = data["weights"]
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"mixture.weights_file {path} must hold a non-empty mapping name -> weight "
                          "(optionally under 'weights:')")
    return dict(data)


def fixed_weights(weights: Mapping[str, Any], grid: Sequence[Arm]) -> np.ndarray:
    """Per-arm weights [len(grid)] from weights per class (split equally over the class's
    arms) and/or per arm name (added); ConfigError naming unknown or invalid entries."""
    names = [a.name for a in grid]
    classes = [a.objective for a in grid]
    unknown = [k for k in weights if k not in OBJECTIVE_CLASSES and k not in names]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), list(OBJECTIVE_CLASSES) + names, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"mixture.weights: unknown objective class or arm name {', '.join(hints)}; classes are "
                          f"{', '.join(OBJECTIVE_CLASSES)}, arm names as listed by 'birdie-jax objectives show --json'")
    out = np.zeros(len(grid))
    for key, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise ConfigError(f"mixture.weights[{key!r}] must be a number >= 0, got {value!r}")
        if key in OBJECTIVE_CLASSES:
            members = [i for i, c in enumerate(classes) if c == key]
            out[members] += float(value) / len(members)
        else:
            out[names.index(key)] += float(value)
    if out.sum() <= 0:
        raise ConfigError("mixture.weights are all zero: give some class or arm a positive weight")
    return out


def _paradigm_mode(name: str, paradigm_tokens: bool | None) -> str:
    ul2 = name in ("ul2", "ul2_decoder")
    if paradigm_tokens is None:
        return "off" if name == "clm" else ("ul2" if ul2 else "class")
    if not paradigm_tokens:
        return "off"
    return "ul2" if ul2 else "class"


def build_mixture(cfg: Any, tokenizer: Any, *, seq_len: int) -> Mixture:
    """The mixture of a ``mixture:`` config section (:class:`birdie_jax.config.MixtureConfig`).

    ``tokenizer``: a :class:`~birdie_jax.tokenizer.Tokenizer` or its ``SpecialTokens``;
    ``seq_len``: the pipeline's row length. UL2 mixtures always prepend their R/X/S token
    (``paradigm_append_prob`` applies to the class tokens of ``fixed`` and ``birdie``).
    """
    special: SpecialTokens = getattr(tokenizer, "special", tokenizer)
    name = cfg.name
    if name not in MIXTURE_NAMES:
        raise ConfigError(f"mixture.name must be one of {', '.join(MIXTURE_NAMES)}, got {name!r}")
    if name != "fixed" and (cfg.weights is not None or cfg.weights_file is not None):
        raise ConfigError(f"mixture.weights / mixture.weights_file only apply to mixture=fixed (this is {name})")
    mode = _paradigm_mode(name, cfg.paradigm_tokens)
    append_prob = 0.0 if mode == "ul2" else float(cfg.paradigm_append_prob)
    kw = dict(special=special, seq_len=seq_len, paradigm=mode, append_prob=append_prob)
    if name == "clm":
        return Mixture(name, [NTPArm()], [1.0], **kw)
    if name == "jrt":
        from birdie_jax.objectives.jrt import JRTMixture  # noqa: PLC0415 — imports jax (loss), unlike the rest

        return JRTMixture(special=special, seq_len=seq_len, mask_token_id=cfg.mask_token_id, mlm_prob=cfg.mlm_prob,
                          prefix_len=cfg.prefix_len, prefix_split=cfg.prefix_split)
    if name in ("ul2", "ul2_decoder"):
        table = UL2_WEIGHTS if name == "ul2" else UL2_DECODER_WEIGHTS
        return Mixture(name, [a for a, _ in table], [w for _, w in table], **kw)
    grid = birdie_grid()
    if name == "birdie":
        return distinct_mixture(name, grid, class_uniform(grid), uniform=True, **kw)
    if cfg.weights is not None and cfg.weights_file is not None:
        raise ConfigError("give mixture.weights or mixture.weights_file, not both")
    if cfg.weights is None and cfg.weights_file is None:
        # No weights given: the paper's fixed ratios are unpublished, so every class gets an equal share.
        raw = class_uniform(grid)
    else:
        raw = fixed_weights(cfg.weights if cfg.weights is not None else load_weights_file(cfg.weights_file), grid)
    keep = np.flatnonzero(raw > 0)
    return distinct_mixture(name, [grid[i] for i in keep], raw[keep] / raw[keep].sum(), **kw)


def distinct_mixture(name: str, arms: Sequence[Arm], probabilities: Any, *, uniform: bool = False,
                     **kw: Any) -> Mixture:
    """A :class:`Mixture` of ``arms`` with the arms that coincide at its row length merged
    (:func:`~birdie_jax.objectives.dedup.merge_coinciding`): each group's probability mass
    summed, or (``uniform``) uniform over classes, then over the distinct arms of a class."""
    full = Mixture(name, arms, probabilities, **kw)
    merged = merge_coinciding(full.arms, full.probabilities, budgets=full.budgets)
    if not merged.merged:
        return full
    probs = class_uniform(merged.arms) if uniform else merged.probabilities
    return Mixture(name, merged.arms, probs, members=merged.members, **kw)
