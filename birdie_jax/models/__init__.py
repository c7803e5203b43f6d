"""Models: the three architectures behind one language-model class and one state contract."""

from birdie_jax.models.model import LanguageModel, count_parameters, state_size

__all__ = ["LanguageModel", "build_model", "count_parameters", "state_size"]


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
