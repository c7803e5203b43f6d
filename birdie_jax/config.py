"""Experiment configuration: frozen dataclasses loaded from YAML, with validated overrides.

A config has three sections, ``model``, ``data`` and ``train``, plus a few top-level
fields. YAML files mirror that nesting. Overrides are ``key=value`` strings whose key is
either dotted (``train.steps=100``) or a field name that is unique across sections
(``steps=100``). Unknown keys, misspellings and values of the wrong type raise
:class:`~birdie_jax.errors.ConfigError` naming the field, never a traceback from deeper code.
"""

import dataclasses
import difflib
import importlib.resources
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from birdie_jax.controller.config import ControllerConfig
from birdie_jax.distributed.mesh import MeshConfig
from birdie_jax.errors import ConfigError
from birdie_jax.kernels.linear_attention.api import IMPLEMENTATION_NAMES as LA_IMPLEMENTATIONS
from birdie_jax.kernels.linear_scan.api import IMPLEMENTATION_NAMES as SCAN_IMPLEMENTATIONS
from birdie_jax.kernels.ssd.api import IMPLEMENTATION_NAMES as SSD_IMPLEMENTATIONS

ARCHITECTURES = ("gated_ssm", "hawk", "transformer", "mamba2", "hybrid")
# Whether a single-architecture model puts an MLP after each mixer.
ARCHITECTURE_HAS_MLP = {"gated_ssm": False, "hawk": True, "transformer": True, "mamba2": False}
# Mixers a ``model.layers`` pattern may name, and those with a bidirectional (prefix) variant.
LAYER_MIXERS = ("gated_ssm", "hawk", "transformer", "mamba2", "based", "pla", "swa", "gated_conv", "gated_ssm_plus")
BIDIRECTIONAL_MIXERS = ("gated_ssm", "hawk", "transformer", "gated_ssm_plus")
MLP_KINDS = ("gelu", "swiglu")
INIT_SCHEMES = ("fan_in", "normal")
DTYPES = ("float32", "bfloat16")
BIDIRECTIONAL = ("none", "alternate", "all")
EMBED_SCALES = ("sqrt_d", "sqrt_d_bf16", "none")
#: Fields whose string "none" is one of their choices, not YAML's null (a saved config must reload as written:
#: ``model.embed_scale: none`` read back as null would become the architecture default).
NONE_IS_A_CHOICE = frozenset({"model.embed_scale"})
# model.remat: "none", "full" (save only each layer's inputs) or a jax.checkpoint_policies name.
REMAT_POLICIES = ("none", "full", "nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable")


def _check_choice(field: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{field} must be one of {', '.join(choices)}; got {value!r}")


def round_to_bfloat16(value: float) -> float:
    """``value`` as float32, then rounded to the nearest bfloat16 (ties to even), as a float."""
    import numpy as np  # noqa: PLC0415

    bits = int(np.asarray(value, np.float32).view(np.uint32))
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return float(np.asarray(bits, np.uint32).view(np.float32))


def _check_positive(field: str, value: Any) -> None:
    if value <= 0:
        raise ConfigError(f"{field} must be > 0, got {value}")


def _check_path(field: str, value: str | None) -> None:
    """A path (or name) field may be unset (None) where allowed, never empty or blank: an empty
    corpus path would otherwise read the current folder."""
    if value is not None and not value.strip():
        raise ConfigError(f"{field} is empty; give a path (or name)")



@dataclasses.dataclass(frozen=True, slots=True)
class ModelConfig:
    """Language-model shape.

    Attributes:
      architecture: ``gated_ssm`` (fused gated linear recurrence, no MLP), ``hawk``
        (RG-LRU recurrent block + gated MLP), ``transformer`` (softmax attention + MLP),
        ``mamba2`` (Mamba-2 / SSD mixer, no MLP) or ``hybrid`` (each layer named in ``layers``).
      vocab_size: token vocabulary; ``None`` takes the tokenizer's (rounded to 128).
      d_model: residual width.
      n_layers: number of residual blocks.
      state_dim: recurrence width N (Gated SSM state, Hawk RG-LRU width).
      mlp_expansion: hidden width of the gated MLP as a multiple of d_model.
      num_heads, head_dim: attention shape (transformer only).
      conv_width: short causal convolution width (Hawk).
      rglru_c: the RG-LRU constant c in log a = -c * r * softplus(Lambda).
      rope_base: RoPE base frequency.
      max_len: longest sequence the model is built for (attention cache length).
      tie_embeddings: share the embedding matrix with the output head.
      dtype: compute dtype of matmuls (recurrences always run in float32).
      param_dtype: storage dtype of parameters.
      scan_implementation: force a ``linear_scan`` implementation (None: the backend's
        default from ``DEFAULT_IMPLEMENTATIONS``; ``pallas``: the opt-in Pallas kernel).
      bidirectional: ``none``, ``alternate`` (even-indexed layers, as in Birdie) or ``all``.
        A bidirectional recurrent layer runs half its state channels in reverse over each
        sample's prefix; a bidirectional attention layer uses prefix attention.
      init_std: standard deviation of the embedding initialiser.
      mamba_expand: Mamba-2 inner width d_inner = expand · d_model.
      mamba_head_dim: Mamba-2 head width P (heads H = d_inner / P).
      mamba_d_state: Mamba-2 state size N per head.
      mamba_groups: Mamba-2 groups G sharing B and C (H must be a multiple of G).
      mamba_chunk: chunk length Q of the chunked SSD algorithm.
      layers: for ``architecture: hybrid``, the mixer of each layer: ``name`` (mixer alone) or
        ``name+mlp`` (mixer, then an MLP block), names from ``LAYER_MIXERS``. A list shorter
        than ``n_layers`` repeats: layer i uses ``layers[i % len(layers)]``.
      mlp: MLP kind: ``gelu`` (W_down(GeLU(W_gate x) ⊙ W_up x)) or ``swiglu`` (fc1 → halves
        (y, gate), fc2(SiLU(gate) ⊙ y): the second half is the gate, as in Based/JRT).
      mlp_multiple: the MLP hidden width d_model·mlp_expansion is rounded up to this multiple.
      init: ``fan_in`` (truncated normal, fan-in scaled) or ``normal`` (N(0, init_std) for
        every matrix, init_std/√(2·n_layers) for the projections back into the residual).
      embed_scale: what multiplies the embeddings: ``sqrt_d`` (√d_model), ``sqrt_d_bf16``
        (√d_model rounded to bfloat16, as Hugging Face's RecurrentGemma computes it) or
        ``none`` (true/false mean sqrt_d/none); None: ``none`` for mamba2 (as in Mamba-2), ``sqrt_d``
        otherwise (resolved when the config is built).
      logit_soft_cap: logits ← cap·tanh(logits / cap) (RecurrentGemma: 30); None: no cap.
      norm_eps: epsilon of the block and final RMSNorms (and Mamba-2's gated norm); None:
        1e-5 for mamba2 (as in Mamba-2), 1e-6 otherwise (resolved when the config is built).
      linear_bias: Hawk only: biases on the recurrent block's gate/input/output projections
        and on the MLP (as in RecurrentGemma).
      rglru_heads: Hawk only: the RG-LRU gates are block-diagonal with this many blocks
        (RecurrentGemma: one per attention head); 1 = dense gates.
      rglru_reset_multiplier: Hawk only: the input multiplier √(1−a²) is 1 at a document's
        first token (as in RecurrentGemma), so there h = i⊙u. A row that starts from a given
        state continues its document; one that starts without a state starts a document.
      la_feature_dim: f of the ``based``/``pla`` layers (Taylor features 1 + f + f²; heads
        ``num_heads``, value width ``head_dim``).
      la_chunk: chunk length of the chunked linear-attention form.
      la_implementation: force a ``linear_attention`` implementation (None: the backend's
        default from its ``DEFAULT_IMPLEMENTATIONS``; ``pallas``: the opt-in Pallas kernel).
      swa_window: tokens before the current one that ``swa`` attends to (heads ``num_heads``
        × ``head_dim``, RoPE base ``rope_base``).
      gated_conv_width: kernel width of the ``gated_conv`` short convolution.
      max_prefix_len: the longest prompt prefix PLA models read at inference (M = min(L, this)).
      rope_scaling: RoPE position interpolation factor s (positions divided by s): a Transformer
        trained at length L reads s·L tokens (set max_len to match), as Birdie extends 2k → 16k.
      ssd_implementation: force an ``ssd`` implementation for ``mamba2`` layers (None: the
        backend's default from its ``DEFAULT_IMPLEMENTATIONS``; ``pallas``: the opt-in kernel).
      n_kv_heads: ``swa`` only: key/value heads, shared by num_heads / n_kv_heads query heads
        each (1 = multi-query, as in RecurrentGemma); None: num_heads (one per query head).
      rotary_fraction: ``swa`` only: RoPE turns the first int(head_dim · fraction) channels of
        each head (half-split inside them) and leaves the rest (RecurrentGemma: 0.5).
      attention_out_bias: ``swa`` only: a bias on the output projection (as in RecurrentGemma).
      scan_layers: store the layers' parameters stacked (leading layer axis) and run them with
        one ``jax.lax.scan``, so compile time stays flat with depth. The scanned unit is the
        layer pattern's period (mixer, MLP, bidirectional: 1 for a plain model, 2 with
        ``bidirectional: alternate``); it must divide ``n_layers``. Same values as unrolled
        layers; parameters are named per layer on export (``blocks.i.``), but checkpoints hold
        the stacked layout, so a run cannot switch this on resume.
      remat: rematerialise each layer in the backward pass: ``none``, ``full`` (keep only the
        layer's input) or a ``jax.checkpoint_policies`` name (``dots_saveable`` keeps matmul
        outputs; ``dots_with_no_batch_dims_saveable``; ``nothing_saveable``). Same gradients.
    """

    architecture: str = "hawk"
    vocab_size: int | None = None
    d_model: int = 256
    n_layers: int = 4
    state_dim: int = 320
    mlp_expansion: float = 8 / 3
    num_heads: int = 4
    head_dim: int = 64
    conv_width: int = 4
    rglru_c: float = 8.0
    rope_base: float = 250_000.0
    max_len: int = 2048
    tie_embeddings: bool = True
    dtype: str = "float32"
    param_dtype: str = "float32"
    scan_implementation: str | None = None
    bidirectional: str = "none"
    init_std: float = 0.02
    mamba_expand: int = 2
    mamba_head_dim: int = 64
    mamba_d_state: int = 128
    mamba_groups: int = 1
    mamba_chunk: int = 256
    layers: tuple[str, ...] | None = None
    mlp: str = "gelu"
    mlp_multiple: int = 8
    init: str = "fan_in"
    embed_scale: str | bool | None = None
    logit_soft_cap: float | None = None
    norm_eps: float | None = None
    linear_bias: bool = False
    rglru_heads: int = 1
    rglru_reset_multiplier: bool = False
    la_feature_dim: int = 16
    la_chunk: int = 64
    la_implementation: str | None = None
    swa_window: int = 128
    gated_conv_width: int = 3
    max_prefix_len: int = 1024
    rope_scaling: float = 1.0
    ssd_implementation: str | None = None
    n_kv_heads: int | None = None
    rotary_fraction: float = 1.0
    attention_out_bias: bool = False
    scan_layers: bool = False
    remat: str = "none"

    def __post_init__(self):
        _check_choice("model.architecture", self.architecture, ARCHITECTURES)
        _check_choice("model.dtype", self.dtype, DTYPES)
        _check_choice("model.param_dtype", self.param_dtype, DTYPES)
        _check_choice("model.bidirectional", self.bidirectional, BIDIRECTIONAL)
        if self.scan_implementation is not None:
            _check_choice("model.scan_implementation", self.scan_implementation, SCAN_IMPLEMENTATIONS)
        for name in ("mamba_expand", "mamba_head_dim", "mamba_d_state", "mamba_groups", "mamba_chunk"):
            _check_positive(f"model.{name}", getattr(self, name))
        if self.architecture == "mamba2":
            self._check_mamba2_heads()
            if self.bidirectional != "none":
                raise ConfigError("model.bidirectional is not available for mamba2 (Gated SSM, Hawk, Transformer)")
        if self.bidirectional != "none" and self.architecture != "transformer" and self.state_dim % 2:
            raise ConfigError(f"model.state_dim must be even for bidirectional layers, got {self.state_dim}")
        for name in ("d_model", "n_layers", "state_dim", "num_heads", "head_dim", "conv_width", "max_len"):
            _check_positive(f"model.{name}", getattr(self, name))
        if self.vocab_size is not None:
            _check_positive("model.vocab_size", self.vocab_size)
        if self.mlp_expansion <= 0:
            raise ConfigError(f"model.mlp_expansion must be > 0, got {self.mlp_expansion}")
        if self.rope_scaling <= 0:
            raise ConfigError(f"model.rope_scaling must be > 0, got {self.rope_scaling}")
        _check_choice("model.mlp", self.mlp, MLP_KINDS)
        _check_choice("model.init", self.init, INIT_SCHEMES)
        _check_positive("model.mlp_multiple", self.mlp_multiple)
        for name in ("la_feature_dim", "la_chunk", "swa_window", "gated_conv_width", "max_prefix_len"):
            _check_positive(f"model.{name}", getattr(self, name))
        if self.la_implementation is not None:
            _check_choice("model.la_implementation", self.la_implementation, LA_IMPLEMENTATIONS)
        if self.ssd_implementation is not None:
            _check_choice("model.ssd_implementation", self.ssd_implementation, SSD_IMPLEMENTATIONS)
        self._check_layers()
        self._check_conversion_options()
        self._check_local_attention_options()
        _check_choice("model.remat", self.remat, REMAT_POLICIES)
        if self.scan_layers and self.n_layers % self.layer_period():
            kinds = ", ".join(f"{m}{'+mlp' if mlp else ''}{' (bidirectional)' if bi else ''}"
                              for m, mlp, bi in map(self.layer_kind, range(self.layer_period())))
            raise ConfigError(f"model.scan_layers=true needs a layer pattern that repeats evenly, but the pattern "
                              f"[{kinds}] ({self.layer_period()} layers) does not divide model.n_layers="
                              f"{self.n_layers}; set model.scan_layers=false or make n_layers a multiple")

    def _check_mamba2_heads(self) -> None:
        inner = self.mamba_expand * self.d_model
        if inner % self.mamba_head_dim or (inner // self.mamba_head_dim) % self.mamba_groups:
            raise ConfigError(f"mamba2: d_inner = mamba_expand·d_model = {inner} must split into heads of "
                              f"mamba_head_dim={self.mamba_head_dim}, a multiple of mamba_groups={self.mamba_groups}")

    def _check_layers(self) -> None:
        if self.architecture != "hybrid":
            if self.layers is not None:
                raise ConfigError(f"model.layers is set, so model.architecture must be hybrid "
                                  f"(got {self.architecture!r})")
            return
        if not self.layers:
            raise ConfigError("model.architecture=hybrid needs model.layers, e.g. [gated_conv+mlp, pla+mlp]")
        if len(self.layers) > self.n_layers:
            raise ConfigError(f"model.layers names {len(self.layers)} layers, more than model.n_layers="
                              f"{self.n_layers}")
        for i, entry in enumerate(self.layers):
            mixer, _, suffix = entry.partition("+")
            if mixer not in LAYER_MIXERS or suffix not in ("", "mlp"):
                close = difflib.get_close_matches(mixer, LAYER_MIXERS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"model.layers[{i}]: unknown mixer {entry!r}{hint}; use a name from "
                                  f"{', '.join(LAYER_MIXERS)}, optionally followed by +mlp")
        if "mamba2" in {self.layer_mixer(i) for i in range(self.n_layers)}:
            self._check_mamba2_heads()
        for i in range(self.n_layers):
            mixer = self.layer_mixer(i)
            if self.layer_is_bidirectional(i) and mixer not in BIDIRECTIONAL_MIXERS:
                raise ConfigError(f"model.bidirectional={self.bidirectional} makes layer {i} bidirectional, but its "
                                  f"mixer {mixer} has no bidirectional form ({', '.join(BIDIRECTIONAL_MIXERS)} do)")

    def layer_mixer(self, index: int) -> str:
        """The mixer of layer ``index`` (the architecture, or its ``layers`` entry)."""
        if self.layers is None:
            return self.architecture
        return self.layers[index % len(self.layers)].partition("+")[0]

    def layer_has_mlp(self, index: int) -> bool:
        """Whether layer ``index`` has an MLP block after its mixer."""
        if self.layers is None:
            return ARCHITECTURE_HAS_MLP[self.architecture]
        return self.layers[index % len(self.layers)].endswith("+mlp")

    def layer_kind(self, index: int) -> tuple[str, bool, bool]:
        """(mixer, has MLP, bidirectional) of layer ``index``: layers of one kind share a structure."""
        return self.layer_mixer(index), self.layer_has_mlp(index), self.layer_is_bidirectional(index)

    def layer_period(self) -> int:
        """The smallest p with layer i of the same kind as layer i − p for every i (``scan_layers``
        scans groups of p layers); n_layers when the pattern does not repeat."""
        kinds = [self.layer_kind(i) for i in range(self.n_layers)]
        return next(p for p in range(1, self.n_layers + 1)
                    if all(kinds[i] == kinds[i - p] for i in range(p, self.n_layers)))

    def uses_mixer(self, name: str) -> bool:
        """Whether any layer's mixer is ``name`` (e.g. ``pla``: the model reads prompts as prefixes)."""
        return any(self.layer_mixer(i) == name for i in range(self.n_layers))

    def _check_conversion_options(self) -> None:
        """The options that make a model compute what another framework's model does; resolves
        ``embed_scale`` and ``norm_eps`` left at None to the architecture's defaults."""
        scale = self.embed_scale
        if scale is None:
            scale = "none" if self.architecture == "mamba2" else "sqrt_d"
        elif isinstance(scale, bool):
            scale = "sqrt_d" if scale else "none"
        _check_choice("model.embed_scale", scale, EMBED_SCALES)
        object.__setattr__(self, "embed_scale", scale)
        if self.norm_eps is None:
            object.__setattr__(self, "norm_eps", 1e-5 if self.architecture == "mamba2" else 1e-6)
        _check_positive("model.norm_eps", self.norm_eps)
        if self.logit_soft_cap is not None:
            _check_positive("model.logit_soft_cap", self.logit_soft_cap)
        _check_positive("model.rglru_heads", self.rglru_heads)
        if self.state_dim % self.rglru_heads:
            raise ConfigError(f"model.rglru_heads={self.rglru_heads} must divide model.state_dim={self.state_dim}")
        hawk_only = {"linear_bias": self.linear_bias, "rglru_heads": self.rglru_heads != 1,
                     "rglru_reset_multiplier": self.rglru_reset_multiplier}
        used = [f"model.{k}" for k, v in hawk_only.items() if v]
        if used and not self.uses_mixer("hawk"):
            raise ConfigError(f"{', '.join(used)} only apply to hawk layers; this {self.architecture} model has none")

    def _check_local_attention_options(self) -> None:
        """The ``swa`` options that RecurrentGemma's local multi-query attention needs."""
        if self.n_kv_heads is not None:
            _check_positive("model.n_kv_heads", self.n_kv_heads)
            if self.num_heads % self.n_kv_heads:
                raise ConfigError(f"model.n_kv_heads={self.n_kv_heads} must divide model.num_heads={self.num_heads}")
        if not 0 < self.rotary_fraction <= 1:
            raise ConfigError(f"model.rotary_fraction must be in (0, 1], got {self.rotary_fraction}")
        if self.rotary_fraction != 1.0 and (self.rotary_dim == 0 or self.rotary_dim % 2):
            raise ConfigError(f"model.rotary_fraction={self.rotary_fraction} turns int(head_dim·fraction) = "
                              f"{self.rotary_dim} channels of model.head_dim={self.head_dim}; it must be even and > 0")
        swa_only = {"n_kv_heads": self.n_kv_heads is not None, "rotary_fraction": self.rotary_fraction != 1.0,
                    "attention_out_bias": self.attention_out_bias}
        used = [f"model.{k}" for k, v in swa_only.items() if v]
        if used and not self.uses_mixer("swa"):
            raise ConfigError(f"{', '.join(used)} only apply to swa layers; this {self.architecture} model has none")

    @property
    def kv_heads(self) -> int:
        """Key/value heads of ``swa`` layers (``n_kv_heads``, else ``num_heads``)."""
        return self.num_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def rotary_dim(self) -> int:
        """Channels of each ``swa`` head that RoPE turns: int(head_dim · rotary_fraction)."""
        return int(self.head_dim * self.rotary_fraction)

    @property
    def embedding_scale(self) -> float | None:
        """The factor that multiplies the embeddings (None: no scaling)."""
        if self.embed_scale == "none":
            return None
        if self.embed_scale == "sqrt_d_bf16":
            return round_to_bfloat16(self.d_model**0.5)
        return self.d_model**0.5

    def layer_is_bidirectional(self, index: int) -> bool:
        """Whether layer ``index`` reads prefixes both ways (Birdie: even-indexed layers)."""
        return self.bidirectional == "all" or (self.bidirectional == "alternate" and index % 2 == 0)

    @property
    def mlp_hidden(self) -> int:
        """MLP hidden width d_model·mlp_expansion, rounded up to a multiple of ``mlp_multiple``."""
        return -(-int(round(self.d_model * self.mlp_expansion)) // self.mlp_multiple) * self.mlp_multiple


PACKINGS = ("document", "stream")
CARRY_FALLBACKS = ("previous", "zero")


@dataclasses.dataclass(frozen=True, slots=True)
class DataConfig:
    """Where text comes from and how it becomes batches.

    Attributes:
      corpus: ``builtin`` (Python's pydoc topics, no download), a text/JSONL file or a folder,
        ``mix`` (built-in text and generated recall documents, ``data.mix``), ``markov``,
        or a generated recall task: ``mqar``, ``phonebook``, ``set_disjointness`` (sizes in
        the ``generated`` section; loss only where the task puts labels).
      format: ``auto``, ``text``, ``jsonl``, ``dir``, or ``pairs``: prompt/answer pairs (a JSONL
        file of ``{"prompt", "answer"}``, or a generated task) trained with the prompt as the
        prefix and loss on the answer only.
      text_field: JSONL field holding the text.
      tokenizer: ``byte`` or a path to a ``tokenizers`` JSON / SentencePiece model file.
      num_sentinels: size of the reserved sentinel pool.
      seq_len: packed row length.
      batch_size: global batch size in rows.
      validation_fraction: share of documents held out for evaluation.
      num_workers: Grain prefetch processes (0: in-process).
      shuffle: shuffle documents every epoch.
      packing: ``document`` (samples packed per document, reset at each document start: the
        default, needed by prefix objectives) or ``stream`` (rows are contiguous seq_len-token
        chunks of one EOS-joined document stream, no reset inside a row: the setting of
        arXiv 2507.02782, next-token prediction only; see :mod:`birdie_jax.data.stream_rows`).
      markov_order, markov_symbols, markov_topics, markov_concentration, markov_documents,
        markov_doc_len, markov_seed: the ``corpus: markov`` source (see :mod:`birdie_jax.data.markov`).
      process_split: how several processes share the data: ``documents`` (each reads its
        own slice of the documents and packs only its rows: the least work) or ``rows``
        (each packs the whole global batch and keeps its rows: the same batches whatever
        the number of processes, at that many times the data-pipeline work).
      mix: ``corpus: mix``: source name (``builtin``, ``phonebook``, ``qa``, ``kv``) -> share of the
        corpus's characters (normalised; None: builtin 0.6, phonebook 0.2, qa 0.2). See
        :mod:`birdie_jax.data.mix`.
      mix_phonebook_entries, mix_phonebook_queries: ``corpus: mix``: entries per phonebook
        document and names asked [min, max]; mix_qa_length: characters of text per QA passage.
      mix_kv_length: ``corpus: mix``: characters of text around the attributes of a key–value document.
    """

    corpus: str = "builtin"
    format: str = "auto"
    text_field: str = "text"
    tokenizer: str = "byte"
    num_sentinels: int = 100
    seq_len: int = 256
    batch_size: int = 8
    validation_fraction: float = 0.05
    num_workers: int = 0
    shuffle: bool = True
    packing: str = "document"
    markov_order: int = 2
    markov_symbols: int = 8
    markov_topics: int = 1
    markov_concentration: float = 0.3
    markov_documents: int = 200
    markov_doc_len: int = 4096
    markov_seed: int = 0
    process_split: str = "documents"
    mix: dict[str, float] | None = None
    mix_phonebook_entries: tuple[int, int] = (4, 8)
    mix_phonebook_queries: tuple[int, int] = (1, 4)
    mix_qa_length: int = 160
    mix_kv_length: int = 160

    def __post_init__(self):
        _check_choice("data.process_split", self.process_split, ("documents", "rows"))
        self._check_mix()
        _check_choice("data.format", self.format, ("auto", "text", "jsonl", "dir", "pairs"))
        _check_choice("data.packing", self.packing, PACKINGS)
        for name in ("corpus", "tokenizer", "text_field"):
            _check_path(f"data.{name}", getattr(self, name))
        for name in ("seq_len", "batch_size", "num_sentinels"):
            _check_positive(f"data.{name}", getattr(self, name))
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(f"data.validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")

    def _check_mix(self):
        """The ``corpus: mix`` fields (checked whatever the corpus, so a typo never waits)."""
        from birdie_jax.data.mix import check_mix  # noqa: PLC0415

        check_mix(self.mix)
        for name in ("mix_phonebook_entries", "mix_phonebook_queries"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ConfigError(f"data.{name} must be [min, max] with 1 <= min <= max, got {[lo, hi]}")
        if self.mix_phonebook_queries[0] > self.mix_phonebook_entries[0]:
            raise ConfigError(f"data.mix_phonebook_queries {list(self.mix_phonebook_queries)} asks more names than "
                              f"the smallest book holds (data.mix_phonebook_entries {list(self.mix_phonebook_entries)})")
        _check_positive("data.mix_qa_length", self.mix_qa_length)
        _check_positive("data.mix_kv_length", self.mix_kv_length)


NONFINITE_POLICIES = ("stop", "skip")


@dataclasses.dataclass(frozen=True, slots=True)
class TrainConfig:
    """Optimisation, evaluation, logging and checkpointing.

    Attributes:
      steps: number of optimizer steps.
      grad_accum: micro-batches per step (gradient accumulation; the batch's rows must split evenly).
      learning_rate: peak learning rate after warmup.
      warmup_steps: linear warmup length.
      min_lr_ratio: final learning rate of the cosine decay, as a fraction of the peak.
      weight_decay: AdamW decoupled weight decay (not applied to gates, norms, biases).
      b1, b2, eps: AdamW moments.
      grad_clip: global-norm clipping threshold (0 disables).
      eval_every: evaluate every N steps (0 disables); eval_batches: batches per evaluation.
      log_every: write metrics every N steps.
      checkpoint_every: save every N steps (0: only at the end); keep_checkpoints: keep the last N.
      run_dir: output folder (checkpoints, metrics.jsonl, plots).
      tensorboard: also write TensorBoard event files (needs the ``tb`` extra).
      wandb: also log to Weights & Biases (needs ``wandb``).
      progress: show a progress bar (only on a TTY).
      on_nonfinite: what a step whose loss or gradient norm is NaN/inf does (it is never
        applied nor checkpointed): ``stop`` the run naming the step, or ``skip`` the batch,
        count it (``nonfinite_skipped`` in the metrics) and go on.
    """

    steps: int = 300
    grad_accum: int = 1
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_batches: int = 4
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    run_dir: str = "runs/default"
    tensorboard: bool = True
    wandb: bool = False
    progress: bool = True
    on_nonfinite: str = "stop"

    def __post_init__(self):
        _check_choice("train.on_nonfinite", self.on_nonfinite, NONFINITE_POLICIES)
        _check_path("train.run_dir", self.run_dir)
        _check_positive("train.steps", self.steps)
        _check_positive("train.grad_accum", self.grad_accum)
        _check_positive("train.log_every", self.log_every)
        _check_positive("train.keep_checkpoints", self.keep_checkpoints)
        for name in ("warmup_steps", "eval_every", "eval_batches", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


MIXTURES = ("clm", "ul2", "ul2_decoder", "fixed", "birdie", "jrt")


@dataclasses.dataclass(frozen=True, slots=True)
class MixtureConfig:
    """Which pre-training objectives make the samples, and in what proportions.

    On the command line ``mixture=ul2`` is short for ``mixture.name=ul2``.

    Attributes:
      name: ``clm`` (next-token prediction only), ``ul2`` (paper Table 5), ``ul2_decoder``
        (NTP 60 / S 20 / R 10 / X 10), ``fixed`` (``weights``) or ``birdie`` (all 95
        configurations, probabilities set by the reward-driven controller).
      weights: for ``fixed``: weight per objective class (``infill: 2``, split equally over
        the class's configurations) or per configuration name; unnamed ones get 0. With
        neither ``weights`` nor ``weights_file``, ``fixed`` weights every class equally.
      weights_file: a YAML file holding such a ``weights`` mapping (instead of ``weights``).
      paradigm_tokens: add the class's paradigm token to each sample (None: on for
        ``fixed``/``birdie``, UL2's R/X/S for ``ul2``/``ul2_decoder``, off for ``clm``).
      paradigm_append_prob: probability the paradigm token goes at the end of the prefix.
      val_rows_per_config: held-out rows per configuration for per-configuration validation.
      mask_token_id: ``jrt``: the [MASK] id of MLM (None: the tokenizer's reserved [MASK]; an
        id the tokenizer emits is an error).
      mlm_prob: ``jrt``: probability that a prefix token is masked (and predicted).
      mlm_weight: ``jrt``: weight of the MLM term, L = L_NTP + mlm_weight·L_MLM.
      mlm_normalized: ``jrt``: divide that sum by 1 + mlm_weight (the paper's Eq. 5).
      prefix_len: ``jrt`` with ``prefix_split: range``: prefix length M ~ U{lo..hi} tokens
        (capped at the piece length − 1); hi must be shorter than ``data.seq_len``.
      prefix_split: ``jrt``: ``range`` (``prefix_len``) or ``half`` (M = L/2, the reference's
        fixed split: each row-long piece of a document is one sample with its first half as prefix).
    """

    name: str = "clm"
    weights: dict[str, float] | None = None
    weights_file: str | None = None
    paradigm_tokens: bool | None = None
    paradigm_append_prob: float = 0.5
    val_rows_per_config: int = 2
    mask_token_id: int | None = None
    mlm_prob: float = 0.15
    mlm_weight: float = 0.25
    mlm_normalized: bool = False
    prefix_len: tuple[int, int] = (16, 1024)
    prefix_split: str = "range"

    def __post_init__(self):
        _check_choice("mixture.name", self.name, MIXTURES)
        _check_path("mixture.weights_file", self.weights_file)
        if not 0.0 <= self.paradigm_append_prob <= 1.0:
            raise ConfigError(f"mixture.paradigm_append_prob must be in [0, 1], got {self.paradigm_append_prob}")
        _check_positive("mixture.val_rows_per_config", self.val_rows_per_config)
        if self.weights is not None and any(w < 0 for w in self.weights.values()):
            raise ConfigError(f"mixture.weights must be >= 0, got {self.weights}")
        if not 0.0 <= self.mlm_prob < 1.0:
            raise ConfigError(f"mixture.mlm_prob must be in [0, 1), got {self.mlm_prob}")
        if self.mlm_weight < 0:
            raise ConfigError(f"mixture.mlm_weight must be >= 0, got {self.mlm_weight}")
        if not 1 <= self.prefix_len[0] <= self.prefix_len[1]:
            raise ConfigError(f"mixture.prefix_len must be [lo, hi] with 1 <= lo <= hi, got {list(self.prefix_len)}")
        _check_choice("mixture.prefix_split", self.prefix_split, ("range", "half"))


INITIAL_STATES = ("zero", "random_noise", "fitted_noise", "state_passing", "tbtt")


@dataclasses.dataclass(frozen=True, slots=True)
class InitialStateConfig:
    """Where each training row's recurrent state starts (length generalization, arXiv 2507.02782).

    On the command line ``initial_state=state_passing`` is short for ``initial_state.kind=...``.

    Attributes:
      kind: ``zero`` (standard training), ``random_noise`` (i.i.d. N(0, noise_std)),
        ``fitted_noise`` (N(mean, std) per layer and head, fitted to final states seen in
        training), ``state_passing`` (row i starts from row i's final state of the previous
        batch, gradient stopped) or ``tbtt`` (truncated BPTT: each row is one continuing
        stream of documents cut into consecutive chunks, state carried across steps).
      noise_std: σ of ``random_noise``.
      reset_prob: ``state_passing``: per-row probability of starting from zero instead.
      carry_conv_state: carry the short-convolution buffer too (False: SSM/RNN state only).
      freeze_stats: ``fitted_noise``: stop updating the fitted statistics.
      calibration_batches: ``fitted_noise``: zero-state forward batches used to fit the
        statistics when training starts without any (e.g. from ``init_from``).
      min_carry_fraction: ``state_passing`` / ``fitted_noise`` under per-document packing: a
        row's state is carried (or fitted) only if its last document filled at least this
        fraction of the row; a row ending in padding carries the state after its last real
        token, never a padding state (see :mod:`birdie_jax.training.carry`).
      carry_fallback: what a row carries when its state does not qualify: ``previous`` (the
        carry it started from) or ``zero``.
    """

    kind: str = "zero"
    noise_std: float = 1.0
    reset_prob: float = 0.0
    carry_conv_state: bool = True
    freeze_stats: bool = False
    calibration_batches: int = 50
    min_carry_fraction: float = 0.5
    carry_fallback: str = "previous"

    def __post_init__(self):
        _check_choice("initial_state.kind", self.kind, INITIAL_STATES)
        _check_choice("initial_state.carry_fallback", self.carry_fallback, CARRY_FALLBACKS)
        if not 0.0 <= self.min_carry_fraction <= 1.0:
            raise ConfigError(f"initial_state.min_carry_fraction must be in [0, 1], got {self.min_carry_fraction}")
        if self.noise_std < 0:
            raise ConfigError(f"initial_state.noise_std must be >= 0, got {self.noise_std}")
        if not 0.0 <= self.reset_prob <= 1.0:
            raise ConfigError(f"initial_state.reset_prob must be in [0, 1], got {self.reset_prob}")
        if self.calibration_batches < 0:
            raise ConfigError(f"initial_state.calibration_batches must be >= 0, got {self.calibration_batches}")


@dataclasses.dataclass(frozen=True, slots=True)
class GeneratedDataConfig:
    """Sizes of the generated training corpora (``data.corpus: mqar | phonebook | set_disjointness``).

    Attributes:
      num_examples: training examples (validation adds ``data.validation_fraction`` of this, drawn apart).
      vocab_size: id range V of MQAR and set disjointness (<= the tokenizer's base vocabulary).
      mqar_seq_len, mqar_num_pairs: MQAR's (T, n).
      phonebook_entries: book sizes [min, max]; phonebook_queries: k in [min, max].
      set_sizes: set disjointness (|A|, |B|).
    """

    num_examples: int = 20_000
    vocab_size: int = 256
    mqar_seq_len: int = 64
    mqar_num_pairs: int = 4
    phonebook_entries: tuple[int, int] = (200, 800)
    phonebook_queries: tuple[int, int] = (1, 32)
    set_sizes: tuple[int, int] = (4, 16)

    def __post_init__(self):
        for name in ("num_examples", "vocab_size", "mqar_seq_len", "mqar_num_pairs"):
            _check_positive(f"generated.{name}", getattr(self, name))
        for name in ("phonebook_entries", "phonebook_queries", "set_sizes"):
            lo, hi = getattr(self, name)
            if lo < 1 or (name != "set_sizes" and hi < lo) or hi < 1:
                raise ConfigError(f"generated.{name} must be positive [min, max], got {[lo, hi]}")


@dataclasses.dataclass(frozen=True, slots=True)
class EvalConfig:
    """Recall evaluations run during training at ``train.eval_every`` (see ``birdie_jax.evals``).

    Attributes:
      tasks: task names (``mqar``, ``phonebook``, ...), logged as ``eval/<task>``.
      num_examples: examples per slice of each task; seed: the tasks' seed.
    """

    tasks: tuple[str, ...] = ()
    num_examples: int = 8
    seed: int = 0

    def __post_init__(self):
        _check_positive("eval.num_examples", self.num_examples)


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """A whole experiment: model, data, training, objectives and initial states, plus a name,
    the seed and (optionally) a checkpoint whose parameters start the run (post-training)."""

    name: str = "default"
    seed: int = 0
    init_from: str | None = None
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    mixture: MixtureConfig = MixtureConfig()
    initial_state: InitialStateConfig = InitialStateConfig()
    controller: ControllerConfig = ControllerConfig()
    mesh: MeshConfig = MeshConfig()
    generated: GeneratedDataConfig = GeneratedDataConfig()
    eval: EvalConfig = EvalConfig()

    def __post_init__(self):
        """Checks of single fields that need the whole config, and checks that span sections
        (JRT-RNN: prefix layers, the jrt mixture, the row length)."""
        _check_path("init_from", self.init_from)
        pla = [i for i in range(self.model.n_layers) if self.model.layer_mixer(i) == "pla"]
        if pla and self.mixture.name == "clm":
            raise ConfigError(f"model.layers puts prefix linear attention (pla) at layers {pla}, but mixture=clm "
                              "gives no prefixes: PLA would be plain Based and its encoder projections never "
                              "train; use mixture=jrt (or another prefix mixture), or based layers")
        if self.mixture.name == "jrt":
            if self.mixture.prefix_split == "range" and self.mixture.prefix_len[1] >= self.data.seq_len:
                raise ConfigError(f"mixture.prefix_len upper bound {self.mixture.prefix_len[1]} is not shorter than "
                                  f"data.seq_len={self.data.seq_len}: a prefix longer than the sequence leaves no "
                                  "token to predict")
            if self.train.grad_accum > 1:
                raise ConfigError("mixture=jrt averages its NTP and MLM terms over the whole batch; train.grad_accum "
                                  f"must be 1 with it (got {self.train.grad_accum})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, *overrides: str, **kw: Any) -> "Config":
        """A copy with ``key=value`` overrides (strings) and/or ``key=value`` keywords applied."""
        return apply_overrides(self, list(overrides) + [(k, v) for k, v in kw.items()])


# --------------------------------------------------------------------------- validation


def _coerce(field: str, value: Any, annotation: Any) -> Any:
    """Checks ``value`` against a field annotation, converting YAML strings where exact."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        if (isinstance(value, str) and value.lower() in ("none", "null") and type(None) in options
                and field not in NONE_IS_A_CHOICE):
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(field, value, option)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0]) if len(errors) == 1 else ConfigError(f"{field}: {value!r} matches none of {annotation}")
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{field} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{field}[{i}]", v, args[0]) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{field} must have {len(args)} values, got {len(value)}")
        return tuple(_coerce(f"{field}[{i}]", v, t) for i, (v, t) in enumerate(zip(value, args)))
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{field} must be a mapping, got {value!r}")
        return {_coerce(f"{field} key", k, key_type): _coerce(f"{field}.{k}", v, value_type) for k, v in value.items()}
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{field} must be a boolean (true/false), got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{field} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{field} must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{field} must be a number, got {value!r}")
        number = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and not math.isfinite(number):
            raise ConfigError(f"{field} must be a finite number, got {value!r}")
        if number is not None:
            return number
        raise ConfigError(f"{field} must be a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{field} must be a string, got {value!r}")
    raise ConfigError(f"{field}: unsupported field type {annotation}")


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "mixture": MixtureConfig,
             "initial_state": InitialStateConfig, "controller": ControllerConfig, "mesh": MeshConfig,
             "generated": GeneratedDataConfig, "eval": EvalConfig}
# A section given a plain value sets this field of it (``mixture=ul2`` -> ``mixture.name=ul2``).
_SECTION_SHORTHAND = {"mixture": "name", "initial_state": "kind"}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _all_keys() -> list[str]:
    keys = [k for k in _field_types(Config) if k not in _SECTIONS]
    for section, cls in _SECTIONS.items():
        keys += [f"{section}.{k}" for k in _field_types(cls)]
    return keys


def _unknown_key(key: str, where: str) -> ConfigError:
    candidates = _all_keys()
    leaf = key.split(".")[-1]
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    near_leaves = difflib.get_close_matches(leaf, [c.split(".")[-1] for c in candidates], n=3, cutoff=0.7)
    close += [c for c in candidates if c.split(".")[-1] in near_leaves and c not in close]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key {key!r} in {where}.{hint}")


def _resolve_key(key: str, where: str) -> tuple[str | None, str]:
    """Maps an override key to (section or None, field)."""
    if "." in key:
        section, _, field = key.partition(".")
        if section not in _SECTIONS or field not in _field_types(_SECTIONS[section]):
            raise _unknown_key(key, where)
        return section, field
    if key in _SECTION_SHORTHAND:
        return key, _SECTION_SHORTHAND[key]
    if key in _field_types(Config) and key not in _SECTIONS:
        return None, key
    owners = [s for s, cls in _SECTIONS.items() if key in _field_types(cls)]
    if len(owners) == 1:
        return owners[0], key
    if len(owners) > 1:
        raise ConfigError(f"config key {key!r} in {where} is ambiguous: use one of {', '.join(f'{s}.{key}' for s in owners)}")
    raise _unknown_key(key, where)


def _build_section(cls: type, section: str, values: Mapping[str, Any], base: Any, where: str) -> Any:
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in types_:
            raise _unknown_key(f"{section}.{key}", where)
        kwargs[key] = _coerce(f"{section}.{key}", value, types_[key])
    return dataclasses.replace(base, **kwargs)


def config_from_dict(raw: Mapping[str, Any], *, where: str = "config", base: Config | None = None) -> Config:
    """Builds a :class:`Config` from nested mappings, validating every key and value."""
    base = base or Config()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping of sections, got {type(raw).__name__}")
    top_types = _field_types(Config)
    top = {}
    sections = {}
    for key, value in raw.items():
        if key in _SECTIONS:
            if value is None:
                value = {}
            if key in _SECTION_SHORTHAND and not isinstance(value, Mapping):
                value = {_SECTION_SHORTHAND[key]: value}
            if not isinstance(value, Mapping):
                raise ConfigError(f"section {key!r} in {where} must be a mapping, got {value!r}")
            sections[key] = _build_section(_SECTIONS[key], key, value, getattr(base, key), where)
        elif key in top_types:
            top[key] = _coerce(key, value, top_types[key])
        else:
            raise _unknown_key(str(key), where)
    return dataclasses.replace(base, **top, **sections)


def parse_override(text: str) -> tuple[str, Any]:
    """Splits ``key=value`` and parses the value as YAML (so 1e-3, true, null work)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def apply_overrides(cfg: Config, overrides: Sequence[str | tuple[str, Any]]) -> Config:
    """Applies ``key=value`` strings or (key, value) pairs, validating each one."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        section, field = _resolve_key(key, "overrides")
        if section is None:
            nested[field] = value
        else:
            nested.setdefault(section, {})[field] = value
    return config_from_dict(nested, where="overrides", base=cfg)


def bundled_config_names() -> list[str]:
    """Names of the configs shipped in ``configs/`` (loadable with :func:`load_config`),
    e.g. ``hawk_tiny`` or ``lengthgen/state_passing``."""
    root = importlib.resources.files("birdie_jax.configs")
    names = []
    for entry in root.iterdir():
        if entry.name.endswith(".yaml"):
            names.append(entry.name[: -len(".yaml")])
        elif entry.is_dir():
            names += [f"{entry.name}/{p.name[: -len('.yaml')]}" for p in entry.iterdir() if p.name.endswith(".yaml")]
    return sorted(names)


def load_config(name_or_path: str | os.PathLike | None = None, *overrides: str, **kw_overrides: Any) -> Config:
    """Loads a bundled config by name (``hawk_tiny``) or a YAML file, then applies overrides.

    Args:
      name_or_path: a bundled config name, a path to a YAML file, or None for the defaults.
      *overrides: ``key=value`` strings, as on the command line.
      **kw_overrides: the same as keywords (``steps=10``, or ``train__steps=10`` for dotted keys).
    """
    cfg = Config()
    if name_or_path is not None:
        if not str(name_or_path).strip():
            raise ConfigError("the config name or path is empty")
        text, where = _read_config_text(str(name_or_path))
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{where} is not valid YAML: {e}") from None
        cfg = config_from_dict(raw, where=where)
    pairs: list[str | tuple[str, Any]] = list(overrides)
    pairs += [(k.replace("__", "."), v) for k, v in kw_overrides.items()]
    return apply_overrides(cfg, pairs) if pairs else cfg


def _read_config_text(name_or_path: str) -> tuple[str, str]:
    """A YAML file's text, or a bundled config's (by name, or by its path under configs/)."""
    if os.path.exists(name_or_path):
        if os.path.isdir(name_or_path):
            raise ConfigError(f"config {name_or_path!r} is a folder, expected a YAML file")
        try:
            with open(name_or_path, encoding="utf-8") as f:
                return f.read(), name_or_path
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {name_or_path!r} is not UTF-8 text (byte {e.start}); "
                              "save it as UTF-8") from None
    name = name_or_path.replace(os.sep, "/")
    name = name[len("configs/"):] if name.startswith("configs/") else name
    name = name[: -len(".yaml")] if name.endswith(".yaml") else name
    names = bundled_config_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        what = "config file" if name_or_path.endswith((".yaml", ".yml")) else "bundled config named"
        raise ConfigError(f"no {what} {name_or_path!r}.{hint} Bundled configs: {', '.join(names)}")
    resource = importlib.resources.files("birdie_jax.configs").joinpath(*f"{name}.yaml".split("/"))
    return resource.read_text(encoding="utf-8"), f"configs/{name}.yaml"


def config_to_yaml(cfg: Config) -> str:
    """The config as YAML text, loadable by :func:`load_config`."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
