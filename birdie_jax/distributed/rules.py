"""Sharding rules for the train state: FSDP by default, tensor parallelism by name.

Every leaf of the parameters (an ``nnx.State``) and of the optimizer state gets a
``PartitionSpec`` from two rules applied in order:

1. **Tensor parallelism** (mesh axis ``tensor``), Megatron style, by the name of the
   module holding the leaf (path names of :mod:`birdie_jax.models`):

   * *column-parallel* (output dim over ``tensor``): ``in_proj``, ``gate_proj``,
     ``qkv_proj``, ``forget_gate``, the RG-LRU's ``a_gate``/``x_gate``, the MLP's
     ``gate``/``up`` and an untied ``head``: kernel ``[in, out]`` → ``[-, tensor]``, bias
     ``[out]`` → ``[tensor]``;
   * *row-parallel* (input dim over ``tensor``): ``out_proj``, ``down``: kernel
     ``[in, out]`` → ``[tensor, -]``; their bias stays replicated;
   * *channel-parallel* per-channel leaves of the recurrence width (the channels the
     column-parallel ``in_proj`` produces): ``conv`` (weight ``[w, n]``, bias ``[n]``) and
     the RG-LRU's ``a_param``, Mamba-2's ``A_log``/``D``/``dt_bias``: last dim → ``tensor``;
   * the embedding ``[v, d]``: vocabulary over ``tensor`` (the tied head's logits are
     then vocabulary-sharded).

   A dim is only split when the ``tensor`` size divides it; otherwise that leaf is not
   tensor-sharded (always correct; XLA moves data as needed).
   A scanned model's stacked leaves (``model.scan_layers``) keep their leading layer axis
   unsharded; both rules apply to the remaining dims.
2. **FSDP** (mesh axis ``fsdp``): every leaf of 2 or more dims has its largest remaining
   dim that the ``fsdp`` size divides sharded over ``fsdp`` (ties: the first); 0-D/1-D
   leaves (norm scales, biases, counts) and leaves with no divisible dim are replicated.
   Leaves already split over ``tensor`` are not also split over ``fsdp`` unless
   ``ShardingRules(fsdp_with_tensor=True)`` (an XLA partitioner bug, see
   :class:`ShardingRules`); with ``tensor = 1`` (the usual FSDP setup) this changes nothing.

Optimizer moments (Adam's ``mu``/``nu``, or any optimizer-state leaf whose path ends
with a parameter's path and has its shape) follow their parameter; every other leaf
(step counts, the RNG key) is replicated. Sharding never changes results: jit with
these shardings computes the same values as one device (up to float reassociation in
the collectives).
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec

from birdie_jax.distributed.mesh import BATCH_AXES
from birdie_jax.models.layer_scan import STACKED_ATTRIBUTE

# Parameter leaf names that are only a Variable wrapper's attribute, not a module name.
_WRAPPER_KEYS = ("value", "raw_value")


@dataclasses.dataclass(frozen=True, slots=True)
class ShardingRules:
    """Which module names get which tensor-parallel layout (see the module docstring).

    Attributes:
      column: modules whose output dim (kernel dim -1, bias dim 0) is split over ``tensor``.
      row: modules whose input dim (kernel dim 0) is split over ``tensor``.
      channel: module or leaf names whose last dim is a recurrence channel split over ``tensor``.
      vocab: leaf names of ``[vocab, d]`` embedding tables (vocabulary over ``tensor``).
      fsdp_min_size: leaves with fewer elements stay replicated over ``fsdp`` (0: shard all).
      fsdp_with_tensor: also FSDP-shard leaves that are tensor-sharded (2-D sharding
        ``[fsdp, tensor]``). Off by default: XLA 0.10's SPMD partitioner (Shardy and GSPMD
        alike) computes wrong gradients for such 2-D-sharded kernels on meshes with
        data, fsdp and tensor all > 1 at some per-device token counts (minimal repro in
        ``docs/distributed.md``), so by default a tensor-sharded leaf is replicated over
        ``fsdp`` (and ``data``). Turn it on only after checking your mesh and shapes with
        ``tests/distributed_worker.py``-style parity checks.
    """

    column: tuple[str, ...] = ("in_proj", "gate_proj", "qkv_proj", "forget_gate", "a_gate", "x_gate", "gate",
                               "up", "head")
    row: tuple[str, ...] = ("out_proj", "down")
    channel: tuple[str, ...] = ("conv", "a_param", "A_log", "D", "dt_bias")
    vocab: tuple[str, ...] = ("embedding",)
    fsdp_min_size: int = 0
    fsdp_with_tensor: bool = False


DEFAULT_RULES = ShardingRules()


def path_names(path) -> tuple[str, ...]:
    """Key path → names (``DictKey.key``, ``SequenceKey.idx``, attribute names), minus
    a trailing Variable ``.value``."""
    names = []
    for p in path:
        for attr in ("key", "idx", "name"):
            if hasattr(p, attr):
                names.append(str(getattr(p, attr)))
                break
        else:
            names.append(str(p))
    while names and names[-1] in _WRAPPER_KEYS:
        names.pop()
    return tuple(names)


def _sizes(mesh_or_sizes) -> dict[str, int]:
    if isinstance(mesh_or_sizes, Mapping):
        return {k: int(v) for k, v in mesh_or_sizes.items()}
    return {k: int(v) for k, v in dict(mesh_or_sizes.shape).items()}


def _tensor_dim(names: tuple[str, ...], ndim: int, rules: ShardingRules) -> int | None:
    """The dim the tensor rule splits, or None."""
    if ndim == 0 or not names:
        return None
    leaf, module = names[-1], names[-2] if len(names) > 1 else ""
    if leaf in rules.vocab:
        return 0 if ndim == 2 else None
    if module in rules.column:
        return ndim - 1  # kernel [in, out] -> out; bias [out]
    if module in rules.row:
        return 0 if leaf == "kernel" and ndim >= 2 else None
    if module in rules.channel or leaf in rules.channel:
        return ndim - 1
    return None


def leaf_spec(names: tuple[str, ...], shape: tuple[int, ...], sizes: Mapping[str, int],
              rules: ShardingRules = DEFAULT_RULES) -> PartitionSpec:
    """The ``PartitionSpec`` of one parameter leaf (path ``names``, ``shape``) on a mesh of ``sizes``.

    A leaf of a scanned model (``model.scan_layers``: under ``stacked_blocks``, leading layer
    axis) keeps that axis unsharded and gets its layer's spec on the other dims."""
    if STACKED_ATTRIBUTE in names and shape:
        inner = leaf_spec(tuple(n for n in names if n != STACKED_ATTRIBUTE), tuple(shape[1:]), sizes, rules)
        return PartitionSpec(None, *inner) if len(inner) else PartitionSpec()
    entries: list[str | None] = [None] * len(shape)
    tensor = int(sizes.get("tensor", 1))
    if tensor > 1:
        dim = _tensor_dim(names, len(shape), rules)
        if dim is not None and shape[dim] % tensor == 0:
            entries[dim] = "tensor"
    fsdp = int(sizes.get("fsdp", 1))
    size = 1
    for s in shape:
        size *= int(s)
    tensor_sharded = "tensor" in entries
    if fsdp > 1 and len(shape) >= 2 and size >= rules.fsdp_min_size and (rules.fsdp_with_tensor or not tensor_sharded):
        free = [d for d in range(len(shape)) if entries[d] is None and shape[d] % fsdp == 0]
        if free:
            best = max(free, key=lambda d: (shape[d], -d))
            entries[best] = "fsdp"
    while entries and entries[-1] is None:
        entries.pop()
    return PartitionSpec(*entries)


