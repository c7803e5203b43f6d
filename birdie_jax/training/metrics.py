"""Where metrics go: a JSONL file, TensorBoard (TensorFlow-free, via tensorboardX), wandb,
stdout lines, and a progress bar with loss and tokens/s."""

import json
import os
import sys
import time
import warnings
from typing import Any

from tqdm.auto import tqdm


class MetricsWriter:
    """Writes one JSON object per record to ``metrics.jsonl`` and mirrors scalars elsewhere."""

    def __init__(self, run_dir: str, *, tensorboard: bool = True, wandb_project: str | None = None,
                 config: dict | None = None, resume_step: int | None = None, enabled: bool = True):
        """``resume_step``: keep the records up to this step (a resumed run) instead of starting afresh.
        ``enabled=False`` (processes other than the first) writes nothing."""
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.enabled = enabled
        self._tb = self._wandb = None
        if not enabled:
            return
        os.makedirs(run_dir, exist_ok=True)
        kept = []
        if resume_step is not None and os.path.exists(self.path):
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
        self._file = open(self.path, "w", encoding="utf-8")
        for record in kept:  # records after the checkpoint belong to the lost part of the run
            self._file.write(json.dumps(record) + "\n")
        self._tb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.path.join(run_dir, "tb"))
            except ImportError:
                warnings.warn("tensorboard logging needs `pip install birdie-jax[tb]`; skipping it", stacklevel=2)
        self._wandb = None
        if wandb_project:
            try:
                import wandb

                self._wandb = wandb.init(project=wandb_project, config=config, dir=run_dir)
            except ImportError:
                warnings.warn("wandb logging needs `pip install wandb`; skipping it", stacklevel=2)

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                if self._tb is not None:
                    self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(record, step=step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _plain(value: Any) -> Any:
    try:
        return float(value) if not isinstance(value, (str, bool, int)) else value
    except (TypeError, ValueError):
        return str(value)


def read_metrics(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Progress:
    """A progress bar showing loss and tokens/s; on a non-TTY, a plain line every ``log_every`` steps."""

    def __init__(self, total: int, initial: int, *, enabled: bool = True, log_every: int = 10):
        self.tty = enabled and sys.stderr.isatty()
        self.enabled = enabled
        self.log_every = log_every
        self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, disable=not self.tty)
        self._last_time = time.perf_counter()
        self._tokens = 0

    def update(self, step: int, loss: float, tokens: int) -> None:
        self._tokens += tokens
        now = time.perf_counter()
        rate = self._tokens / max(now - self._last_time, 1e-9)
        if self.tty:
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{rate:,.0f}")
            self.bar.update(1)
        elif self.enabled and step % self.log_every == 0:
            print(f"step {step}  loss {loss:.4f}  {rate:,.0f} tok/s", flush=True)
        if step % self.log_every == 0:
            self._last_time, self._tokens = now, 0

    def restart_clock(self) -> None:
        """Excludes evaluation and checkpoint time from the next tokens/s figure."""
        self._last_time, self._tokens = time.perf_counter(), 0

    def note(self, text: str) -> None:
        if self.tty:
            self.bar.write(text)
        elif self.enabled:
            print(text, flush=True)

    def close(self) -> None:
        self.bar.close()
