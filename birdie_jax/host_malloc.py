"""Keep the host allocator's memory, so XLA's per-step CPU buffers cost no page faults (issue 18).

Why: XLA's CPU runtime allocates each call's temporaries as one arena (904 MiB for the
Mamba-2 peer workload of tools/bench_peers.py) from a worker thread. glibc ``malloc`` serves
a request that large from a fresh ``mmap`` and unmaps it on ``free``, so every training step
faults in and zeroes ~230,000 new 4 KiB pages: measured at ~0.5 s of system CPU per step on
the 2-core benchmark machine, ~40 % of the step's CPU time (docs/benchmarks.md, "Host malloc").

What :func:`configure` does, with glibc's ``mallopt`` (Linux only): one malloc arena for all
threads (``M_ARENA_MAX`` 1: a worker thread's own arena would fall back to ``mmap`` for a
request larger than its heap), no ``mmap`` for large requests (``M_MMAP_MAX`` 0) and no
returning of freed memory to the system (``M_TRIM_THRESHOLD`` at its maximum). The arena is
then reused from step to step; the process keeps its peak heap, as a training run does anyway.

``import birdie_jax`` calls it, before JAX starts its thread pools (so import birdie_jax
before running JAX computations); ``BIRDIE_JAX_HOST_MALLOC=0`` in the environment turns it
off, and ``birdie-jax info`` reports :func:`status`.
"""

import ctypes
import os
import sys

OPT_OUT = "BIRDIE_JAX_HOST_MALLOC"
# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))

_state = {"status": "not configured"}


def _mallopt():
    """glibc's ``mallopt``, or None where there is none (not Linux, or another C library)."""
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc's soname on every Linux architecture
        return libc.mallopt if hasattr(libc, "gnu_get_libc_version") else None
    except OSError:
        return None


def configure() -> str:
    """Apply the settings above once (idempotent); returns :func:`status`."""
    if _state["status"] != "not configured":
        return _state["status"]
    if os.environ.get(OPT_OUT) == "0":
        _state["status"] = f"off ({OPT_OUT}=0)"
        return _state["status"]
    mallopt = _mallopt()
    if mallopt is None:
        _state["status"] = "not available (needs Linux with glibc)"
        return _state["status"]
    failed = [param for param, value in _SETTINGS if mallopt(param, value) != 1]
    _state["status"] = ("on (glibc mallopt: one arena, no mmap, no trimming)" if not failed
                        else f"partly on (glibc refused mallopt parameters {failed})")
    return _state["status"]


def status() -> str:
    """Whether :func:`configure` changed the allocator in this process ("on ...", "off ...", ...)."""
    return _state["status"]
