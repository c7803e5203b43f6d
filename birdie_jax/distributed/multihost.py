"""Multi-process (multi-host) setup: ``jax.distributed``, per-host data and global batches.

On a TPU pod slice or a multi-node GPU cluster, one Python process runs per host (TPU)
or per host/GPU (SLURM), all executing the same program. Each process:

1. calls :func:`initialize_from_environment` before any other JAX call;
2. reads its own slice of the data (:func:`process_data_slice` → the Grain pipeline's
   ``shard_index``/``shard_count``, with a per-process batch of
   ``global_batch_size // shard_count`` rows);
3. assembles the global batch with :func:`global_batch`
   (``jax.make_array_from_process_local_data``);
4. writes metrics, progress and other once-only files only if :func:`is_main_process`.
   Checkpoints are the exception: every process calls ``Checkpointer.save`` (each
   writes its own shards and its Grain iterator state; Orbax coordinates the hosts).
"""

import logging
import os
from typing import Any

import jax
import numpy as np

from birdie_jax.distributed.rules import batch_sharding

log = logging.getLogger(__name__)

#: Override for the detection below: "auto" (default), "on"/"1" (always initialise) or
#: "off"/"0" (never).
ENV_SWITCH = "BIRDIE_JAX_DISTRIBUTED"
_EXPLICIT = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
_GOOGLE_PCI_VENDOR = "0x1ae0"
# PCI device ids of TPU chips (v3, v4, v5p, v5e, v6e, 7x; JAX's own hardware table). Google's
# virtual NIC shares the vendor id, so the device id must match too. A TPU generation
# missing here is still handled with BIRDIE_JAX_DISTRIBUTED=on.
_TPU_PCI_DEVICES = ("0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076")


def _env_int(name: str, default: int = 0) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _on_tpu_vm() -> bool:
    """Whether TPU chips are attached through PCI (a Cloud TPU VM)."""
    try:
        entries = list(os.scandir("/sys/bus/pci/devices"))
    except OSError:
        return False
    return any(_read(os.path.join(e.path, "vendor")) == _GOOGLE_PCI_VENDOR
               and _read(os.path.join(e.path, "device")) in _TPU_PCI_DEVICES for e in entries)


def detect_environment() -> tuple[str, dict[str, Any]]:
    """(kind, initialize kwargs): kind is ``"explicit"``, ``"slurm"``, ``"openmpi"``, ``"tpu"`` or ``"single"``.

    * explicit: ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0), ``JAX_NUM_PROCESSES``
      and ``JAX_PROCESS_ID`` are set (any launcher; ``JAX_LOCAL_DEVICE_IDS`` optional);
    * slurm: ``SLURM_NTASKS > 1`` inside a job step (``srun``); JAX reads the rest;
    * openmpi: ``OMPI_COMM_WORLD_SIZE > 1`` (``mpirun``); JAX reads the rest;
    * tpu: a Cloud TPU VM (TPU chips on the PCI bus), or ``TPU_WORKER_HOSTNAMES`` listing
      several hosts, or multislice (``MEGASCALE_COORDINATOR_ADDRESS``); JAX auto-detects
      the pod's processes (a single-host TPU VM initialises as one process, harmlessly);
    * single: none of these.
    """
    if all(os.environ.get(k) for k in _EXPLICIT):
        kwargs: dict[str, Any] = {"coordinator_address": os.environ["JAX_COORDINATOR_ADDRESS"],
                                  "num_processes": int(os.environ["JAX_NUM_PROCESSES"]),
                                  "process_id": int(os.environ["JAX_PROCESS_ID"])}
        if os.environ.get("JAX_LOCAL_DEVICE_IDS"):
            kwargs["local_device_ids"] = [int(i) for i in os.environ["JAX_LOCAL_DEVICE_IDS"].split(",")]
        return "explicit", kwargs
    if _env_int("SLURM_NTASKS", 1) > 1 and "SLURM_JOB_ID" in os.environ and "SLURM_STEP_NODELIST" in os.environ:
        return "slurm", {}
    if _env_int("OMPI_COMM_WORLD_SIZE", 1) > 1:
        return "openmpi", {}
    hostnames = os.environ.get("TPU_WORKER_HOSTNAMES", "") or os.environ.get("TPU_PROCESS_ADDRESSES", "")
    if "," in hostnames or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS") or _on_tpu_vm():
        return "tpu", {}
    return "single", {}


