"""Loading trained models from checkpoints and sampling text from them.

Generation prefills the prompt through the full-sequence path (returning every layer's
state), then decodes one token at a time with ``model.step``: constant memory for the
recurrent models, a KV cache for attention.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from birdie_jax.config import config_from_dict
from birdie_jax.errors import CheckpointError
from birdie_jax.models import LanguageModel, build_model
from birdie_jax.models.model import check_token_ids
from birdie_jax.tokenizer import build_tokenizer
from birdie_jax.training.checkpoint import Checkpointer, abstract_like, find_checkpoint_dir
from birdie_jax.training.optim import make_optimizer
from birdie_jax.training.step import init_train_state


@dataclasses.dataclass
class LoadedRun:
    config: object
    tokenizer: object
    model: LanguageModel
    step: int


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
        abstract = abstract_like(init_train_state(params, make_optimizer(cfg.train), cfg.seed))
        state = checkpointer.restore(abstract, None, step)
    finally:
        checkpointer.close()
    return LoadedRun(cfg, tokenizer, nnx.merge(graphdef, state["params"]), int(state["step"]))


def sample_token(logits: jax.Array, key: jax.Array, temperature: float, top_k: int | None) -> jax.Array:
    """Greedy when temperature == 0, else softmax sampling (optionally restricted to the top k)."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def generate_tokens(model: LanguageModel, prompt: np.ndarray, max_new_tokens: int, *, temperature: float = 0.0,
                    top_k: int | None = None, stop_ids: tuple[int, ...] = (), seed: int = 0) -> np.ndarray:
    """Continues one prompt (int[t]); returns the new token ids (stops early at a stop id)."""
    prompt = np.asarray(prompt, np.int32)
    check_token_ids(prompt, model.cfg.vocab_size, "prompt")
    graphdef, params = nnx.split(model)
    cache_len = len(prompt) + max_new_tokens

    @jax.jit
    def prefill(params, tokens):
        m = nnx.merge(graphdef, params)
        state = m.init_state(1, cache_len)
        logits, state = m(tokens, state=state, return_state=True)
        return logits[:, -1], state

    @jax.jit
    def decode(params, token, state):
        return nnx.merge(graphdef, params).step(token, state)

    logits, state = prefill(params, jnp.asarray(prompt)[None])
    key = jax.random.key(seed)
    out = []
    for _ in range(max_new_tokens):
        key, sub = jax.random.split(key)
        token = sample_token(logits, sub, temperature, top_k)
        out.append(int(token[0]))
        if out[-1] in stop_ids:
            break
        logits, state = decode(params, token, state)
    return np.asarray(out, np.int32)


def generate_text(run: LoadedRun, prompt: str, max_new_tokens: int = 200, **kw) -> str:
    """Text continuation of ``prompt`` in the layout the model was trained on ([BG] + text)."""
    tok = run.tokenizer
    ids = np.concatenate([[tok.special.bg], tok.encode(prompt)]).astype(np.int32)
    new = generate_tokens(run.model, ids, max_new_tokens, stop_ids=(tok.special.eos,), **kw)
    return tok.decode(new, skip_special=True)


