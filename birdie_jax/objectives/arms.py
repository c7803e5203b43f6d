"""Objective configurations ("arms") and the paper's grid of 95 (spec §3).

An arm is one objective class with fixed control values: a frozen dataclass per class.
Every arm has a stable, readable ``name`` (``infill/len256-512/r15/mu8``) that the
mixture, the validation sets and the checkpoints use, ``to_dict()`` (JSON, with the
class and the name) and :func:`arm_from_dict` to read it back.

Lengths ``min_len``/``max_len`` are in tokens of source text (L ~ U{min_len..max_len},
capped by the text available and by the row, spec §2/§6.2). NTP and PLM have no length
control (L = as much as fits the row); so has :class:`InfillArm` with no lengths (the
UL2 denoisers, which corrupt whole rows).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, ClassVar, Union

from birdie_jax.errors import ConfigError
from birdie_jax.tokenizer import OBJECTIVE_CLASSES

QUERY_PLACES = ("before", "after")


def _pct(rate: float) -> str:
    return f"{rate * 100:g}"


def _check_lengths(name: str, min_len: int | None, max_len: int | None, optional: bool = False) -> None:
    if optional and min_len is None and max_len is None:
        return
    if min_len is None or max_len is None or not 1 <= min_len <= max_len:
        raise ConfigError(f"arm {name}: need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")


def _check_rate(name: str, rate: float) -> None:
    if not 0.0 < rate < 1.0:
        raise ConfigError(f"arm {name}: the corruption rate must be in (0, 1), got {rate}")


def _check_mean_span(name: str, mean_span: float) -> None:
    if not mean_span >= 1:
        raise ConfigError(f"arm {name}: the mean span must be >= 1 token, got {mean_span}")


class _ArmBase:
    """Shared behaviour: ``objective`` (class name), ``name``, ``to_dict``."""

    objective: ClassVar[str]

    @property
    def name(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """{"objective": class, "name": name, <controls>} (plain JSON)."""
        return {"objective": self.objective, "name": self.name, **dataclasses.asdict(self)}

    def __str__(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True)
class NTPArm(_ArmBase):
    """Next-token prediction: prefix = [], labels = the text."""

    objective: ClassVar[str] = "ntp"

    @property
    def name(self) -> str:
        return "ntp"


@dataclasses.dataclass(frozen=True)
class PLMArm(_ArmBase):
    """Prefix LM: split s ~ U{ceil(L/2)..L} clipped to [4, L−4]; prefix = x[:s], labels = x[s:]."""

    objective: ClassVar[str] = "plm"

    @property
    def name(self) -> str:
        return "plm"


@dataclasses.dataclass(frozen=True)
class SCArm(_ArmBase):
    """Selective copying (paper A.5): ``n_spans`` spans of a context of min_len..max_len tokens,
    the query ``before`` or ``after`` the context."""

    objective: ClassVar[str] = "sc"
    n_spans: int
    query: str
    min_len: int
    max_len: int

    def __post_init__(self):
        if not 1 <= self.n_spans <= 4:
            raise ConfigError(f"selective copying arm: n_spans must be 1..4, got {self.n_spans}")
        if self.query not in QUERY_PLACES:
            raise ConfigError(f"selective copying arm: query must be 'before' or 'after', got {self.query!r}")
        _check_lengths("sc", self.min_len, self.max_len)

    @property
    def name(self) -> str:
        return f"sc/len{self.min_len}-{self.max_len}/n{self.n_spans}/{self.query}"


@dataclasses.dataclass(frozen=True)
class CopyArm(_ArmBase):
    """Copying: prefix = labels = the text (min_len..max_len tokens)."""

    objective: ClassVar[str] = "copy"
    min_len: int
    max_len: int

    def __post_init__(self):
        _check_lengths("copy", self.min_len, self.max_len)

    @property
    def name(self) -> str:
        return f"copy/len{self.min_len}-{self.max_len}"


@dataclasses.dataclass(frozen=True)
class DeshufArm(_ArmBase):
    """Token-level deshuffling: round(fraction·L) positions are permuted; labels = the text."""

    objective: ClassVar[str] = "deshuf"
    min_len: int
    max_len: int
    fraction: float

    def __post_init__(self):
        _check_lengths("deshuf", self.min_len, self.max_len)
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"deshuffling arm: fraction must be in (0, 1], got {self.fraction}")

    @property
    def name(self) -> str:
        return f"deshuf/len{self.min_len}-{self.max_len}/p{_pct(self.fraction)}"


@dataclasses.dataclass(frozen=True)
class InfillArm(_ArmBase):
    """Infilling (span corruption, a sentinel after each span). No lengths: fill the row (UL2)."""

    objective: ClassVar[str] = "infill"
    rate: float
    mean_span: float
    min_len: int | None = None
    max_len: int | None = None

    def __post_init__(self):
        _check_lengths("infill", self.min_len, self.max_len, optional=True)
        _check_rate("infill", self.rate)
        _check_mean_span("infill", self.mean_span)

    @property
    def name(self) -> str:
        length = "" if self.min_len is None else f"/len{self.min_len}-{self.max_len}"
        return f"infill{length}/r{_pct(self.rate)}/mu{self.mean_span:g}"


@dataclasses.dataclass(frozen=True)
class AEArm(_ArmBase):
    """Autoencoding: one MASK per span, labels = the whole text; ``shuffle`` permutes the units."""

    objective: ClassVar[str] = "ae"
    min_len: int
    max_len: int
    rate: float
    mean_span: float
    shuffle: bool

    def __post_init__(self):
        _check_lengths("ae", self.min_len, self.max_len)
        _check_rate("ae", self.rate)
        _check_mean_span("ae", self.mean_span)

    @property
    def name(self) -> str:
        shuf = "shuf" if self.shuffle else "noshuf"
        return f"ae/len{self.min_len}-{self.max_len}/r{_pct(self.rate)}/mu{self.mean_span:g}/{shuf}"


Arm = Union[NTPArm, PLMArm, SCArm, CopyArm, DeshufArm, InfillArm, AEArm]
ARM_TYPES: dict[str, type] = {t.objective: t for t in (NTPArm, PLMArm, SCArm, CopyArm, DeshufArm, InfillArm, AEArm)}
assert tuple(ARM_TYPES) == OBJECTIVE_CLASSES


def arm_from_dict(d: dict[str, Any]) -> Arm:
    """Inverse of ``arm.to_dict()`` (the ``name`` entry is checked, not needed)."""
    d = dict(d)
    objective = d.pop("objective", None)
    name = d.pop("name", None)
    if objective not in ARM_TYPES:
        raise ConfigError(f"unknown objective class {objective!r}; known: {', '.join(OBJECTIVE_CLASSES)}")
    try:
        arm = ARM_TYPES[objective](**d)
    except TypeError as e:
        raise ConfigError(f"bad {objective} arm {d}: {e}") from None
    if name is not None and name != arm.name:
        raise ConfigError(f"arm name {name!r} does not match its controls (which give {arm.name!r})")
    return arm


def span_validity(min_len: int, max_len: int, rate: float, mean_span: float) -> int | None:
    """Validity filter of spec §3: the effective min_len, or None when the arm is dropped.

    With m = floor(μ/(2r)) (the length below which round(r·L/μ) < 1, i.e. not even one
    span of mean length): drop if max_len < m or max_len − m < floor((max_len − min_len)/4);
    otherwise min_len' = max(min_len, m).
    """
    m = math.floor(mean_span / (2 * rate) + 1e-9)
    if max_len < m or (max_len - m) < (max_len - min_len) // 4:
        return None
    return max(min_len, m)


# Paper A.2 grid controls (spec §3), in table order.
SC_SPANS = (1, 2, 3, 4)
SC_CONTEXTS = ((384, 768), (768, 1536))
COPY_LENGTHS = ((64, 256), (256, 1024))
DESHUF_LENGTHS = ((128, 256), (512, 1024))
DESHUF_FRACTIONS = (0.5, 1.0)
INFILL_LENGTHS = ((128, 256), (256, 512), (512, 1024), (1024, 2048))
INFILL_RATES = (0.05, 0.15, 0.5)
INFILL_MEAN_SPANS = (3, 8, 32)
AE_LENGTHS = ((192, 384), (384, 768), (768, 1536))
AE_RATES = (0.15, 0.85)
AE_MEAN_SPANS = (3, 8, 32)


def _infill_arms() -> list[InfillArm]:
    arms = []
    for (lo, hi), r, mu in itertools.product(INFILL_LENGTHS, INFILL_RATES, INFILL_MEAN_SPANS):
        lo2 = span_validity(lo, hi, r, mu)
        if lo2 is not None:
            arms.append(InfillArm(rate=r, mean_span=mu, min_len=lo2, max_len=hi))
    return arms


def _ae_arms() -> list[AEArm]:
    arms = []
    for (lo, hi), r, mu in itertools.product(AE_LENGTHS, AE_RATES, AE_MEAN_SPANS):
        lo2 = span_validity(lo, hi, r, mu)
        if lo2 is not None:
            arms += [AEArm(min_len=lo2, max_len=hi, rate=r, mean_span=mu, shuffle=s) for s in (False, True)]
    return arms


def birdie_grid() -> tuple[Arm, ...]:
    """The paper's 95 arms (spec §3) in the spec's order: class order, then the controls
    lexicographically in the order of the table's columns (NTP, PLM, 16 SC, 2 COPY,
    4 DESHUF, 35 INFILL, 36 AE)."""
    arms: list[Arm] = [NTPArm(), PLMArm()]
    arms += [SCArm(n_spans=n, query=q, min_len=lo, max_len=hi)
             for n, q, (lo, hi) in itertools.product(SC_SPANS, QUERY_PLACES, SC_CONTEXTS)]
    arms += [CopyArm(min_len=lo, max_len=hi) for lo, hi in COPY_LENGTHS]
    arms += [DeshufArm(min_len=lo, max_len=hi, fraction=p)
             for (lo, hi), p in itertools.product(DESHUF_LENGTHS, DESHUF_FRACTIONS)]
    arms += _infill_arms()
    arms += _ae_arms()
    return tuple(arms)
