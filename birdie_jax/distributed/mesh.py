"""The device mesh: four named axes, sized from a small frozen config.

Axes, outermost first (the order matters for which devices neighbour each other: the
innermost axes should map to the fastest links, so ``tensor`` and ``sequence``, which
communicate every layer, come last):

* ``data``: pure data parallelism (parameters replicated, batch rows split);
* ``fsdp``: data parallelism with parameters and optimizer state sharded (ZeRO-3 style);
* ``tensor``: tensor (model) parallelism of the wide projections;
* ``sequence``: the time axis of activations (sequence/context parallelism).

The batch is split over ``data`` × ``fsdp`` (see :func:`birdie_jax.distributed.rules.batch_sharding`).
"""

import dataclasses
import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from birdie_jax.errors import ConfigError

AXES: tuple[str, ...] = ("data", "fsdp", "tensor", "sequence")
#: The mesh axes a batch's rows are split over.
BATCH_AXES: tuple[str, ...] = ("data", "fsdp")


@dataclasses.dataclass(frozen=True, slots=True)
class MeshConfig:
    """Sizes of the mesh axes; their product must equal the number of devices.

    Attributes:
      data: data-parallel replicas; ``-1`` takes all devices the other axes leave.
      fsdp: devices each parameter and optimizer moment is sharded over (``-1`` allowed
        instead of ``data``).
      tensor: tensor-parallel width of the large projections.
      sequence: devices the time axis is split over (sequence parallelism of the
        recurrences; rows must be a multiple of it long).
    """

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    sequence: int = 1

    def __post_init__(self):
        sizes = dataclasses.asdict(self)
        bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or isinstance(v, bool) or v == 0 or v < -1}
        if bad:
            raise ConfigError("mesh: sizes must be positive integers or -1, got "
                             + ", ".join(f"mesh.{k}={v!r}" for k, v in bad.items()))
        if sum(v == -1 for v in sizes.values()) > 1:
            raise ConfigError("mesh: at most one of " + ", ".join(f"mesh.{k}" for k in sizes)
                             + f" may be -1, got {self}")

    def resolve(self, num_devices: int) -> dict[str, int]:
        """Axis sizes ``{name: size}`` for ``num_devices`` devices (``-1`` filled in)."""
        sizes = dataclasses.asdict(self)
        fixed = math.prod(v for v in sizes.values() if v != -1)
        described = " × ".join(f"mesh.{k}={v}" for k, v in sizes.items())
        free = [k for k, v in sizes.items() if v == -1]
        if free:
            if num_devices % fixed:
                raise ConfigError(f"mesh: {described}: the fixed axes multiply to {fixed}, which does not divide "
                                 f"the {num_devices} devices, so mesh.{free[0]}=-1 cannot be filled in")
            sizes[free[0]] = num_devices // fixed
        elif fixed != num_devices:
            raise ConfigError(f"mesh: {described} = {fixed} devices, but {num_devices} are available; "
                             "the product of mesh.data, mesh.fsdp, mesh.tensor and mesh.sequence must equal "
                             "the device count (set one of them to -1 to take the rest)")
        return sizes


def make_mesh(mesh_cfg: MeshConfig = MeshConfig(), devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A :class:`jax.sharding.Mesh` with axes ``("data", "fsdp", "tensor", "sequence")``.

    Args:
      mesh_cfg: the axis sizes.
      devices: the devices to use (default: all of ``jax.devices()``, across every
        process); e.g. ``jax.devices()[:4]`` for a mesh over part of the machine.

    The axes are ``AxisType.Auto`` (XLA's sharding propagation decides intermediate
    shardings), so model code needs no sharding annotations.

    Raises:
      ConfigError (a ValueError): the sizes do not multiply to the device count (naming the fields).
    """
    if devices is None:
        sizes = mesh_cfg.resolve(jax.device_count())
        shape = tuple(sizes[a] for a in AXES)
        return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES))
    devices = list(devices)
    sizes = mesh_cfg.resolve(len(devices))
    shape = tuple(sizes[a] for a in AXES)
    try:
        return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)
    except (ValueError, NotImplementedError, AssertionError):
        # make_mesh wants a topology-friendly device set; any subset works in plain order.
        return Mesh(np.asarray(devices, dtype=object).reshape(shape), AXES,
                    axis_types=(AxisType.Auto,) * len(AXES))


def axis_size(mesh, name: str) -> int:
    """Size of mesh axis ``name`` (1 if the mesh has no such axis)."""
    return int(dict(mesh.shape).get(name, 1))


def describe(mesh) -> str:
    """``data=2 fsdp=2 tensor=2 sequence=1 (8 devices)`` for logs."""
    shape = dict(mesh.shape)
    return " ".join(f"{k}={v}" for k, v in shape.items()) + f" ({math.prod(shape.values())} devices)"