def param_specs(abstract_params: Any, mesh_or_sizes, rules: ShardingRules = DEFAULT_RULES) -> Any:
    """Pytree of ``PartitionSpec`` matching ``abstract_params`` (arrays or ShapeDtypeStructs).

    ``mesh_or_sizes`` is a Mesh/AbstractMesh or a mapping ``{axis: size}`` (so specs can be
    computed for meshes larger than the machine, e.g. in ``tools/memory_per_device.py``).
    """
    sizes = _sizes(mesh_or_sizes)
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: leaf_spec(path_names(path), tuple(leaf.shape), sizes, rules), abstract_params)


def param_shardings(abstract_params: Any, mesh, rules: ShardingRules = DEFAULT_RULES) -> Any:
    """Pytree of ``NamedSharding`` for every parameter leaf (see the module docstring)."""
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), param_specs(abstract_params, mesh, rules),
                        is_leaf=lambda x: isinstance(x, PartitionSpec))


def state_specs(abstract_state: Any, mesh_or_sizes, rules: ShardingRules = DEFAULT_RULES,
                params_key: str = "params") -> Any:
    """``PartitionSpec`` pytree for a whole train state ``{"params", "opt_state", ...}``.

    Parameters follow :func:`param_specs`; an optimizer-state leaf whose key path ends
    with a parameter's path (e.g. ``opt_state[1][0].mu['blocks'][0]...['kernel']``) and has
    that parameter's shape gets the parameter's spec; every other leaf is replicated.
    Works on any pytree: if it has no ``params_key`` entry, every leaf is treated as a
    parameter.
    """
    sizes = _sizes(mesh_or_sizes)
    if not (isinstance(abstract_state, Mapping) and params_key in abstract_state):
        return param_specs(abstract_state, sizes, rules)
    by_path: dict[tuple[str, ...], tuple[tuple[int, ...], PartitionSpec]] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_state[params_key])[0]:
        names = path_names(path)
        by_path[names] = (tuple(leaf.shape), leaf_spec(names, tuple(leaf.shape), sizes, rules))
    longest = max((len(k) for k in by_path), default=0)

    def spec(path, leaf) -> PartitionSpec:
        names = path_names(path)
        shape = tuple(leaf.shape)
        if names and names[0] == params_key:
            return by_path[names[1:]][1]
        for n in range(min(len(names), longest), 0, -1):
            hit = by_path.get(names[-n:])
            if hit is not None and hit[0] == shape:
                return hit[1]
        return PartitionSpec()

    return jax.tree_util.tree_map_with_path(spec, abstract_state)


