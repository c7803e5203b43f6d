"""Tokenizers with Birdie's reserved special ids (spec §1, §4).

Every tokenizer wraps a *base* vocabulary of size V (256 UTF-8 bytes, a
`tokenizers` JSON file or a SentencePiece model) and reserves the special ids
V, V+1, ... on top of it, in this fixed order:

    pad, eos, bg, mask,                              (4)
    copy, start, end, context, sep, done,            (6, selective copying)
    paradigm tokens for ntp, plm, sc, copy, deshuf, infill, ae   (7)
    UL2 paradigm tokens r, x, s                      (3)
    sentinels S0 .. S{P-1}                           (P = num_sentinels >= 100)

The final ``vocab_size`` is V + (number of specials) rounded up to a multiple of
128 (friendlier matmul shapes); the ids in the rounding gap are reserved but
unused. The base tokenizer never emits a special id, so objectives can insert
them freely. For the byte tokenizer with 100 sentinels: PAD=256 ... S99=375,
vocab_size=384.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from birdie_jax.errors import DataError

#: Objective classes in spec order; one paradigm token each.
OBJECTIVE_CLASSES: tuple[str, ...] = ("ntp", "plm", "sc", "copy", "deshuf", "infill", "ae")
#: Single special tokens in reservation order (the first is reserved at id V).
_SINGLE_NAMES: tuple[str, ...] = (
    "pad", "eos", "bg", "mask", "copy", "start", "end", "context", "sep", "done",
)
_UL2_NAMES: tuple[str, ...] = ("r", "x", "s")
MIN_SENTINELS = 100
VOCAB_MULTIPLE = 128


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
    """Reserved special ids laid out on top of a base vocabulary.

    Build with :meth:`reserve`; the ids are a pure function of
    ``(base_vocab_size, num_sentinels)`` so a checkpoint only has to record those.
    """

    base_vocab_size: int
    vocab_size: int
    pad: int
    eos: int
    bg: int
    mask: int
    copy: int
    start: int
    end: int
    context: int
    sep: int
    done: int
    paradigm_ids: tuple[int, ...]  # one per OBJECTIVE_CLASSES entry, same order
    r: int
    x: int
    s: int
    sentinels: tuple[int, ...]

    @classmethod
    def reserve(cls, base_vocab_size: int, num_sentinels: int = MIN_SENTINELS) -> SpecialTokens:
        """Reserve the specials at ids ``base_vocab_size, base_vocab_size + 1, ...``."""
        if int(base_vocab_size) <= 0:
            raise DataError(f"base vocabulary size must be positive, got {base_vocab_size}")
        if int(num_sentinels) < MIN_SENTINELS:
            raise DataError(
                f"num_sentinels must be at least {MIN_SENTINELS} (spec §1), got {num_sentinels}"
            )
        next_id = iter(range(int(base_vocab_size), 1 << 62))
        singles = {name: next(next_id) for name in _SINGLE_NAMES}
        paradigm_ids = tuple(next(next_id) for _ in OBJECTIVE_CLASSES)
        ul2 = {name: next(next_id) for name in _UL2_NAMES}
        sentinels = tuple(next(next_id) for _ in range(int(num_sentinels)))
        used = sentinels[-1] + 1
        return cls(
            base_vocab_size=int(base_vocab_size),
            vocab_size=_round_up(used, VOCAB_MULTIPLE),
            paradigm_ids=paradigm_ids,
            sentinels=sentinels,
            **singles,
            **ul2,
        )

    @property
    def num_sentinels(self) -> int:
        return len(self.sentinels)

    @property
    def num_reserved(self) -> int:
        """Number of special ids actually assigned (without the rounding gap)."""
        return self.sentinels[-1] + 1 - self.base_vocab_size

    @functools.cached_property
    def paradigm(self) -> Mapping[str, int]:
        """Read-only mapping objective class name -> paradigm token id."""
        return types.MappingProxyType(dict(zip(OBJECTIVE_CLASSES, self.paradigm_ids)))

    def sentinel(self, j: int) -> int:
        """The j-th sentinel id, cycling through the pool (j mod num_sentinels)."""
        return self.sentinels[j % len(self.sentinels)]

    @functools.cached_property
    def all_ids(self) -> frozenset[int]:
        """Every assigned special id (the unused rounding gap is not included)."""
        return frozenset(self._names)

    @functools.cached_property
    def _names(self) -> dict[int, str]:
        names = {getattr(self, n): f"[{n.upper()}]" for n in _SINGLE_NAMES}
        names.update({i: f"[P:{c}]" for c, i in zip(OBJECTIVE_CLASSES, self.paradigm_ids)})
        names.update({getattr(self, n): f"[UL2:{n.upper()}]" for n in _UL2_NAMES})
        names.update({i: f"[S{j}]" for j, i in enumerate(self.sentinels)})
        return names

    def is_reserved(self, token_id: int) -> bool:
        """True for special ids and for the unused ids of the rounding gap."""
        return self.base_vocab_size <= int(token_id) < self.vocab_size

    def name_of(self, token_id: int) -> str:
        """Display name of a reserved id, e.g. "[BG]", "[S3]", "[P:infill]", "[UNUSED:380]".

        Raises KeyError for an id of the base vocabulary.
        """
        token_id = int(token_id)
        name = self._names.get(token_id)
        if name is not None:
            return name
        if self.is_reserved(token_id):
            return f"[UNUSED:{token_id}]"
        raise KeyError(f"token id {token_id} is not a special id")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON description: every special name -> id."""
        return {name: token_id for token_id, name in self._names.items()}


