"""Shared by the benchmark tools: the machine description and writing the results JSON."""

import json
import os
import platform

import jax

SHARED_MACHINE_NOTE = "2-core VM shared with other engineers' jobs while measured"


def machine_info(note: str = SHARED_MACHINE_NOTE) -> dict:
    """jax version, backend, cores, platform, Python, the host malloc settings, the load average now, and a note.

    (Results written earlier in session 5 name the malloc field ``host_malloc_huge_pages``.)
    """
    from birdie_jax import host_malloc

    return {"jax": jax.__version__, "backend": jax.default_backend(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "processor": platform.processor(), "python": platform.python_version(),
            "host_malloc": host_malloc.status(), "load_average_at_end": os.getloadavg(), "note": note}


def write_results(path: str, out: dict) -> None:
    """Writes ``out`` as indented JSON to ``path`` (creating its folder) and says so."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {path}")
