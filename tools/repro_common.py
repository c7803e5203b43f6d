"""Shared by the reproduction scripts (``tools/repro_*.py``): progress lines, resumable runs,
atomic JSON, and rewriting one script's own section of ``docs/reproductions.md``.

Each script owns the part of the page between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``
(NAME = the script's stem, e.g. ``repro_birdie``), so the three scripts never overwrite each other.
"""

import json
import os
import time
from collections.abc import Callable

REPRODUCTIONS_PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                                  "reproductions.md")

LOADS: list[float] = []  # the 1-minute load average at each progress line (the machine may be shared)


def log(message: str) -> None:
    """Prints one time-stamped progress line with the machine's load average."""
    LOADS.append(os.getloadavg()[0])
    print(f"[{time.strftime('%H:%M:%S')}] {message} (load average {LOADS[-1]:.1f})", flush=True)


def write_json(path: str, payload) -> None:
    """Writes ``payload`` as JSON to ``path`` atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


def cached(path: str, compute: Callable[[], dict]) -> dict:
    """The result stored at ``path`` if a finished run left it there, else ``compute()`` stored there.

    This is what makes a rerun resume: every finished unit of work (one training run and its
    evaluation) leaves its JSON, and a rerun with the same settings reuses it instead of retraining.
    """
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    result = compute()
    write_json(path, result)
    return result


def write_section(name: str, markdown: str, page: str = REPRODUCTIONS_PAGE) -> None:
    """Replaces the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``page``.

    The markers are appended at the end of the page when missing; everything else is kept.
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = open(page).read() if os.path.exists(page) else "# Reproductions\n"
    block = f"{start}\n{markdown.strip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = f"{page}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, page)
