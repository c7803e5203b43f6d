"""The host allocator settings of ``import birdie_jax`` (birdie_jax/host_malloc.py).

Their point: XLA's CPU runtime frees and re-allocates a large arena every call (904 MiB for the
Mamba-2 peer step), which glibc's defaults map fresh each time, so every call page-faults it in
(~245,000 faults per step measured by tools/bench_peers.py). The probe here does what XLA does,
through the C library itself: allocate 256 MiB, write it, free it, twice, and counts the minor
page faults of the second round in a fresh interpreter, with the settings and without.
"""

import json
import os
import subprocess
import sys

import pytest

from birdie_jax import host_malloc

_PROBE = r"""
import ctypes, json, resource
import birdie_jax
from birdie_jax import host_malloc

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 256 << 20  # far above glibc's largest mmap threshold (32 MiB)

def cycle():
    ptr = libc.malloc(size)
    ctypes.memset(ptr, 1, size)
    libc.free(ptr)

cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
cycle()
print(json.dumps({"status": host_malloc.status(),
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(env_changes: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k != host_malloc.OPT_OUT}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(host_malloc._mallopt() is None, reason="needs Linux with glibc")
def test_import_keeps_xla_buffers_mapped_and_the_opt_out_restores_glibc_defaults():
    on, off = _probe({}), _probe({host_malloc.OPT_OUT: "0"})
    assert on["status"].startswith("on"), on
    assert off["status"].startswith("off"), off
    # A fresh 256 MiB mapping is 65,536 faults of 4 KiB pages (fewer with huge pages); a reused heap has none.
    assert off["faults"] > 1000, off
    assert on["faults"] < 100, on


def test_info_reports_the_allocator_setting():
    out = subprocess.run([sys.executable, "-m", "birdie_jax.cli", "info", "--config", "hawk_tiny", "--json"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["host_malloc"] == host_malloc.status()
