"""The language model in PyTorch, loaded from a birdie_jax safetensors folder."""

import json
import os

import torch
from torch import nn

from birdie_jax_torch.layers import Dense, Params, RMSNorm, gelu
from birdie_jax_torch.mixers import MIXERS

FORMAT = "birdie_jax"


class GatedMLP(nn.Module):
    """W_down(GeLU(W_gate x) ⊙ W_up x)."""

    def __init__(self, p: Params):
        super().__init__()
        self.gate, self.up, self.down = Dense(p.sub("gate")), Dense(p.sub("up")), Dense(p.sub("down"))

    def forward(self, x):
        return self.down(gelu(self.gate(x)) * self.up(x))


class SwiGLUMLP(nn.Module):
    """fc2(SiLU(gate) ⊙ y), (y, gate) the halves of fc1(x)."""

    def __init__(self, p: Params):
        super().__init__()
        self.fc1, self.fc2 = Dense(p.sub("fc1")), Dense(p.sub("fc2"))

    def forward(self, x):
        y, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(nn.functional.silu(gate) * y)


class Block(nn.Module):
    def __init__(self, p: Params, cfg: dict, mixer: str, has_mlp: bool, bidirectional: bool):
        super().__init__()
        if mixer not in MIXERS:
            raise ValueError(f"layer mixer {mixer!r} has no PyTorch module here (available: {', '.join(MIXERS)})")
        eps = cfg["norm_eps"]
        self.mixer_norm = RMSNorm(p.sub("mixer_norm"), eps)
        self.mixer = MIXERS[mixer](p.sub("mixer"), cfg, bidirectional)
        self.mlp_norm = RMSNorm(p.sub("mlp_norm"), eps) if has_mlp else None
        self.mlp = (SwiGLUMLP if cfg.get("mlp") == "swiglu" else GatedMLP)(p.sub("mlp")) if has_mlp else None

    def forward(self, x, segment_ids, prefix_mask):
        x = x + self.mixer(self.mixer_norm(x), segment_ids, prefix_mask)
        return x if self.mlp is None else x + self.mlp(self.mlp_norm(x))


class LanguageModel(nn.Module):
    """Embedding, blocks, final norm, head: ``model(tokens, segment_ids, prefix_mask)`` → logits [b t v]."""

    def __init__(self, tensors: dict[str, torch.Tensor], config: dict):
        super().__init__()
        cfg = {**config["model"], **config["derived"]}
        self.cfg, self.tokenizer = cfg, config.get("tokenizer", {})
        p = Params(tensors)
        self.embedding = nn.Parameter(p["embed.embedding"].float().clone(), requires_grad=False)
        self.blocks = nn.ModuleList([Block(p.sub(f"blocks.{i}"), cfg, *layer) for i, layer in enumerate(zip(
            cfg["layer_mixers"], cfg["layer_mlps"], cfg["bidirectional_layers"]))])
        self.final_norm = RMSNorm(p.sub("final_norm"), cfg["norm_eps"])
        self.head = None if cfg["tie_embeddings"] else Dense(p.sub("head"))

    def forward(self, tokens: torch.Tensor, segment_ids: torch.Tensor | None = None,
                prefix_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens int[b t]; segment_ids int[b t] (0 = padding, None = one document); prefix_mask
        bool[b t] (prompt prefixes that bidirectional layers read both ways)."""
        if segment_ids is None:
            segment_ids = torch.ones_like(tokens)
        x = self.embedding[tokens]
        if self.cfg["embedding_scale"] is not None:
            x = x * self.cfg["embedding_scale"]
        for block in self.blocks:
            x = block(x, segment_ids, prefix_mask)
        x = self.final_norm(x)
        logits = x @ self.embedding.T if self.head is None else self.head(x)
        cap = self.cfg["logit_soft_cap"]
        return logits if cap is None else torch.tanh(logits / cap) * cap

    @torch.no_grad()
    def generate(self, prompt: list[int], max_new_tokens: int, *, as_prefix: bool = True,
                 stop_ids: tuple[int, ...] | None = None) -> list[int]:
        """Greedy continuation of one prompt: ``prompt + [BG]`` read as a prefix (prefix LM), or
        ``[BG] + prompt`` read causally; stops after EOS (or ``stop_ids``)."""
        special = self.tokenizer["special_ids"]
        bg = special["[BG]"]
        stop_ids = (special["[EOS]"],) if stop_ids is None else stop_ids
        tokens = list(prompt) + [bg] if as_prefix else [bg] + list(prompt)
        prefix = [True] * len(prompt) + [False] if as_prefix else [False] * len(tokens)
        out = []
        for _ in range(max_new_tokens):
            logits = self(torch.tensor([tokens]), None, torch.tensor([prefix]))
            token = int(logits[0, -1].argmax())
            out.append(token)
            if token in stop_ids:
                break
            tokens.append(token)
            prefix.append(False)
        return out


def from_safetensors(folder: str) -> LanguageModel:
    """The model of a folder written by ``birdie-jax export --format safetensors``."""
    from safetensors.torch import load_file

    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder} has no config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    if config.get("format") != FORMAT:
        raise ValueError(f"{path} was not written by birdie-jax export --format safetensors")
    return LanguageModel(load_file(os.path.join(folder, "model.safetensors")), config).eval()
