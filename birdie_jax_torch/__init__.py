"""PyTorch modules for birdie_jax models that Hugging Face lacks (Gated SSM, bidirectional
Gated SSM / Hawk, the Transformer with prefix attention) and for the rest too; loads a folder
written by ``birdie-jax export --format safetensors`` without importing JAX::

    model = birdie_jax_torch.from_safetensors("exports/run")
    logits = model(tokens, segment_ids, prefix_mask)      # [b t v]
    ids = model.generate(prompt_ids, 32)                   # greedy, prompt read as a prefix
"""

from birdie_jax_torch.model import LanguageModel, from_safetensors

__all__ = ["LanguageModel", "from_safetensors"]