def initialize_from_environment(mode: str | None = None) -> bool:
    """Calls ``jax.distributed.initialize`` when launched as one of several processes.

    Call it first thing, before any other JAX call (the device list is fixed at the
    first one). Idempotent; a no-op for a single process.

    Args:
      mode: ``"auto"`` (detect, see :func:`detect_environment`), ``"on"`` (always call
        ``jax.distributed.initialize()``, letting JAX find the cluster) or ``"off"``;
        default: the ``BIRDIE_JAX_DISTRIBUTED`` environment variable, else ``"auto"``.

    Returns:
      Whether JAX runs multi-process now (``jax.distributed`` initialised).
    """
    mode = (mode or os.environ.get(ENV_SWITCH) or "auto").lower()
    if mode in ("0", "off", "false", "no"):
        return False
    if mode not in ("auto", "1", "on", "true", "yes"):
        raise ValueError(f"{ENV_SWITCH} / mode must be auto, on or off, got {mode!r}")
    if jax.distributed.is_initialized():
        return True
    kind, kwargs = detect_environment()
    if kind == "single" and mode == "auto":
        return False
    log.info("jax.distributed.initialize (%s environment)", kind)
    jax.distributed.initialize(**kwargs)
    return True


def is_main_process() -> bool:
    """True on the process that writes metrics, progress and run files (process 0)."""
    return jax.process_index() == 0


def process_data_slice(mesh=None, global_batch_size: int | None = None) -> tuple[int, int]:
    """``(shard_index, shard_count)`` of this process's rows, for the Grain pipeline.

    Without a mesh: ``(jax.process_index(), jax.process_count())``. With a mesh, processes
    whose devices hold the same batch rows (e.g. when the ``tensor`` or ``sequence`` axis
    spans hosts) get the same index and must read the same data; ``shard_count`` is the
    number of distinct row groups. Each process then loads
    ``global_batch_size // shard_count`` rows per step.
    """
    if mesh is None:
        return jax.process_index(), jax.process_count()
    rows = global_batch_size or int(np.prod([dict(mesh.shape).get(a, 1) for a in ("data", "fsdp")]))
    sharding = batch_sharding(mesh, ndim=1)
    groups: dict[int, set[int]] = {}
    for device, index in sharding.devices_indices_map((rows,)).items():
        start = index[0].start or 0
        groups.setdefault(device.process_index, set()).add(start)
    keys = sorted({tuple(sorted(v)) for v in groups.values()})
    mine = tuple(sorted(groups.get(jax.process_index(), set())))
    return keys.index(mine), len(keys)


def global_batch(local_batch: dict[str, np.ndarray], sharding=None, *, mesh=None) -> dict[str, jax.Array]:
    """This process's rows ``{field: [local_rows, T]}`` → global ``jax.Array`` batch.

    ``sharding`` defaults to :func:`~birdie_jax.distributed.rules.batch_sharding` of
    ``mesh``. Single-process, this is a sharded ``device_put``.
    """
    if sharding is None:
        if mesh is None:
            raise ValueError("global_batch: pass a sharding or a mesh")
        sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def to_host(tree: Any) -> Any:
    """Replicated (e.g. metrics) arrays → numpy, on every process.

    ``float(x)`` fails on a multi-host array (not fully addressable); a replicated array
    has the whole value on each local device, so the first local shard is the value.
    """
    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.sharding.is_fully_replicated:
                raise ValueError("to_host: the array is not replicated; gather it with "
                                 "jax.experimental.multihost_utils.process_allgather")
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)

    return jax.tree.map(get, tree)
