"""Length-generalization analyses (spec length-generalization §5–6), each writing JSON and a PNG.

- :func:`loss_by_position`: per-token loss against position up to k× the training length;
- :func:`effrem`: Effective Remembrance EffRem_T(t);
- :func:`state_norm`: std of the recurrent state against position;
- :func:`passkey`: 5-digit passkey retrieval at depths × lengths (heat map);
- :func:`copy_task`: synthetic copying accuracy beyond the training length.

Passkey and copying live with the other tasks in :mod:`birdie_jax.evals` (``passkey``,
``copy``); they are re-exported here, lazily, for the ``analyze`` command.

Long contexts run in chunks through the model's state contract (bounded memory). The CLI
pieces (``birdie-jax analyze ...``) are in :mod:`birdie_jax.analysis.cli`.
"""

from birdie_jax.analysis.common import AnalysisError, document_sequences
from birdie_jax.analysis.effrem import effrem, effrem_curve
from birdie_jax.analysis.loss_by_position import loss_by_position
from birdie_jax.analysis.state_norm import state_norm

__all__ = ["AnalysisError", "copy_task", "document_sequences", "effrem", "effrem_curve", "loss_by_position",
           "passkey", "passkey_prompt", "state_norm"]


def __getattr__(name):
    """``passkey``, ``passkey_prompt`` and ``copy_task`` from :mod:`birdie_jax.evals` (lazy: evals imports
    this package's common module)."""
    if name in ("passkey", "passkey_prompt"):
        from birdie_jax.evals import passkey as module  # noqa: PLC0415
    elif name == "copy_task":
        from birdie_jax.evals import copy as module  # noqa: PLC0415
    else:
        raise AttributeError(name)
    return getattr(module, name)
