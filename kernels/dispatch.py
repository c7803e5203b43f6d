"""Choosing a kernel implementation: the logic every kernel API (linear_scan, ssd, ...) shares.

Each kernel API owns one table ``DEFAULT_IMPLEMENTATIONS`` (backend name → the
implementation ``implementation=None`` picks there) and an ``is_available(name, backend)``.
The rule for the table: a backend's default is an implementation verified on that
backend. Pallas kernels are opt-in (``implementation="pallas"``) until
``tools/check_kernels.py`` has passed on that hardware and its JSON is committed; only
then may a table name ``"pallas"`` for that backend (docs/kernels.md says how).

``"pallas"`` means the backend's flavour: ``pallas_tpu`` (Mosaic) on TPU, ``pallas_gpu``
(Triton lowering) on GPU. CPU has no Pallas kernel; there the kernels run only in
interpret mode, which the tests call directly.
"""

import importlib
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import jax

from birdie_jax.errors import BirdieError, ConfigError

Implementation = Union[None, str, Sequence[str]]

# Backend name (``jax.default_backend()``) → the Pallas module of a kernel package.
PALLAS_MODULES: Dict[str, str] = {"tpu": "pallas_tpu", "gpu": "pallas_gpu"}


class ImplementationUnavailableError(BirdieError, RuntimeError):
    """The requested implementation cannot run here (backend, import or shape); the message names the alternative."""


def check_name(kernel: str, name, names: Sequence[str]) -> str:
    """``name`` if it is one of ``names``, else a ConfigError listing the valid ones."""
    if not isinstance(name, str) or name not in names:
        raise ConfigError(
            f"{kernel}: unknown implementation {name!r}; valid names are {', '.join(names)}"
        )
    return name


def pallas_module_name(backend: str) -> Optional[str]:
    """The Pallas module for ``backend`` (``pallas_tpu`` / ``pallas_gpu``), None if it has none."""
    return PALLAS_MODULES.get(backend)


def unavailable_reason(
    kernel: str, name: str, backend: str, default: str, import_error: Optional[BaseException] = None
) -> str:
    """One line saying why ``name`` cannot run on ``backend`` and what to use instead."""
    if name == "pallas" and import_error is not None:
        why = f"the Pallas module failed to import ({type(import_error).__name__}: {import_error})"
    elif name == "pallas":
        why = f"there is no Pallas kernel for backend {backend!r} (kernels exist for {', '.join(PALLAS_MODULES)})"
    else:
        why = f"it does not run on backend {backend!r}"
    return (f"{kernel}: implementation {name!r} is not available: {why}; use implementation="
            f"{default!r} (the {backend} default) or implementation=None")


def load_pallas_module(kernel: str, package: str, backend: str, default: str):
    """``<package>.pallas_tpu`` / ``pallas_gpu`` for ``backend``.

    Raises ImplementationUnavailableError naming ``default`` when the backend has no
    Pallas kernel or the module fails to import (the import error is in the message).
    """
    module = pallas_module_name(backend)
    if module is None:
        raise ImplementationUnavailableError(unavailable_reason(kernel, "pallas", backend, default))
    try:
        return importlib.import_module(f"{package}.{module}")
    except ImportError as e:
        raise ImplementationUnavailableError(unavailable_reason(kernel, "pallas", backend, default, e)) from e


def pallas_unavailable(load: Callable[[str], object]) -> Callable[[str, str], Optional[str]]:
    """An ``available(name, backend)`` for :func:`choose`: only "pallas" can be missing (``load`` raises)."""

    def unavailable(name: str, backend: str) -> Optional[str]:
        if name != "pallas":
            return None
        try:
            load(backend)
        except ImplementationUnavailableError as e:
            return str(e)
        return None

    return unavailable


def candidates(kernel: str, implementation: Implementation, names: Sequence[str],
               default: str) -> Tuple[List[str], bool]:
    """(names to try in order, strict): strict means the first unavailable one raises."""
    if implementation is None:
        return [default], True
    if isinstance(implementation, str):
        return [check_name(kernel, implementation, names)], True
    if isinstance(implementation, (list, tuple)):
        if not implementation:
            raise ConfigError(f"{kernel}: implementation is an empty sequence; valid names are {', '.join(names)}")
        return [check_name(kernel, n, names) for n in implementation], False
    raise ConfigError(f"{kernel}: implementation must be None, a name or a list of names, got "
                      f"{implementation!r}; valid names are {', '.join(names)}")


def choose(kernel: str, implementation: Implementation, names: Sequence[str],
           defaults: Dict[str, str], fallback: str,
           available: Callable[[str, str], Optional[str]], backend: Optional[str] = None) -> str:
    """The implementation to run on ``backend`` (default: the current one).

    ``available(name, backend)`` returns None when ``name`` can run, else the reason line.
    A single name (or None) raises ImplementationUnavailableError when it cannot run; a
    list warns and falls back to the next name.
    """
    backend = backend or jax.default_backend()
    default = defaults.get(backend, fallback)
    tried, strict = candidates(kernel, implementation, names, default)
    for name in tried:
        reason = available(name, backend)
        if reason is None:
            return name
        if strict:
            raise ImplementationUnavailableError(reason)
        warnings.warn(reason + "; trying the next one", RuntimeWarning, stacklevel=3)
    raise ImplementationUnavailableError(
        f"{kernel}: none of the implementations {tried} is available on backend {backend!r}; "
        f"use implementation={default!r} (the {backend} default) or implementation=None")


class KernelDispatch:
    """One kernel API's choice of implementation: its names, backend table and Pallas modules."""

    def __init__(self, kernel: str, package: str, names: Sequence[str], defaults: Dict[str, str], fallback: str):
        self.kernel, self.package, self.names, self.defaults, self.fallback = kernel, package, names, defaults, fallback
        self.unavailable = pallas_unavailable(self.pallas_module)

    def default(self, backend: Optional[str] = None) -> str:
        """The implementation ``implementation=None`` picks on ``backend`` (default: the current one)."""
        return self.defaults.get(backend or jax.default_backend(), self.fallback)

    def pallas_module(self, backend: str):
        """The Pallas kernel module for ``backend``; ImplementationUnavailableError naming the default if none."""
        return load_pallas_module(self.kernel, self.package, backend, self.default(backend))

    def choose(self, implementation: Implementation, backend: str) -> str:
        """The implementation to run (see :func:`choose`)."""
        return choose(self.kernel, implementation, self.names, self.defaults, self.fallback, self.unavailable, backend)


TRITON_MIN_TILE = 16  # the smallest tl.dot extent


def check_triton_tiles(kernel: str, sizes: Dict[str, int]) -> None:
    """Raises ImplementationUnavailableError naming 'chunked' unless every size is a power of two >= 16."""
    for what, value in sizes.items():
        if value < TRITON_MIN_TILE or value & (value - 1):
            raise ImplementationUnavailableError(
                f"{kernel} pallas (GPU): {what} = {value} is not a power of two >= {TRITON_MIN_TILE} (the Triton "
                f"matmul tiles); use implementation='chunked'")
