"""Checksums of a committed checkpoint: written once Orbax has committed a step, checked
before anything is restored from it.

A step folder ``checkpoints/<step>/`` gets ``birdie_manifest.json``: the size and SHA-256
of every file under it. Writing goes through a temporary file and ``os.replace``, so the
manifest is either absent or complete. :func:`verify` then tells apart

* ``intact``: every listed file is present with its size and checksum;
* ``unsealed``: no manifest (a checkpoint from before manifests existed, or a process
  killed between Orbax's commit and the manifest): it can only be tried;
* ``damaged``: a listed file is missing, truncated or altered, or the manifest itself is
  unreadable.
"""

import hashlib
import json
import os

MANIFEST = "birdie_manifest.json"
FORMAT = 1
INTACT, UNSEALED, DAMAGED = "intact", "unsealed", "damaged"
_CHUNK = 1 << 20


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def file_digests(step_dir: str) -> dict[str, dict]:
    """``{relative path: {"bytes", "sha256"}}`` of every file under ``step_dir`` but the manifest."""
    out = {}
    for root, dirs, files in os.walk(step_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, step_dir)
            if rel == MANIFEST or rel.startswith(MANIFEST):
                continue
            out[rel] = {"bytes": os.path.getsize(path), "sha256": _sha256(path)}
    return out


def write_manifest(step_dir: str, step: int) -> None:
    """Records the checksums of a committed step folder (atomically)."""
    body = {"format": FORMAT, "step": int(step), "files": file_digests(step_dir)}
    tmp = os.path.join(step_dir, f"{MANIFEST}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(body, f, indent=0, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(step_dir, MANIFEST))


def verify(step_dir: str) -> tuple[str, str]:
    """``(INTACT | UNSEALED | DAMAGED, detail)``; the detail names the first bad file."""
    path = os.path.join(step_dir, MANIFEST)
    if not os.path.exists(path):
        return UNSEALED, "no checksum manifest"
    try:
        with open(path, encoding="utf-8") as f:
            files = json.load(f)["files"]
        expected = {str(k): (int(v["bytes"]), str(v["sha256"])) for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return DAMAGED, f"{MANIFEST} is unreadable"
    for rel, (size, digest) in sorted(expected.items()):
        full = os.path.join(step_dir, rel)
        if not os.path.isfile(full):
            return DAMAGED, f"{rel} is missing"
        actual = os.path.getsize(full)
        if actual != size:
            return DAMAGED, f"{rel} has {actual} bytes, {size} were written"
        if _sha256(full) != digest:
            return DAMAGED, f"{rel} does not match its checksum"
    return INTACT, ""