def state_shardings(abstract_train_state: Any, mesh, rules: ShardingRules = DEFAULT_RULES,
                    params_key: str = "params") -> Any:
    """Pytree of ``NamedSharding`` for a train state (see :func:`state_specs`)."""
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec),
                        state_specs(abstract_train_state, mesh, rules, params_key),
                        is_leaf=lambda x: isinstance(x, PartitionSpec))


def batch_spec(mesh_or_sizes, ndim: int = 2) -> PartitionSpec:
    """Rows over ``("data", "fsdp")``; time over ``"sequence"`` when that axis is > 1."""
    sizes = _sizes(mesh_or_sizes)
    batch = tuple(a for a in BATCH_AXES if a in sizes)
    time = "sequence" if sizes.get("sequence", 1) > 1 and ndim >= 2 else None
    entries = [batch or None, time] + [None] * (ndim - 2)
    while entries and entries[-1] is None:
        entries.pop()
    return PartitionSpec(*entries)


def batch_sharding(mesh, ndim: int = 2) -> NamedSharding:
    """``NamedSharding`` of a ``[batch, time, ...]`` array (every field of a training batch)."""
    return NamedSharding(mesh, batch_spec(mesh, ndim))


def replicated(mesh) -> NamedSharding:
    """A fully replicated ``NamedSharding`` (metrics, scalars)."""
    return NamedSharding(mesh, PartitionSpec())


def shard_bytes(shape: tuple[int, ...], itemsize: int, spec: PartitionSpec, sizes: Mapping[str, int]) -> int:
    """Bytes one device holds of an array of ``shape`` laid out by ``spec``."""
    total = itemsize
    entries = tuple(spec) + (None,) * (len(shape) - len(tuple(spec)))
    for dim, entry in zip(shape, entries):
        axes = () if entry is None else (entry if isinstance(entry, tuple) else (entry,))
        parts = 1
        for a in axes:
            parts *= int(sizes.get(a, 1))
        total *= -(-int(dim) // parts)
    return total
