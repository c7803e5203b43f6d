"""Loading trained models from checkpoints, and text generation from a loaded run."""

import dataclasses

from flax import nnx

from birdie_jax.config import config_from_dict
from birdie_jax.errors import CheckpointError
from birdie_jax.generation import Sampling, generate
from birdie_jax.models import LanguageModel, build_model
from birdie_jax.prompt_format import training_format
from birdie_jax.tokenizer import build_tokenizer
from birdie_jax.training.checkpoint import Checkpointer, abstract_like, find_checkpoint_dir
from birdie_jax.training.initial_state import init_extras
from birdie_jax.training.optim import make_optimizer
from birdie_jax.training.step import init_train_state


@dataclasses.dataclass
class LoadedRun:
    config: object
    tokenizer: object
    model: LanguageModel
    step: int
    extras: dict = dataclasses.field(default_factory=dict)  # intervention state (carried states, statistics)


def load_checkpoint(path: str, step: int | None = None) -> LoadedRun:
    """Rebuilds config, tokenizer and model from a run folder (or its ``checkpoints/``)."""
    checkpointer = Checkpointer(find_checkpoint_dir(path), read_only=True)
    try:
        meta = checkpointer.read_meta(step)
        cfg = config_from_dict(meta["config"], where=f"{path} (saved config)")
        tokenizer = build_tokenizer(cfg.data.tokenizer, num_sentinels=cfg.data.num_sentinels)
        if tokenizer.to_dict() != meta.get("tokenizer"):
            raise CheckpointError(f"{path}: the tokenizer it was trained with ({meta.get('tokenizer')}) "
                                  f"differs from {cfg.data.tokenizer!r} as found now")
        model = build_model(cfg, seed=cfg.seed, vocab_size=tokenizer.vocab_size)
        graphdef, params = nnx.split(model)
        extras = init_extras(cfg.initial_state, model.init_state(cfg.data.batch_size))
        abstract = abstract_like(init_train_state(params, make_optimizer(cfg.train), cfg.seed, extras))
        state = checkpointer.restore(abstract, None, step)
    finally:
        checkpointer.close()
    model = nnx.merge(graphdef, state["params"])
    model.prompt_format = training_format(cfg)  # generate/score/evals default to the training layout
    return LoadedRun(cfg, tokenizer, model, int(state["step"]), state.get("extras", {}))


def prompt_as_prefix(cfg) -> bool:
    """Whether a run's model was trained to read prompts as prefixes (any non-CLM mixture)."""
    return training_format(cfg).as_prefix


def generate_text(run: LoadedRun, prompt: str, max_new_tokens: int = 200, sampling: Sampling | None = None, *,
                  prompt_as_prefix: bool | None = None, paradigm: str | None = "auto",
                  read_twice: bool = False) -> str:
    """Text continuation of ``prompt``, by default in the layout (and with the paradigm token)
    the run's model was trained with; ``read_twice``: Read-2× for PLA models."""
    out = generate(run.model, [prompt], max_new_tokens, sampling, tokenizer=run.tokenizer,
                   prompt_as_prefix=prompt_as_prefix, paradigm=paradigm, read_twice=read_twice)
    return run.tokenizer.decode(out.tokens[0], skip_special=True)