class Tokenizer:
    """Common interface: base-vocabulary codec + the special-id reservation.

    Subclasses implement ``_encode_base(text) -> list[int]`` and
    ``_decode_base(ids) -> str`` for ids in ``[0, base_vocab_size)``.
    """

    name: str
    special: SpecialTokens

    @property
    def vocab_size(self) -> int:
        return self.special.vocab_size

    @property
    def base_vocab_size(self) -> int:
        return self.special.base_vocab_size

    def _encode_base(self, text: str) -> Sequence[int]:
        raise NotImplementedError

    def _decode_base(self, ids: list[int]) -> str:
        raise NotImplementedError

    def encode(self, text: str) -> np.ndarray:
        """Text -> ids [n] int32; never emits a special id."""
        if not isinstance(text, str):
            raise DataError(f"{self.name} tokenizer: encode expects a str, got {type(text).__name__}")
        return np.asarray(self._encode_base(text), dtype=np.int32).reshape(-1)

    def check_ids(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """ids -> int64 array [n]; DataError naming the first id outside [0, vocab_size)."""
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        bad = (arr < 0) | (arr >= self.vocab_size)
        if bad.any():
            raise DataError(
                f"token id {int(arr[bad][0])} is outside the vocabulary [0, {self.vocab_size}) "
                f"of tokenizer {self.name!r}"
            )
        return arr

    def decode(self, ids: Iterable[int] | np.ndarray, *, skip_special: bool = False) -> str:
        """ids [n] -> text. Specials render as their names ("[BG]") or are dropped."""
        arr = self.check_ids(ids)
        pieces: list[str] = []
        run: list[int] = []
        for token_id in arr.tolist():
            if token_id < self.base_vocab_size:
                run.append(token_id)
                continue
            if run:
                pieces.append(self._decode_base(run))
                run = []
            if not skip_special:
                pieces.append(self.special.name_of(token_id))
        if run:
            pieces.append(self._decode_base(run))
        return "".join(pieces)

    def to_dict(self) -> dict[str, Any]:
        """What a checkpoint records: enough to rebuild with :func:`build_tokenizer`."""
        return {
            "name": self.name,
            "spec": self._spec(),
            "vocab_size": self.vocab_size,
            "base_vocab_size": self.base_vocab_size,
            "num_sentinels": self.special.num_sentinels,
        }

    def _spec(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size})"


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as ids 0..255 (no files, no unknown tokens)."""

    def __init__(self, num_sentinels: int = MIN_SENTINELS):
        self.name = "byte"
        self.special = SpecialTokens.reserve(256, num_sentinels)

    def encode(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise DataError(f"byte tokenizer: encode expects a str, got {type(text).__name__}")
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

    def _decode_base(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def _spec(self) -> str:
        return "byte"


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _FileTokenizer(Tokenizer):
    """A tokenizer loaded from a file; pickles as (path, num_sentinels) for data workers."""

    _EXTRA = "pip install birdie-jax[tokenizers]"

    def __init__(self, path: str | os.PathLike, num_sentinels: int = MIN_SENTINELS):
        self.path = os.fspath(path)
        self._num_sentinels = int(num_sentinels)
        if not os.path.isfile(self.path):
            raise DataError(f"tokenizer file not found: {self.path}")
        self._load()
        self.name = f"{self._KIND}:{os.path.basename(self.path)}"
        self.special = SpecialTokens.reserve(self._base_size(), num_sentinels)

    _KIND = ""

    def _load(self) -> None:
        raise NotImplementedError

    def _base_size(self) -> int:
        raise NotImplementedError

    def _spec(self) -> str:
        return self.path

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["sha256"] = _file_sha256(self.path)
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "num_sentinels": self._num_sentinels}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["num_sentinels"])


class HFTokenizer(_FileTokenizer):
    """A HuggingFace `tokenizers` JSON file (optional package ``tokenizers``)."""

    _KIND = "hf"

    def _load(self) -> None:
        try:
            import tokenizers  # noqa: PLC0415 (optional dependency, imported lazily)
        except ImportError:
            raise DataError(
                f"tokenizer file {self.path} needs the 'tokenizers' package: {self._EXTRA}"
            ) from None
        try:
            self._tok = tokenizers.Tokenizer.from_file(self.path)
        except Exception as e:  # the Rust error types are not importable
            raise DataError(f"cannot read tokenizers JSON file {self.path}: {e}") from None

    def _base_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def _encode_base(self, text: str) -> Sequence[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def _decode_base(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)


class SentencePieceTokenizer(_FileTokenizer):
    """A SentencePiece ``.model`` file (optional package ``sentencepiece``)."""

    _KIND = "sp"

    def _load(self) -> None:
        try:
            import sentencepiece  # noqa: PLC0415 (optional dependency, imported lazily)
        except ImportError:
            raise DataError(
                f"tokenizer file {self.path} needs the 'sentencepiece' package: {self._EXTRA}"
            ) from None
        self._sp = sentencepiece.SentencePieceProcessor()
        try:
            self._sp.Load(self.path)
        except Exception as e:  # OSError/RuntimeError depending on the version
            raise DataError(f"cannot read SentencePiece model {self.path}: {e}") from None

    def _base_size(self) -> int:
        return int(self._sp.GetPieceSize())

    def _encode_base(self, text: str) -> Sequence[int]:
        return self._sp.EncodeAsIds(text)

    def _decode_base(self, ids: list[int]) -> str:
        return self._sp.DecodeIds(ids)


def build_tokenizer(spec: str = "byte", num_sentinels: int = MIN_SENTINELS) -> Tokenizer:
    """"byte", a ``*.json`` (tokenizers) or a ``*.model`` (SentencePiece) path -> tokenizer."""
    spec = os.fspath(spec)
    if spec == "byte":
        return ByteTokenizer(num_sentinels)
    lower = spec.lower()
    if lower.endswith(".json"):
        return HFTokenizer(spec, num_sentinels)
    if lower.endswith(".model"):
        return SentencePieceTokenizer(spec, num_sentinels)
    raise DataError(
        f"unknown tokenizer {spec!r}: use 'byte', a tokenizers '.json' file "
        "or a SentencePiece '.model' file"
    )
