"""Layer scan (``model.scan_layers``) and per-layer rematerialisation (``model.remat``).

With ``scan_layers`` the model keeps, for each position j of its layer period p (see
``ModelConfig.layer_period``), one ``Block`` whose parameters are stacked over the
n_layers/p groups: layer g·p + j is slice g of position j. One ``jax.lax.scan`` over the
groups runs the p blocks per iteration, so the traced and compiled program holds p layers
whatever the depth. Blocks are first built one by one exactly as the unrolled model builds
them (same random stream), then stacked, so a seed gives the same weights either way.

The per-layer state contract is unchanged: states go in and come out as a list with one
mixer state per layer; they are stacked/unstacked around the scan.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from birdie_jax.array_types import Hidden, HiddenStep, PrefixMask, SegmentIds

# Parameters of a scanned model live under this attribute (``stacked_blocks.j.…``, leading group axis).
STACKED_ATTRIBUTE = "stacked_blocks"


def remat_policy(name: str) -> Callable | None:
    """The ``jax.checkpoint`` policy of a ``model.remat`` name other than ``none`` (``full``: None)."""
    return None if name == "full" else getattr(jax.checkpoint_policies, name)


def _tree_stack(trees: Sequence) -> object:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _tree_slice(tree: object, index: int) -> object:
    return jax.tree.map(lambda leaf: leaf[index], tree)


def stack_blocks(blocks: Sequence[nnx.Module], period: int) -> nnx.List:
    """For each position j < ``period``: one block holding blocks j, j+p, j+2p, … stacked."""
    stacked = []
    for j in range(period):
        members = blocks[j::period]
        graphdef = nnx.graphdef(members[0])
        stacked.append(nnx.merge(graphdef, _tree_stack([nnx.state(b) for b in members])))
    return nnx.List(stacked)


def call_block(block: nnx.Module, x: Hidden, *, segment_ids: SegmentIds, prefix_mask: PrefixMask | None,
               state: dict | None, remat: str) -> tuple[Hidden, dict]:
    """``block(x, ...)``, rematerialised in the backward pass unless ``remat`` is ``none``."""
    if remat == "none":
        return block(x, segment_ids=segment_ids, prefix_mask=prefix_mask, state=state)
    graphdef, params = nnx.split(block)

    def run(params, x, segment_ids, prefix_mask, state):
        return nnx.merge(graphdef, params)(x, segment_ids=segment_ids, prefix_mask=prefix_mask, state=state)

    return jax.checkpoint(run, policy=remat_policy(remat))(params, x, segment_ids, prefix_mask, state)


def _group_states(states: Sequence[dict] | None, period: int) -> tuple | None:
    """Per-layer states → per position j the states of layers j, j+p, … stacked (None stays None)."""
    if states is None:
        return None
    return tuple(_tree_stack(states[j::period]) for j in range(period))


def _layer_states(grouped: tuple, groups: int) -> list[dict]:
    """The inverse of :func:`_group_states`: a list in layer order."""
    return [_tree_slice(grouped[j], g) for g in range(groups) for j in range(len(grouped))]


def _scan(stacked: nnx.List, x, states: Sequence[dict] | None, apply: Callable, remat: str):
    """Runs ``apply(block, x, state) -> (x, state)`` over every layer with one scan over the groups.

    The carry keeps the dtype that one group gives the residual stream (a group that promotes
    it, e.g. bfloat16 + float32 → float32, promotes it before the first layer instead).
    """
    period = len(stacked)
    split = [nnx.split(block) for block in stacked]
    graphdefs = [g for g, _ in split]
    params = tuple(p for _, p in split)
    groups = jax.tree.leaves(params)[0].shape[0]

    def group(x, xs):
        group_params, group_states = xs
        new_states = []
        for j in range(period):
            block = nnx.merge(graphdefs[j], group_params[j])
            x, state = apply(block, x, None if group_states is None else group_states[j])
            new_states.append(state)
        return x, tuple(new_states)

    if remat != "none":
        group = jax.checkpoint(group, policy=remat_policy(remat), prevent_cse=False)
    xs = (params, _group_states(states, period))
    out_dtype = jax.eval_shape(group, x, jax.tree.map(lambda leaf: leaf[0], xs))[0].dtype
    x, grouped = jax.lax.scan(group, x.astype(out_dtype), xs)
    return x, _layer_states(grouped, groups)


def scan_blocks(stacked: nnx.List, x: Hidden, *, segment_ids: SegmentIds, prefix_mask: PrefixMask | None,
                states: Sequence[dict] | None, remat: str) -> tuple[Hidden, list[dict]]:
    """The scanned model's layers over a sequence: x float[b t d] → (x, one state per layer)."""

    def apply(block, x, state):
        return block(x, segment_ids=segment_ids, prefix_mask=prefix_mask, state=state)

    return _scan(stacked, x, states, apply, remat)


def scan_blocks_step(stacked: nnx.List, x_t: HiddenStep, states: Sequence[dict]) -> tuple[HiddenStep, list[dict]]:
    """One decoding step through the scanned model's layers: x_t float[b d] → (x_t, states)."""
    return _scan(stacked, x_t, states, lambda block, x, state: block.step(x, state), "none")


def unstack_names(tensors: dict, period: int, groups: Callable = lambda v: v.shape[0],
                  take: Callable = lambda v, g: v[g]) -> dict:
    """``stacked_blocks.j.<name>`` [groups, …] → ``blocks.{g·p+j}.<name>``, the unrolled model's names
    (``groups``/``take``: how to read the group count of an entry and take group g of it)."""
    out = {}
    prefix = STACKED_ATTRIBUTE + "."
    for name, value in tensors.items():
        if not name.startswith(prefix):
            out[name] = value
            continue
        j, _, rest = name[len(prefix):].partition(".")
        for g in range(groups(value)):
            out[f"blocks.{g * period + int(j)}.{rest}"] = take(value, g)
    return out


def stack_names(tensors: dict, period: int, n_layers: int) -> dict:
    """The inverse of :func:`unstack_names`: per-layer ``blocks.i.`` tensors stacked per position j.

    Names that do not fill a whole stack are passed on unchanged, so the caller's name check
    reports them (missing or unexpected) instead of this silently dropping them."""
    import numpy as np  # noqa: PLC0415

    out, used = {}, set()
    rests = {name.split(".", 2)[2] for name in tensors if name.startswith("blocks.") and name.count(".") >= 2}
    for j in range(period):
        for rest in sorted(rests):
            layers = [f"blocks.{i}.{rest}" for i in range(j, n_layers, period)]
            if all(name in tensors for name in layers):
                out[f"{STACKED_ATTRIBUTE}.{j}.{rest}"] = np.stack([np.asarray(tensors[name]) for name in layers])
                used.update(layers)
    out.update({name: value for name, value in tensors.items() if name not in used})
    return out
