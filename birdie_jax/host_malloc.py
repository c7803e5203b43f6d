"""Huge pages for the host allocator, so XLA's per-step CPU buffers cost no page faults (issue 18).

Why: XLA's CPU runtime allocates one temporary arena per executable call (0.9 GB for the
Mamba-2 peer workload of tools/bench_peers.py) with glibc ``malloc``, which maps a fresh
region for it and unmaps it afterwards. Every call then touches ~230,000 new 4 KiB pages,
and the kernel faults in and zeroes each one: measured at ~0.5 s of system CPU per training
step on the 2-core benchmark machine, about as much as the step's own compute. glibc ≥ 2.35
can back its mappings with transparent huge pages (the ``glibc.malloc.hugetlb=1`` tunable;
the kernel's THP mode ``madvise`` or ``always``), which cuts the faults ~500×.

glibc reads its tunables once, at process start, so the setting has to be in the
environment before Python starts: the ``birdie-jax`` command restarts itself once with it
(``BIRDIE_JAX_HUGETLB=0`` turns that off); in a notebook or another program, start Python
with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``. :func:`status` says whether it is active.
"""

import os
import platform
import sys
from collections.abc import Mapping, Sequence

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT = "BIRDIE_JAX_HUGETLB"
_MIN_GLIBC = (2, 35)


def _glibc_version() -> tuple[int, ...] | None:
    if sys.platform != "linux":
        return None
    name, version = platform.libc_ver()
    if name != "glibc" or not version:
        return None
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit())


def supported() -> bool:
    """True on Linux with glibc ≥ 2.35 (the first with the ``hugetlb`` malloc tunable)."""
    version = _glibc_version()
    return version is not None and version >= _MIN_GLIBC


def with_hugetlb(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` whose ``GLIBC_TUNABLES`` enables huge-page malloc; a value the user
    already chose for ``glibc.malloc.hugetlb`` (and every other tunable) is kept."""
    out = dict(env)
    tunables = [t for t in out.get("GLIBC_TUNABLES", "").split(":") if t]
    if not any(t.split("=", 1)[0] == TUNABLE for t in tunables):
        tunables.append(f"{TUNABLE}=1")
    out["GLIBC_TUNABLES"] = ":".join(tunables)
    return out


def status(env: Mapping[str, str] | None = None) -> str:
    """For ``birdie-jax info``: whether this process started with huge-page malloc ("on ...", "off ...")."""
    env = os.environ if env is None else env
    if not supported():
        return "not available (needs Linux with glibc >= 2.35)"
    chosen = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t.split("=", 1)[0] == TUNABLE]
    if chosen and chosen[-1].split("=", 1)[-1] != "0":
        return f"on ({chosen[-1]})"
    return f"off (start with GLIBC_TUNABLES={TUNABLE}=1; see birdie_jax/host_malloc.py)"


def restart_with_hugetlb(command: Sequence[str]) -> None:
    """Replace this process by ``python *command`` with huge-page malloc, once.

    ``command`` is what follows the interpreter: ``["-m", "birdie_jax.cli", *args]`` or
    ``[script, *args]``.

    Does nothing where glibc lacks the tunable, where the environment already sets it (the
    user's choice, or the restarted process itself), or with ``BIRDIE_JAX_HUGETLB=0``.
    For command-line entry points only: it never returns when it restarts.
    """
    if not supported() or os.environ.get(OPT_OUT) == "0":
        return
    env = with_hugetlb(os.environ)
    if env.get("GLIBC_TUNABLES") == os.environ.get("GLIBC_TUNABLES"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *command], env)
