"""Held-out evaluation: next-token validation loss, and loss per objective configuration.

Both use fixed batches built once per run (fixed seed, validation documents) and reused
at every evaluation, so changes in the measured losses come from the model alone. The
per-configuration rows of all arms are packed into shared batches and told apart by
their ``arm_ids`` tags, so one forward pass serves many arms.
"""

import numpy as np
from flax import nnx

from birdie_jax.config import Config
from birdie_jax.data.packing import padding_row
from birdie_jax.data.pipeline import make_eval_batches
from birdie_jax.objectives import Mixture, make_validation_sets
from birdie_jax.training.step import evaluate, evaluate_per_arm, make_arm_eval_step, make_eval_step


def _to_device(batch: dict[str, np.ndarray]) -> dict:
    import jax.numpy as jnp  # noqa: PLC0415

    return {k: jnp.asarray(v) for k, v in batch.items()}


def stack_arm_rows(arm_sets: dict[str, list[dict]], batch_size: int, seq_len: int, pad_id: int) -> list[dict]:
    """All arms' validation rows (padding rows dropped) regrouped into batches of ``batch_size``."""
    rows = [{k: v[i] for k, v in batch.items()} for batches in arm_sets.values() for batch in batches
            for i in range(len(batch["segment_ids"])) if batch["segment_ids"][i].any()]
    pad = padding_row(seq_len, pad_id)
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        chunk += [pad] * (batch_size - len(chunk))
        out.append({k: np.stack([np.asarray(r[k]) for r in chunk]) for k in chunk[0]})
    return out


class Validator:
    """The run's fixed validation batches and the jitted steps that evaluate them."""

    def __init__(self, cfg: Config, tokenizer, documents, mixture: Mixture, graphdef: nnx.GraphDef, place=None,
                 sample_transform=None):
        """``place`` puts a host batch on the devices (default: the default device). With a
        ``sample_transform`` (task examples, :mod:`birdie_jax.data.sources`) the validation
        batches are made by it, and there is no per-objective validation."""
        self.mixture = mixture
        _place = place or _to_device
        tcfg, dcfg = cfg.train, cfg.data
        self.ntp_batches = []
        if documents and tcfg.eval_every and tcfg.eval_batches:
            self.ntp_batches = [_place(b) for b in make_eval_batches(
                documents, tokenizer, seq_len=dcfg.seq_len, batch_size=dcfg.batch_size,
                num_batches=tcfg.eval_batches, seed=cfg.seed, sample_transform=sample_transform)]
        self.arm_batches = []
        if (documents and sample_transform is None and cfg.mixture.name not in ("clm", "jrt")
                and (tcfg.eval_every or cfg.mixture.name == "birdie")):
            sets = make_validation_sets(documents, tokenizer, mixture, seq_len=dcfg.seq_len,
                                        rows_per_arm=cfg.mixture.val_rows_per_config, seed=cfg.seed)
            self.arm_batches = [_place(b) for b in stack_arm_rows(sets, dcfg.batch_size, dcfg.seq_len,
                                                                      tokenizer.special.pad)]
        self._eval_step = make_eval_step(graphdef)
        self._arm_eval_step = make_arm_eval_step(graphdef, len(mixture.arm_names) + 1)

    def next_token(self, params: nnx.State) -> dict[str, float]:
        """``val_loss``, ``val_accuracy`` on held-out text (next-token prediction)."""
        return evaluate(self._eval_step, params, self.ntp_batches) if self.ntp_batches else {}

    def per_arm(self, params: nnx.State) -> tuple[np.ndarray, dict[str, float]]:
        """Loss per arm (arm order, float64[n]) and per-class ``val_loss/<c>``, ``val_accuracy/<c>``."""
        if not self.arm_batches:
            return np.zeros(0), {}
        names, classes = list(self.mixture.arm_names), list(self.mixture.arm_classes)
        per_arm, metrics = evaluate_per_arm(self._arm_eval_step, params, self.arm_batches, names, classes)
        return np.asarray([per_arm[n]["loss"] for n in names]), metrics
