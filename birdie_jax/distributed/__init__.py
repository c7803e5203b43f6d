"""Sharded and multi-host training on JAX's own sharding (``jax.jit`` + ``NamedSharding``).

* :mod:`.mesh`: ``MeshConfig(data, fsdp, tensor, sequence)`` and ``make_mesh``.
* :mod:`.rules`: sharding of every parameter / optimizer-state leaf (FSDP by default,
  tensor parallelism for the wide projections) and of batches.
* :mod:`.train`: ``init_sharded``, ``shard_train_step``, gradient accumulation.
* :mod:`.sequence`: sequence-parallel linear scan and causal conv (``shard_map``).
* :mod:`.checkpoint`: ``restore_onto`` another mesh shape or device count.
* :mod:`.multihost`: ``jax.distributed`` from the environment, per-host data, global batches.

See ``docs/distributed.md``.
"""

from birdie_jax.distributed.checkpoint import restore_onto, sharded_abstract
from birdie_jax.distributed.mesh import AXES, BATCH_AXES, MeshConfig, describe, make_mesh
from birdie_jax.distributed.multihost import (global_batch, initialize_from_environment, is_main_process,
                                              process_data_slice)
from birdie_jax.distributed.rules import (DEFAULT_RULES, ShardingRules, batch_sharding, batch_spec, param_shardings,
                                          param_specs, replicated, state_shardings, state_specs)
from birdie_jax.distributed.sequence import causal_conv_sharded, conv_module_sharded, linear_scan_sharded
from birdie_jax.distributed.train import (accumulate_gradients, init_sharded, make_train_step_fn, place_state,
                                          shard_train_step, split_micro_batches)

__all__ = ["AXES", "BATCH_AXES", "DEFAULT_RULES", "MeshConfig", "ShardingRules", "accumulate_gradients",
           "batch_sharding", "batch_spec", "causal_conv_sharded", "conv_module_sharded", "describe",
           "global_batch", "init_sharded", "initialize_from_environment", "is_main_process", "linear_scan_sharded",
           "make_mesh", "make_train_step_fn", "param_shardings", "param_specs", "place_state", "process_data_slice",
           "replicated", "restore_onto", "shard_train_step", "sharded_abstract", "split_micro_batches",
           "state_shardings", "state_specs"]
