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

# Submodules load on first use, so light ones (``mesh``) can be imported by the config and
# the models without pulling in Orbax, Grain or the training step.
_EXPORTS = {
    "AXES": "mesh",
    "BATCH_AXES": "mesh",
    "DEFAULT_RULES": "rules",
    "MeshConfig": "mesh",
    "ShardingRules": "rules",
    "accumulate_gradients": "train",
    "batch_sharding": "rules",
    "batch_spec": "rules",
    "causal_conv_sharded": "sequence",
    "conv_module_sharded": "sequence",
    "describe": "mesh",
    "global_batch": "multihost",
    "init_sharded": "train",
    "initialize_from_environment": "multihost",
    "is_main_process": "multihost",
    "linear_scan_sharded": "sequence",
    "make_mesh": "mesh",
    "make_train_step_fn": "train",
    "param_shardings": "rules",
    "param_specs": "rules",
    "place_state": "train",
    "process_data_slice": "multihost",
    "replicated": "rules",
    "restore_onto": "checkpoint",
    "shard_train_step": "train",
    "sharded_abstract": "checkpoint",
    "split_micro_batches": "train",
    "state_shardings": "rules",
    "state_specs": "rules",
    "to_host": "multihost",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"birdie_jax.distributed.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'birdie_jax.distributed' has no attribute {name!r}")


__all__ = ["AXES", "BATCH_AXES", "DEFAULT_RULES", "MeshConfig", "ShardingRules", "accumulate_gradients",
           "batch_sharding", "batch_spec", "causal_conv_sharded", "conv_module_sharded", "describe",
           "global_batch", "init_sharded", "initialize_from_environment", "is_main_process", "linear_scan_sharded",
           "make_mesh", "make_train_step_fn", "param_shardings", "param_specs", "place_state", "process_data_slice",
           "replicated", "restore_onto", "shard_train_step", "sharded_abstract", "split_micro_batches",
           "state_shardings", "state_specs", "to_host"]
