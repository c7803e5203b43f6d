"""Models: the three architectures behind one language-model class and one state contract."""

from birdie_jax.models.model import LanguageModel, count_parameters, state_size

__all__ = ["LanguageModel", "build_model", "config_state_size", "count_parameters", "state_size"]


def build_model(cfg, seed: int = 0, *, vocab_size: int | None = None) -> LanguageModel:
    """Builds a model from a :class:`~birdie_jax.config.Config` or :class:`ModelConfig`.

    The vocabulary comes from ``model.vocab_size`` if set, else from ``vocab_size``, else from
    the config's tokenizer (rounded up to a multiple of 128).
    """
    import dataclasses

    from flax import nnx

    from birdie_jax.config import Config

    model_cfg = cfg.model if isinstance(cfg, Config) else cfg
    if model_cfg.vocab_size is None:
        if vocab_size is None:
            from birdie_jax.tokenizer import build_tokenizer

            data = cfg.data if isinstance(cfg, Config) else None
            tok = build_tokenizer(data.tokenizer if data else "byte", num_sentinels=data.num_sentinels if data else 100)
            vocab_size = tok.vocab_size
        model_cfg = dataclasses.replace(model_cfg, vocab_size=vocab_size)
    return LanguageModel(model_cfg, rngs=nnx.Rngs(params=seed))


def config_state_size(cfg, cache_len: int | None = None) -> int:
    """Floats in one sequence's decoding state for a config, without allocating parameters.

    The sum over layers of the mixer state shapes (:func:`state_size` on an abstract model):
    e.g. linear attention H·F·P + H·F (F = 1 + f + f² Taylor features), Hawk's recurrence plus
    its conv window, Mamba-2's H·P·N SSM state plus its conv window, a gated convolution's
    (w−1)·2d window, attention's keys and values for ``cache_len`` tokens (2·cache_len·H·P).
    ``cfg`` is a :class:`~birdie_jax.config.Config` or :class:`~birdie_jax.config.ModelConfig`.
    """
    from flax import nnx

    return state_size(nnx.eval_shape(lambda: build_model(cfg)), cache_len=cache_len)
