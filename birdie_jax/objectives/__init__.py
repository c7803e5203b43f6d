"""Birdie's pre-training objectives, their configurations ("arms") and mixtures (spec §1–§6.2).

* :mod:`.arms`: typed arm parameters per class and the paper's 95-arm grid (:func:`birdie_grid`);
* :mod:`.spans`, :mod:`.objectives`: the seven objective classes as seeded NumPy functions;
* :mod:`.fitting`: one sample per row, leftover text, NTP fallback;
* :mod:`.paradigm`: paradigm tokens;
* :mod:`.mixture`, :mod:`.presets`: :class:`Mixture` (live probabilities, the pipeline
  transform) and :func:`build_mixture` from a ``mixture:`` config;
* :mod:`.validation`: held-out batches per arm; :mod:`.show`: the ``objectives show`` command.
"""

from birdie_jax.objectives.arms import (
    AEArm, Arm, CopyArm, DeshufArm, InfillArm, NTPArm, PLMArm, SCArm, arm_from_dict, birdie_grid, span_validity,
)
from birdie_jax.objectives.fitting import FittedSample, fit_sample
from birdie_jax.objectives.mixture import Mixture, check_probabilities
from birdie_jax.objectives.objectives import build
from birdie_jax.objectives.presets import MIXTURE_NAMES, build_mixture, class_uniform
from birdie_jax.objectives.validation import make_validation_sets

__all__ = ["AEArm", "Arm", "CopyArm", "DeshufArm", "FittedSample", "InfillArm", "MIXTURE_NAMES", "Mixture", "NTPArm",
           "PLMArm", "SCArm", "arm_from_dict", "birdie_grid", "build", "build_mixture", "check_probabilities",
           "class_uniform", "fit_sample", "make_validation_sets", "span_validity"]
