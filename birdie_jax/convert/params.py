"""A model's parameters as a flat ``{name: array}`` mapping, and back.

Names are the model's attribute paths joined by dots (``blocks.0.mixer.in_proj.kernel``,
``embed.embedding``); docs/conversion.md lists them per architecture. A scanned model
(``model.scan_layers``) is named as the unrolled one: its stacked layers are split per layer. Arrays keep the
model's own layout (dense kernels are ``[in, out]``) and dtype, so a round trip through a
file is bit-identical.
"""

from collections.abc import Mapping

import jax
import numpy as np
from flax import nnx

from birdie_jax.errors import CheckpointError
from birdie_jax.models.layer_scan import stack_names, unstack_names


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _scan_period(model: nnx.Module) -> int | None:
    """The layer period of a scanned model (``model.scan_layers``), else None."""
    cfg = getattr(model, "cfg", None)
    return cfg.layer_period() if getattr(cfg, "scan_layers", False) else None


def named_parameters(model: nnx.Module) -> dict[str, np.ndarray]:
    """Every parameter of ``model`` by its dotted name, as host arrays."""
    pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    named = {name: np.asarray(jax.device_get(value)) for name, value in _flatten(pure).items()}
    period = _scan_period(model)
    return dict(sorted((named if period is None else unstack_names(named, period)).items()))


def parameter_shapes(model: nnx.Module) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of every parameter by name (works on an abstract ``nnx.eval_shape`` model)."""
    pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    shapes = {name: (tuple(v.shape), np.dtype(v.dtype)) for name, v in _flatten(pure).items()}
    period = _scan_period(model)
    if period is None:
        return shapes
    return unstack_names(shapes, period, groups=lambda v: v[0][0], take=lambda v, g: (v[0][1:], v[1]))


def check_parameters(expected: Mapping[str, tuple[tuple[int, ...], np.dtype]], tensors: Mapping[str, np.ndarray],
                     where: str) -> None:
    """CheckpointError naming the first missing, unexpected or misshapen tensor."""
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise CheckpointError(f"{where}: tensor {missing[0]!r} is missing ({len(missing)} missing in all)")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise CheckpointError(f"{where}: tensor {extra[0]!r} has no place in this model ({len(extra)} unexpected)")
    for name, (shape, _) in sorted(expected.items()):
        if tuple(tensors[name].shape) != shape:
            raise CheckpointError(f"{where}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                                  f"the model expects {shape}")


def load_parameters(model: nnx.Module, tensors: Mapping[str, np.ndarray], where: str) -> nnx.Module:
    """``model`` with its parameters replaced by ``tensors`` (names and shapes checked; cast to its dtypes)."""
    graphdef, state, rest = nnx.split(model, nnx.Param, ...)
    expected = parameter_shapes(model)
    check_parameters(expected, tensors, where)
    period = _scan_period(model)
    if period is not None:
        tensors = stack_names(tensors, period, model.cfg.n_layers)
    pure = nnx.to_pure_dict(state)

    def fill(tree: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in tree.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                out[key] = fill(value, name + ".")
            else:
                out[key] = jax.numpy.asarray(np.asarray(tensors[name]).astype(value.dtype, copy=False))
        return out

    nnx.replace_by_pure_dict(state, fill(pure))
    return nnx.merge(graphdef, state, rest)
