"""A per-batch cache of intermediates that several metrics share (VIF moments, SSIM terms, spectra, levels).

``evaluate`` opens one ``shared_intermediates()`` scope per batch chunk; inside it, ``cached`` computes a value
once per (name, input tensors, parameters) and hands the same object to every later caller. Outside a scope
it simply computes. Entries hold references to their key tensors, so a key's memory address cannot be reused
by another tensor while the entry lives, and everything is dropped when the scope closes. Cached values are
shared, so callers must not modify them in place.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from torch import Tensor

T = TypeVar("T")
_CACHE: ContextVar[dict[Hashable, tuple[Sequence[Tensor], Any]] | None] = ContextVar(
    "fusebench_metrics_cache", default=None
)


@contextmanager
def shared_intermediates() -> Iterator[None]:
    """Scope in which ``cached`` values are computed once and shared."""
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


def _tensor_key(t: Tensor) -> Hashable:
    return (t.data_ptr(), tuple(t.shape), t.stride(), t.dtype, t.device, t._version)


def cached(name: str, tensors: Sequence[Tensor], params: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, memoised on (``name``, the identity and version of ``tensors``, ``params``) in a scope."""
    store = _CACHE.get()
    if store is None:
        return compute()
    key = (name, tuple(_tensor_key(t) for t in tensors), params)
    hit = store.get(key)
    if hit is None:
        hit = (tuple(tensors), compute())
        store[key] = hit
    return hit[1]
