"""A run folder's history: what a resume may change, ``history.jsonl`` and old ``config.yaml`` versions.

A resumed run must read the same data the same way, or it silently becomes another
experiment: the seed, the ``data`` section (all but ``num_workers``) and the ``mixture``
section are fixed at the first start. :func:`data_changes` lists what differs;
``--allow-config-change`` accepts it, and the change is recorded in ``history.jsonl``
(one JSON object per start, resume or fallback). :func:`write_config` keeps each earlier
``config.yaml`` as ``config_versions/<n>.yaml`` before writing the new one.
"""

import json
import os
import socket
import time
from typing import Any

#: Config keys (dotted; a section name covers all its fields) a resume may not change.
RESUME_FIXED = ("seed", "data", "mixture")
#: ...except these, which do not change which samples are read.
RESUME_FREE = ("data.num_workers",)
HISTORY = "history.jsonl"
VERSIONS = "config_versions"


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def data_changes(saved: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved value, current value)}`` over the resume-fixed keys of two config dicts."""
    old, new = _flatten(saved), _flatten(current)
    keys = [k for k in sorted(set(old) | set(new))
            if any(k == f or k.startswith(f + ".") for f in RESUME_FIXED) and k not in RESUME_FREE]
    return {k: (old.get(k), new.get(k)) for k in keys if _normal(old.get(k)) != _normal(new.get(k))}


def _normal(value: Any) -> Any:
    """Tuples and lists compare equal (the saved config went through JSON)."""
    return json.loads(json.dumps(value))


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())


def record(run_dir: str, event: str, step: int, **details: Any) -> None:
    """Appends one event to ``history.jsonl``."""
    entry = {"event": event, "step": int(step), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
             "host": socket.gethostname(), "pid": os.getpid(), **details}
    with open(os.path.join(run_dir, HISTORY), "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, default=str) + "\n")


def write_config(run_dir: str, text: str) -> str | None:
    """Writes ``config.yaml``; an earlier, different version is kept under ``config_versions/``
    first. Returns the kept version's path (None if there was none to keep)."""
    path = os.path.join(run_dir, "config.yaml")
    kept = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
        if old != text:
            folder = os.path.join(run_dir, VERSIONS)
            os.makedirs(folder, exist_ok=True)
            kept = os.path.join(folder, f"{len(os.listdir(folder)) + 1}.yaml")
            os.replace(path, kept)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return kept
