"""The one way every task talks to a model: greedy completion and scoring through
``birdie_jax.generate`` / ``birdie_jax.score``, in the prompt format the model was trained
with unless told otherwise, in batches, with a progress bar.

Works for any :class:`~birdie_jax.models.LanguageModel` (every architecture, causal or
bidirectional, loaded from a run folder or built in memory): the tasks never look inside.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from birdie_jax.errors import DataError
from birdie_jax.generation import Sampling, Scores, generate, score
from birdie_jax.prompt_format import AUTO, resolve_format


def has_attention(model) -> bool:
    """Whether some layer keeps a KV cache (its context is bounded by ``model.max_len``)."""
    from birdie_jax.models.attention import Attention  # noqa: PLC0415

    return any(isinstance(block.mixer, Attention) for block in model.layer_blocks())


@dataclasses.dataclass
class Evaluator:
    """A model, its tokenizer, and how prompts are laid out (None/"auto": as trained)."""

    model: object
    tokenizer: object
    prompt_as_prefix: bool | None = None
    paradigm: str | None = AUTO
    batch_size: int = 8
    progress: bool = True

    @property
    def format(self):
        return resolve_format(self.model, self.prompt_as_prefix, self.paradigm)

    def task_paradigm(self, objective: str) -> str | None:
        """The paradigm a task should use: ``objective``'s own token (e.g. ``copy``) when the
        model was trained with class paradigm tokens and no paradigm was asked for explicitly."""
        if self.paradigm == AUTO and self.format.paradigm == "plm":
            return objective
        return self.paradigm

    def encode(self, text) -> np.ndarray:
        return self.tokenizer.encode(text) if isinstance(text, str) else np.asarray(text, np.int32)

    def check_fits(self, length: int, what: str) -> None:
        """DataError when an attention model would read more than ``model.max_len`` tokens."""
        limit = self.model.cfg.max_len
        if has_attention(self.model) and length > limit:
            raise DataError(f"{what}: {length} tokens exceed the model's maximum context (model.max_len={limit}) "
                            "for an attention model; use a shorter task size or model.rope_scaling with a larger "
                            "max_len")

    def _bar(self, total: int, desc: str):
        return tqdm(total=total, desc=desc, unit="ex", disable=not self.progress, leave=False)

    def complete(self, prompts: Sequence, max_new_tokens: int, *, stop_at_newline: bool = True,
                 desc: str = "generate") -> list[str]:
        """Greedy continuations as text (specials dropped), each cut at its first newline when asked."""
        ids = [self.encode(p) for p in prompts]
        self.check_fits(max(len(i) for i in ids) + 3 + max_new_tokens, desc)
        stops = newline_ids(self.tokenizer) if stop_at_newline else ()
        sampling = Sampling(stop_ids=stops)
        texts = []
        with self._bar(len(ids), desc) as bar:
            for start in range(0, len(ids), self.batch_size):
                chunk, real = self._full_batch(ids, start)
                out = generate(self.model, chunk, max_new_tokens, sampling, tokenizer=self.tokenizer,
                               prompt_as_prefix=self.prompt_as_prefix, paradigm=self.paradigm)
                for row in out.tokens[:real]:
                    text = self.tokenizer.decode(row, skip_special=True)
                    texts.append(text.split("\n")[0] if stop_at_newline else text)
                bar.update(real)
        return texts

    def _full_batch(self, rows: list, start: int) -> tuple[list, int]:
        """rows[start:start+batch_size], a short last chunk filled up with copies of its last row
        (one batch shape per task: one compilation); and how many rows are real."""
        chunk = rows[start:start + self.batch_size]
        real = len(chunk)
        if len(rows) > self.batch_size:
            chunk = chunk + [chunk[-1]] * (self.batch_size - real)
        return chunk, real

    def loglik(self, contexts: Sequence, continuations: Sequence, masks: Sequence | None = None, *,
               desc: str = "score") -> Scores:
        """``birdie_jax.score`` in batches: log-likelihoods and greedy-match counts."""
        ctx = [self.encode(c) for c in contexts]
        cont = [self.encode(c) for c in continuations]
        self.check_fits(max(len(a) + len(b) for a, b in zip(ctx, cont)) + 2, desc)
        parts = []
        with self._bar(len(ctx), desc) as bar:
            for start in range(0, len(ctx), self.batch_size):
                contexts, real = self._full_batch(ctx, start)
                out = score(self.model, contexts, self._full_batch(cont, start)[0], tokenizer=self.tokenizer,
                            prompt_as_prefix=self.prompt_as_prefix, paradigm=self.paradigm,
                            masks=None if masks is None else self._full_batch(list(masks), start)[0],
                            batch_size=self.batch_size)
                parts.append(Scores(*(getattr(out, f.name)[:real] for f in dataclasses.fields(Scores))))
                bar.update(real)
        return Scores(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Scores)))


def newline_ids(tokenizer) -> tuple[int, ...]:
    """Token ids that stand for exactly a newline (the byte tokenizer's 10; a BPE's "\\n" piece)."""
    ids = tokenizer.encode("\n")
    return tuple(int(i) for i in ids) if len(ids) == 1 else ()
