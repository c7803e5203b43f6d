"""lm-evaluation-harness adapter: a ``lm_eval.api.model.LM`` over a birdie_jax run folder.

Importing this module registers the model as ``birdie_jax``::

    import birdie_jax.evals.lm_eval  # noqa: F401  (registers "birdie_jax")
    import lm_eval
    lm_eval.simple_evaluate(model="birdie_jax", model_args="checkpoint=runs/default", tasks=["arc_easy"])

From the shell, ``birdie-jax-lm-eval`` is lm-eval's own command line with the model
registered: ``birdie-jax-lm-eval --model birdie_jax --model_args checkpoint=RUN --tasks ...``
(``lm_eval`` itself does not discover models of other packages). Needs the ``lm-eval`` extra.

Model arguments: ``checkpoint`` (run folder), ``step``, ``batch_size``, ``layout``
(``trained``/``prefix``/``causal``), ``paradigm`` (``auto``/``none``/a name),
``max_gen_toks`` (default 256). Every request goes through ``birdie_jax.score`` /
``birdie_jax.generate`` in the run's training prompt format.
"""

from __future__ import annotations

import numpy as np
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from birdie_jax.evals.evaluator import Evaluator, has_attention

LAYOUTS = {"trained": None, "prefix": True, "causal": False}


@register_model("birdie_jax")
class BirdieLM(LM):
    """loglikelihood, loglikelihood_rolling and generate_until over a loaded run."""

    def __init__(self, checkpoint: str, step: int | None = None, batch_size: int | str = 8, layout: str = "trained",
                 paradigm: str = "auto", max_gen_toks: int = 256, **_ignored):
        from birdie_jax.errors import DataError  # noqa: PLC0415
        from birdie_jax.inference import load_checkpoint  # noqa: PLC0415

        super().__init__()
        if layout not in LAYOUTS:
            raise DataError(f"lm-eval model_args layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        run = load_checkpoint(str(checkpoint), None if step in (None, "") else int(step))
        size = 8 if batch_size in (None, "auto") or str(batch_size).startswith("auto") else int(batch_size)
        self.evaluator = Evaluator(run.model, run.tokenizer, prompt_as_prefix=LAYOUTS[layout], paradigm=paradigm,
                                   batch_size=size, progress=False)
        self.max_gen_toks = int(max_gen_toks)

    @property
    def tokenizer_name(self) -> str:
        return "birdie_jax"

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        if not requests:
            return []
        contexts, continuations = zip(*[r.args for r in requests])
        scores = self.evaluator.loglik(list(contexts), list(continuations), desc="loglikelihood")
        return [(float(s), bool(g)) for s, g in zip(scores.sum_logprob, scores.greedy)]

    def loglikelihood_rolling(self, requests) -> list[float]:
        """log p(text) from the start token; attention models longer than ``max_len`` are scored
        in windows, each with as much preceding text as fits as context."""
        out = []
        for request in requests:
            ids = self.evaluator.encode(request.args[0])
            if len(ids) == 0:
                out.append(0.0)
                continue
            pieces = self._windows(ids)
            scores = self.evaluator.loglik([c for c, _ in pieces], [p for _, p in pieces], desc="rolling")
            out.append(float(scores.sum_logprob.sum()))
        return out

    def _windows(self, ids: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        model = self.evaluator.model
        if not has_attention(model) or len(ids) + 2 <= model.cfg.max_len:
            return [(ids[:0], ids)]
        width = (model.cfg.max_len - 2) // 2
        return [(ids[max(0, start - width):start], ids[start:start + width]) for start in range(0, len(ids), width)]

    def generate_until(self, requests) -> list[str]:
        """Greedy continuations cut at the first ``until`` string (default: none), grouped by length."""
        results: list[str | None] = [None] * len(requests)
        groups: dict[int, list[int]] = {}
        for i, request in enumerate(requests):
            kwargs = request.args[1] or {}
            groups.setdefault(int(kwargs.get("max_gen_toks", self.max_gen_toks)), []).append(i)
        for max_new, indices in groups.items():
            texts = self.evaluator.complete([requests[i].args[0] for i in indices], max_new, stop_at_newline=False,
                                            desc="generate_until")
            for i, text in zip(indices, texts):
                until = (requests[i].args[1] or {}).get("until") or []
                until = [until] if isinstance(until, str) else until
                cuts = [text.index(u) for u in until if u and u in text]
                results[i] = text[:min(cuts)] if cuts else text
        return results


def main() -> int:
    """``birdie-jax-lm-eval``: lm-eval's command line with the ``birdie_jax`` model registered
    (a problem with the run folder or model arguments: one ``error:`` line, exit status 2)."""
    import sys  # noqa: PLC0415

    from lm_eval.__main__ import cli_evaluate  # noqa: PLC0415

    from birdie_jax.errors import BirdieError  # noqa: PLC0415

    try:
        cli_evaluate()
    except BirdieError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
