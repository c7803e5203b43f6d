"""Restoring a checkpoint onto another mesh (other shape or device count).

Orbax stores each array once, as a whole (in chunks), whatever mesh wrote it; at restore
time it reads, on every device, exactly the slice the *target* sharding asks for. So a
checkpoint written on 8 devices restores onto 4, onto 1, or onto a 2×2×2 mesh, given a
restore target of ``jax.ShapeDtypeStruct(shape, dtype, sharding=...)`` built with the
target mesh's shardings (an unsharded target would give single-device arrays). Saving is
:class:`birdie_jax.training.checkpoint.Checkpointer`'s (asynchronous: training goes on
while a save is written; every process calls ``save``, Orbax coordinates the hosts).
"""

from typing import Any

import jax

from birdie_jax.distributed.rules import DEFAULT_RULES, ShardingRules, state_shardings
from birdie_jax.training.checkpoint import Checkpointer


def sharded_abstract(abstract_state: Any, mesh, rules: ShardingRules = DEFAULT_RULES) -> Any:
    """``ShapeDtypeStruct`` pytree of ``abstract_state`` carrying the target mesh's shardings."""
    shardings = state_shardings(abstract_state, mesh, rules)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state, shardings)


def restore_onto(checkpointer_or_dir: Checkpointer | str, abstract_state: Any, mesh, *, data_iterator: Any = None,
                 step: int | None = None, rules: ShardingRules = DEFAULT_RULES) -> Any:
    """Restores the train state of a checkpoint onto ``mesh``, sharded by the rules.

    Args:
      checkpointer_or_dir: a :class:`Checkpointer` or a checkpoint folder (opened read-only).
      abstract_state: the state's structure (arrays or ``ShapeDtypeStruct``; e.g.
        ``jax.eval_shape(init_fn)``); shapes and dtypes must match the checkpoint.
      mesh: the target mesh (any shape or device count).
      data_iterator: a Grain iterator to restore in place (the ``data`` item), or None.
      step: the step to restore (default: the latest).
      rules: sharding rules of the target.

    Returns:
      The state, every leaf a ``jax.Array`` sharded over ``mesh``.

    Raises:
      CheckpointError: no checkpoint, or one that does not match ``abstract_state``.
    """
    owned = not isinstance(checkpointer_or_dir, Checkpointer)
    checkpointer = Checkpointer(checkpointer_or_dir, read_only=True) if owned else checkpointer_or_dir
    try:
        return checkpointer.restore(sharded_abstract(abstract_state, mesh, rules), data_iterator, step)
    finally:
        if owned:
            checkpointer.close()
