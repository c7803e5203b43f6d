"""birdie_jax: recurrent language models that recall their context, in JAX/Flax NNX.

Public API::

    cfg = birdie_jax.load_config("hawk_tiny", train__steps=100)
    model = birdie_jax.build_model(cfg, seed=0)
    logits = model(tokens, segment_ids=None, prefix_mask=None)
    logits, state = model(tokens, state=state, return_state=True)
    h, h_last = birdie_jax.kernels.linear_scan(a, b, h0=None, reset=None, reverse=False)
    out = birdie_jax.generate(model, ["prompt one", "two"], 20, birdie_jax.Sampling(temperature=0.8))

Importing it keeps glibc's allocator from mapping and unmapping XLA's per-step CPU buffers
(birdie_jax/host_malloc.py; ``BIRDIE_JAX_HOST_MALLOC=0`` turns that off): import birdie_jax
before running JAX computations.
"""

from birdie_jax import host_malloc

host_malloc.configure()  # before JAX starts its thread pools: see birdie_jax/host_malloc.py

from birdie_jax import kernels  # noqa: E402
from birdie_jax.config import Config, DataConfig, ModelConfig, TrainConfig, load_config  # noqa: E402
from birdie_jax.errors import BirdieError, CheckpointError, ConfigError, DataError  # noqa: E402
from birdie_jax.generation import Generation, Sampling, Scores, generate, score  # noqa: E402
from birdie_jax.models import LanguageModel, build_model, count_parameters, state_size  # noqa: E402
from birdie_jax.prompts import jrt_prompt  # noqa: E402

__version__ = "0.1.0"  # the one version source (pyproject.toml reads it)


def train(cfg, **kw):
    """Trains a config (see :func:`birdie_jax.training.loop.train`)."""
    from birdie_jax.training.loop import train as _train

    return _train(cfg, **kw)


def load_checkpoint(path, step=None):
    """Config, tokenizer and model of a saved run (see :func:`birdie_jax.inference.load_checkpoint`)."""
    from birdie_jax.inference import load_checkpoint as _load

    return _load(path, step)


def export(checkpoint, out, format="safetensors", step=None):
    """Writes a run's model as a safetensors or Hugging Face folder (see :func:`birdie_jax.convert.export`)."""
    from birdie_jax.convert import export as _export

    return _export(checkpoint, out, format, step)


def import_checkpoint(source, out, from_="auto", **kw):
    """A safetensors or Hugging Face folder as a run folder (see :func:`birdie_jax.convert.import_checkpoint`)."""
    from birdie_jax.convert import import_checkpoint as _import

    return _import(source, out, from_, **kw)


__all__ = ["BirdieError", "CheckpointError", "Config", "ConfigError", "DataConfig", "DataError", "Generation",
           "LanguageModel", "ModelConfig", "Sampling", "Scores", "TrainConfig", "build_model", "count_parameters",
           "export", "generate", "import_checkpoint", "jrt_prompt", "kernels", "load_checkpoint", "load_config", "score", "state_size", "train"]
