"""Reading and writing conversion folders: config.json, safetensors files, all-or-nothing output."""

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping

import numpy as np

from birdie_jax.errors import CheckpointError

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def read_config_json(folder: str) -> dict:
    """The folder's config.json as a dict; CheckpointError when the folder or file is missing or unreadable."""
    if not os.path.isdir(folder):
        raise CheckpointError(f"{folder} is not a folder")
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}: not a birdie_jax safetensors or Hugging Face folder")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not readable JSON: {e}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return config


def read_tensors(folder: str) -> dict[str, np.ndarray]:
    """Every tensor of the folder's ``*.safetensors`` files (or, with torch installed, ``pytorch_model*.bin``)."""
    files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
    if files:
        load_file = _safetensors_numpy().load_file
        tensors: dict[str, np.ndarray] = {}
        for path in files:
            try:
                tensors.update(load_file(path))
            except Exception as e:  # noqa: BLE001 — the Rust error types are not importable
                raise CheckpointError(f"cannot read {path}: {e}") from None
        return tensors
    bins = sorted(glob.glob(os.path.join(folder, "pytorch_model*.bin")))
    if not bins:
        raise CheckpointError(f"{folder} holds no *.safetensors (nor pytorch_model*.bin) weights")
    try:
        import torch  # noqa: PLC0415 — optional extra
    except ImportError:
        raise CheckpointError(f"{folder} holds only PyTorch .bin weights: pip install 'birdie-jax[torch]'") from None
    tensors = {}
    for path in bins:
        for name, value in torch.load(path, map_location="cpu", weights_only=True).items():
            tensors[name] = value.float().numpy() if value.dtype == torch.bfloat16 else value.numpy()
    return tensors


def _safetensors_numpy():
    try:
        import safetensors.numpy  # noqa: PLC0415 — optional extra
    except ImportError:
        raise CheckpointError("reading and writing safetensors needs the 'safetensors' package: "
                              "pip install 'birdie-jax[torch]'") from None
    return safetensors.numpy


def write_tensors(path: str, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
    _safetensors_numpy().save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path, metadata=dict(metadata or {}))


def write_json(path: str, value: Mapping) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=False)
        f.write("\n")


def check_output_folder(out: str) -> None:
    """Refuses an output path that exists (never overwrites) or sits below a file."""
    if os.path.exists(out):
        raise CheckpointError(f"output {out} already exists; give a new folder")
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise CheckpointError(f"output {out} lies below {parent}, which is a file")


@contextlib.contextmanager
def output_folder(out: str) -> Iterator[str]:
    """A temporary sibling folder renamed to ``out`` when the block succeeds; on failure it and
    any parent folders made for it are removed."""
    check_output_folder(out)
    out = os.path.abspath(out)
    made = []
    parent = os.path.dirname(out)
    while not os.path.exists(parent):
        made.append(parent)
        parent = os.path.dirname(parent)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", suffix=".partial", dir=os.path.dirname(out))
    try:
        yield tmp
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:  # innermost first
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise
