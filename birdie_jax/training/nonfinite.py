"""What the loop does with a step whose loss or gradient norm is NaN or infinite.

The train step already refused to apply such a step (parameters and optimizer state are
kept, see :func:`birdie_jax.training.step.keep_if_not_finite`); this is the host side,
reading the step's metrics one step late like every other metric, so it costs no extra
device round trip. The check runs before a checkpoint of that step could be written.
"""

import math
from typing import Any

from birdie_jax.errors import BirdieError


class NonFiniteGuard:
    """``policy`` ``stop`` raises naming the step and the quantity; ``skip`` counts the step."""

    def __init__(self, policy: str, skipped: int = 0):
        self.policy = policy
        self.skipped = int(skipped)

    def check(self, step: int, metrics: dict[str, Any]) -> str | None:
        """None for a finite step; for a skipped one, a description (``loss nan``)."""
        bad = [f"{name} {float(metrics[name])}" for name in ("loss", "grad_norm")
               if name in metrics and not math.isfinite(float(metrics[name]))]
        if not bad:
            return None
        what = " and ".join(bad)
        if self.policy == "stop":
            quantity = " and ".join(b.replace("grad_norm", "gradient norm") for b in bad)
            raise BirdieError(f"step {step}: {quantity} is not finite; the step was not applied and not "
                              "checkpointed (the last checkpoint is still the latest). Lower train.learning_rate, "
                              "check the data, or set train.on_nonfinite=skip to skip such batches")
        self.skipped += 1
        return what
