"""Checkpoint conversion: birdie_jax safetensors folders (every architecture) and Hugging Face
folders (Hawk and Griffin ↔ RecurrentGemma, Mamba-2 ↔ Mamba2), both ways. See docs/conversion.md."""

from birdie_jax.convert.export import FORMATS, export
from birdie_jax.convert.import_ import SOURCES, import_checkpoint, read_folder

__all__ = ["FORMATS", "SOURCES", "export", "import_checkpoint", "read_folder"]
