"""How a prompt is laid out at inference: the layout and paradigm token a model was trained with.

A model reads a prompt either as a *prefix* (``prompt + [BG]``: bidirectional layers read it
both ways; every mixture but plain CLM trains on such samples, Birdie-Causal included) or
causally (``[BG] + prompt``, the next-token-prediction layout). Birdie and the fixed
mixtures also put a paradigm token in every sample's prefix; the one for "continue this
prompt" is the prefix-LM class's (``[P:plm]``, UL2's ``[S]``). :class:`PromptFormat` holds
both choices; :func:`training_format` derives them from a run's config, and
:func:`birdie_jax.inference.load_checkpoint` attaches it to the model as
``model.prompt_format`` so that ``generate``/``score`` and every eval task use the training
layout by default. Explicit arguments always win.
"""

from __future__ import annotations

import dataclasses

from birdie_jax.errors import DataError
from birdie_jax.tokenizer import OBJECTIVE_CLASSES

#: Paradigm token names: the objective classes' [P:<class>] tokens and UL2's R, X, S.
PARADIGMS = OBJECTIVE_CLASSES + ("r", "x", "s")
#: ``paradigm=AUTO``: the model's training default (its ``prompt_format``, else none).
AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """as_prefix: prompt + [BG] (True) or [BG] + prompt (False); paradigm: a name from
    :data:`PARADIGMS` whose token ends the prefix, or None."""

    as_prefix: bool
    paradigm: str | None = None

    def __post_init__(self):
        if self.paradigm is not None and self.paradigm not in PARADIGMS:
            raise DataError(f"unknown paradigm {self.paradigm!r}; choose one of {', '.join(PARADIGMS)} or none")


def training_format(cfg) -> PromptFormat:
    """The layout and "continue the prompt" paradigm of a run trained with config ``cfg``.

    Any non-CLM mixture trains on prefix-LM samples (so does a bidirectional model, and
    ``data.format: pairs``), hence the prefix layout; the paradigm is the prefix-LM one in the mixture's paradigm mode:
    ``[P:plm]`` for class tokens (birdie, fixed), ``[S]`` for UL2, none when the run had none.
    """
    mixture = cfg.mixture
    as_prefix = cfg.model.bidirectional != "none" or mixture.name != "clm" or cfg.data.format == "pairs"
    # jrt (JRT-RNN's NTP + MLM) lays samples out as prefix LM without paradigm tokens.
    tokens_on = mixture.name != "jrt" and (mixture.paradigm_tokens if mixture.paradigm_tokens is not None
                                           else mixture.name != "clm")
    if not tokens_on or not as_prefix:
        return PromptFormat(as_prefix, None)
    return PromptFormat(True, "s" if mixture.name.startswith("ul2") else "plm")


def resolve_format(model, prompt_as_prefix: bool | None, paradigm: str | None) -> PromptFormat:
    """The format to use: explicit arguments, else the model's ``prompt_format``, else by
    architecture (prefix when the model has bidirectional or PLA layers, no paradigm)."""
    trained = getattr(model, "prompt_format", None)
    if trained is None:
        trained = PromptFormat(model.cfg.bidirectional != "none" or model.cfg.uses_mixer("pla"), None)
    as_prefix = trained.as_prefix if prompt_as_prefix is None else bool(prompt_as_prefix)
    if paradigm == AUTO:
        paradigm = trained.paradigm
    elif isinstance(paradigm, str) and paradigm.lower() == "none":
        paradigm = None
    return PromptFormat(as_prefix, paradigm)


def paradigm_id(paradigm: str | None, special) -> int | None:
    """The token id of a paradigm name under the tokenizer's special ids (None → None)."""
    if paradigm is None:
        return None
    if paradigm in OBJECTIVE_CLASSES:
        return special.paradigm[paradigm]
    return getattr(special, paradigm)
