"""The tokenizer that travels with a converted model: described in JSON, its file copied along."""

import os
import shutil

from birdie_jax.errors import CheckpointError
from birdie_jax.tokenizer import Tokenizer

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


def describe(tokenizer: Tokenizer) -> dict:
    """JSON record: the tokenizer (name, sizes, sentinels), every reserved special id and its file name."""
    record = {**tokenizer.to_dict(), "special_ids": tokenizer.special.to_dict()}
    if record["spec"] != "byte":
        record["file"] = _file_name(record["spec"])
    return record


def _file_name(spec: str) -> str:
    return "tokenizer.model" if spec.lower().endswith(".model") else "tokenizer.json"


def copy_file(tokenizer: Tokenizer, folder: str) -> None:
    """Copies a file-based tokenizer into ``folder`` under its standard name."""
    spec = tokenizer.to_dict()["spec"]
    if spec != "byte":
        shutil.copyfile(spec, os.path.join(folder, _file_name(spec)))


def find(folder: str, record: dict | None, num_sentinels: int | None = None) -> tuple[str, int]:
    """(tokenizer spec inside ``folder`` or "byte", num_sentinels) for a converted folder.

    ``record`` is what :func:`describe` wrote (None for a foreign folder: its tokenizer.json
    or tokenizer.model if present, else bytes).
    """
    if record is not None:
        sentinels = int(record.get("num_sentinels", 100)) if num_sentinels is None else num_sentinels
        if record.get("spec") == "byte":
            return "byte", sentinels
        path = os.path.join(folder, record.get("file", "tokenizer.json"))
        if not os.path.isfile(path):
            raise CheckpointError(f"{folder}: its config names tokenizer file {os.path.basename(path)}, which is missing")
        return path, sentinels
    for name in TOKENIZER_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path, num_sentinels or 100
    return "byte", num_sentinels or 100
