"""Batched generation and log-likelihood scoring over the one state contract.

Prompt layout. A model trained on prefix-LM samples (Birdie, UL2, fixed mixtures) reads
the prompt as a *prefix* — ``prompt + [P] + [BG]``, bidirectional layers reading the prompt
both ways, [P] the paradigm token if any — and generates after BG. A model trained with plain
next-token prediction reads ``[BG] + prompt`` causally. ``prompt_as_prefix=None`` and
``paradigm="auto"`` take the format the model was trained with (``model.prompt_format``, set
by ``load_checkpoint``; see :mod:`birdie_jax.prompt_format`), else the prefix layout for
bidirectional models and the causal one otherwise, without paradigm token.

Generation prefills every prompt through the full-sequence path (returning each layer's
state), then decodes with ``model.step`` inside one jitted ``lax.scan``: constant memory
for recurrent models, a KV cache for attention. Prompts of different lengths are left-padded
with segment 0, which every mixer ignores, so each row equals its prompt alone.
"""

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from birdie_jax.data.layout import IGNORE_ID, layout_sample
from birdie_jax.errors import DataError
from birdie_jax.models import LanguageModel
from birdie_jax.models.model import check_token_ids
from birdie_jax.prompt_format import AUTO, paradigm_id, resolve_format


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How the next token is chosen.

    Attributes:
      temperature: 0 = greedy (argmax); otherwise softmax(logits / temperature).
      top_k: keep only the k most likely tokens (None: all).
      top_p: keep the smallest set of tokens whose probability reaches p (None: all).
      seed: PRNG seed of the sampling.
      stop_ids: token ids that end a row's generation (the stop token is kept).
    """

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    stop_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if not 0 <= self.temperature < float("inf"):  # also refuses NaN
            raise ValueError(f"Sampling.temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"Sampling.top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"Sampling.top_p must be in (0, 1], got {self.top_p}")


@dataclasses.dataclass
class Generation:
    """Generated ids per prompt (up to and including a stop id) and, if asked, their logits."""

    tokens: list[np.ndarray]
    logits: np.ndarray | None = None  # float32[b n v]: the distribution each token was drawn from


def sample_next(logits: jax.Array, key: jax.Array, sampling: Sampling) -> jax.Array:
    """int32[b] drawn from logits float32[b v] according to ``sampling``."""
    if sampling.temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / sampling.temperature
    if sampling.top_k is not None:
        kth = jax.lax.top_k(logits, min(sampling.top_k, logits.shape[-1]))[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if sampling.top_p is not None:
        order = jnp.argsort(-logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        # Drop a token when the tokens ranked before it already reach top_p.
        drop_sorted = (jnp.cumsum(probs, axis=-1) - probs) >= sampling.top_p
        drop = jnp.zeros_like(drop_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(drop_sorted)
        logits = jnp.where(drop, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def _default_tokenizer(tokenizer):
    if tokenizer is not None:
        return tokenizer
    from birdie_jax.tokenizer import build_tokenizer

    return build_tokenizer("byte")


def _as_ids(prompt, tokenizer) -> np.ndarray:
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else np.asarray(prompt, np.int32)
    if ids.ndim != 1:
        raise DataError(f"each prompt must be a string or a 1-D array of token ids, got shape {ids.shape}")
    return ids.astype(np.int32)


def with_paradigm(prefix: np.ndarray, paradigm: int | None) -> np.ndarray:
    """prefix [P] → [P+1] ending with the paradigm token (unchanged when None)."""
    prefix = np.asarray(prefix, np.int32)
    return prefix if paradigm is None else np.concatenate([prefix, [paradigm]]).astype(np.int32)


def prefix_part(prompt: np.ndarray, max_prefix: int | None, read_twice: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(prefix, rest) of a prompt read as a PLA prefix (jrt.md §1.4): M = min(L, max_prefix)
    tokens, the rest causal. ``read_twice`` (Read-2×) fills a prefix shorter than ``max_prefix``
    by repeating the prompt: copies of it, the last one whole, cut to ``max_prefix`` tokens."""
    prompt = np.asarray(prompt, np.int32)
    if max_prefix is None:
        return prompt, prompt[:0]
    if read_twice and 0 < len(prompt) < max_prefix:
        copies = -(-max_prefix // len(prompt))
        return np.tile(prompt, copies)[-max_prefix:], prompt[:0]
    return prompt[:max_prefix], prompt[max_prefix:]


def prompt_layout(prompt: np.ndarray, bg_id: int, as_prefix: bool, paradigm: int | None = None, *,
                  max_prefix: int | None = None, read_twice: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(tokens int32[t], prefix_mask bool[t]) that put a model at the start of its answer:
    ``prompt + [P] + [BG]`` (prefix) or ``[P] + [BG] + prompt`` (causal, as an NTP sample
    with a paradigm token); [P] only when ``paradigm`` is an id. A PLA model's prefix is
    capped at ``max_prefix`` tokens (``prefix + [P] + [BG] + rest``; see :func:`prefix_part`)."""
    if as_prefix:
        head, rest = prefix_part(prompt, max_prefix, read_twice)
        sample = layout_sample(with_paradigm(head, paradigm), np.append(rest, 0).astype(np.int32), bg_id=bg_id)
        return sample["inputs"], sample["region"] != 2
    head = with_paradigm(np.zeros(0, np.int32), paradigm)
    tokens = np.concatenate([head, [bg_id], prompt]).astype(np.int32)
    return tokens, np.arange(len(tokens)) < len(head)


def left_pad(rows: Sequence[np.ndarray], masks: Sequence[np.ndarray], pad_id: int, length: int | None = None):
    """Left-pads rows to one length: (tokens [b t], segment_ids [b t] with 0 on padding, prefix_mask)."""
    length = length or max(len(r) for r in rows)
    tokens = np.full((len(rows), length), pad_id, np.int32)
    segments = np.zeros((len(rows), length), np.int32)
    prefix = np.zeros((len(rows), length), bool)
    for i, (row, mask) in enumerate(zip(rows, masks)):
        tokens[i, length - len(row):] = row
        segments[i, length - len(row):] = 1
        prefix[i, length - len(row):] = mask
    return tokens, segments, prefix


def prefix_cap(model: LanguageModel) -> int | None:
    """The longest prompt prefix the model reads: ``max_prefix_len`` for PLA models, else no cap."""
    return model.cfg.max_prefix_len if model.cfg.uses_mixer("pla") else None


def _bucket(n: int, multiple: int = 64) -> int:
    """Rounds a length up so that similar prompts share one compiled function."""
    return -(-n // multiple) * multiple


def generate(model: LanguageModel, prompts: Sequence, max_new_tokens: int, sampling: Sampling | None = None, *,
             tokenizer=None, prompt_as_prefix: bool | None = None, paradigm: str | None = AUTO,
             return_logits: bool = False, read_twice: bool = False) -> Generation:
    """Continues a batch of prompts (strings or token-id arrays) of any lengths.

    Args:
      model: a :class:`LanguageModel`.
      prompts: strings (encoded with ``tokenizer``) or 1-D int arrays.
      max_new_tokens: decoding steps.
      sampling: greedy by default; the tokenizer's EOS is added to the stop ids.
      tokenizer: supplies BG/PAD/EOS ids and encodes strings (default: the byte tokenizer).
      prompt_as_prefix: prompt + [BG] (prefix LM) or [BG] + prompt (causal LM); None: as trained.
      paradigm: paradigm token name (``plm``, ``copy``, ..., ``s``), None for none, ``"auto"``:
        as trained (see :mod:`birdie_jax.prompt_format`).
      return_logits: also return the logits each token was drawn from.
      read_twice: PLA models: fill a prompt shorter than ``max_prefix_len`` by repeating it
        (Read-2×, jrt.md §1.4). A PLA model's prefix is the prompt's first
        M = min(L, ``max_prefix_len``) tokens; decoding then keeps a constant-size state.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not len(prompts):
        raise ValueError("generate needs at least one prompt")
    tokenizer = _default_tokenizer(tokenizer)
    sampling = sampling or Sampling()
    special = tokenizer.special
    sampling = dataclasses.replace(sampling, stop_ids=tuple(sorted({*sampling.stop_ids, special.eos})))
    fmt = resolve_format(model, prompt_as_prefix, paradigm)
    token = paradigm_id(fmt.paradigm, special)
    laid_out = [prompt_layout(_as_ids(p, tokenizer), special.bg, fmt.as_prefix, token, max_prefix=prefix_cap(model),
                              read_twice=read_twice) for p in prompts]
    for i, (row, _) in enumerate(laid_out):
        check_token_ids(row, model.cfg.vocab_size, f"prompt {i}")
    # At least one pad before every prompt, so each starts a segment: prefill continues a zero
    # state, and a layer that treats a document's first token specially must see it as one.
    tokens, segments, prefix = left_pad([r for r, _ in laid_out], [m for _, m in laid_out], special.pad,
                                        _bucket(max(len(r) for r, _ in laid_out) + 1))
    graphdef, params = nnx.split(model)
    logits, state = prefill(graphdef, params, jnp.asarray(tokens), jnp.asarray(segments), jnp.asarray(prefix),
                            cache_len=tokens.shape[1] + max_new_tokens)
    out_tokens, out_logits, _ = decode(graphdef, params, logits, state, jax.random.key(sampling.seed),
                                       max_new_tokens, sampling, special.pad, return_logits)
    out_tokens = np.asarray(out_tokens)
    rows = []
    for row in out_tokens:
        stops = np.flatnonzero(np.isin(row, sampling.stop_ids))
        rows.append(row[: stops[0] + 1] if len(stops) else row)
    return Generation(rows, np.asarray(out_logits) if return_logits else None)


@functools.partial(jax.jit, static_argnums=0, static_argnames="cache_len")
def prefill(graphdef, params, tokens, segments, prefix, *, cache_len: int):
    """Runs prompts [b t] through the full-sequence path: (last logits [b v], state).

    Attention caches are sized ``cache_len``; recurrent states have a fixed size.
    """
    model = nnx.merge(graphdef, params)
    state = model.init_state(tokens.shape[0], cache_len)
    logits, state = model(tokens, segments, prefix, state=state, return_state=True)
    return logits[:, -1], state


@functools.partial(jax.jit, static_argnums=(0, 5, 6, 7, 8), donate_argnums=3)
def decode(graphdef, params, logits, state, key, num_tokens: int, sampling: Sampling, pad_id: int,
           return_logits: bool):
    """``num_tokens`` decoding steps in one ``lax.scan``; rows stop at a stop id (then emit pad).

    Returns (tokens int32[b n], logits float32[b n v] or [b n 0], final state).
    """
    model = nnx.merge(graphdef, params)
    batch = logits.shape[0]
    stop_ids = jnp.asarray(sampling.stop_ids, jnp.int32)

    def decode_one(carry, _):
        logits, state, key, done = carry
        key, sub = jax.random.split(key)
        token = jnp.where(done, pad_id, sample_next(logits, sub, sampling))
        done = done | jnp.isin(token, stop_ids)
        next_logits, state = model.step(token, state)
        return (next_logits, state, key, done), (token, logits if return_logits else jnp.zeros((batch, 0)))

    carry = (logits, state, key, jnp.zeros((batch,), bool))
    (_, state, _, _), (out_tokens, out_logits) = jax.lax.scan(decode_one, carry, None, length=num_tokens)
    return out_tokens.T, jnp.swapaxes(out_logits, 0, 1), state


@dataclasses.dataclass
class Scores:
    """Log-likelihood of each continuation: total, per token, its token count, and how many
    of its tokens are the model's argmax (``greedy``: all of them)."""

    sum_logprob: np.ndarray
    mean_logprob: np.ndarray
    num_tokens: np.ndarray
    num_correct: np.ndarray | None = None

    @property
    def greedy(self) -> np.ndarray:
        """bool[n]: greedy decoding would produce the whole continuation."""
        return self.num_correct == self.num_tokens


def score(model: LanguageModel, contexts: Sequence, continuations: Sequence, *, tokenizer=None,
          prompt_as_prefix: bool | None = None, paradigm: str | None = AUTO, masks: Sequence | None = None,
          batch_size: int = 16, read_twice: bool = False) -> Scores:
    """log p(continuation | context) for each pair, batched (multiple-choice evaluation).

    The context is laid out as a generation prompt would be (context + [P] + [BG], or
    [P] + [BG] + context; see :func:`generate` for ``prompt_as_prefix`` and ``paradigm``) and
    only continuation tokens are scored — with ``masks`` (bool per continuation token), only
    the masked ones (the rest are read, teacher-forced, but not scored). A PLA model reads the
    context as :func:`generate` does (prefix cap, ``read_twice``).
    """
    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
    if masks is not None and len(masks) != len(continuations):
        raise ValueError(f"{len(masks)} masks but {len(continuations)} continuations")
    tokenizer = _default_tokenizer(tokenizer)
    fmt = resolve_format(model, prompt_as_prefix, paradigm)
    token = paradigm_id(fmt.paradigm, tokenizer.special)
    bg = tokenizer.special.bg
    rows = []
    for i, (context, continuation) in enumerate(zip(contexts, continuations)):
        context, continuation = _as_ids(context, tokenizer), _as_ids(continuation, tokenizer)
        if len(continuation) == 0:
            raise DataError(f"continuation {i} is empty")
        if fmt.as_prefix:
            head, rest = prefix_part(context, prefix_cap(model), read_twice)
            sample = layout_sample(with_paradigm(head, token), np.concatenate([rest, continuation]), bg_id=bg)
            sample["targets"][len(sample["targets"]) - len(continuation) - len(rest):][:len(rest)] = IGNORE_ID
        else:
            head = with_paradigm(np.zeros(0, np.int32), token)
            sample = layout_sample(head, np.concatenate([context, continuation]), bg_id=bg)
            sample["targets"][len(head): len(head) + len(context)] = IGNORE_ID
        if masks is not None:
            mask = np.asarray(masks[i], bool)
            if mask.shape != continuation.shape or not mask.any():
                raise DataError(f"mask {i} must be bool[{len(continuation)}] with at least one True, "
                                f"got shape {mask.shape}")
            sample["targets"][len(sample["targets"]) - len(continuation):][~mask] = IGNORE_ID
        check_token_ids(sample["inputs"], model.cfg.vocab_size, f"context/continuation {i}")
        rows.append(sample)
    graphdef, params = nnx.split(model)
    totals, counts, corrects = [], [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        length = _bucket(max(len(r["inputs"]) for r in chunk))
        tokens = np.full((len(chunk), length), tokenizer.special.pad, np.int32)
        targets = np.full((len(chunk), length), IGNORE_ID, np.int32)
        segments = np.zeros((len(chunk), length), np.int32)
        prefix = np.zeros((len(chunk), length), bool)
        for i, r in enumerate(chunk):
            n = len(r["inputs"])
            tokens[i, :n], targets[i, :n], segments[i, :n], prefix[i, :n] = r["inputs"], r["targets"], 1, r["region"] != 2
        total, count, correct = _score_jit(graphdef, params, *map(jnp.asarray, (tokens, segments, prefix, targets)))
        totals.append(np.asarray(total))
        counts.append(np.asarray(count))
        corrects.append(np.asarray(correct))
    total, count = np.concatenate(totals), np.concatenate(counts)
    return Scores(total, total / np.maximum(count, 1), count, np.concatenate(corrects))


@functools.partial(jax.jit, static_argnums=0)
def _score_jit(graphdef, params, tokens, segments, prefix, targets):
    logits = nnx.merge(graphdef, params)(tokens, segments, prefix)
    logprobs = jax.nn.log_softmax(logits, axis=-1)
    mask = targets != IGNORE_ID
    picked = jnp.take_along_axis(logprobs, jnp.where(mask, targets, 0)[..., None], axis=-1)[..., 0]
    correct = (jnp.argmax(logits, axis=-1) == targets) & mask
    return jnp.where(mask, picked, 0.0).sum(-1), mask.sum(-1), correct.sum(-1)
