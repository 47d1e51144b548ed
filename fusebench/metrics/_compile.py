"""Optional fused kernels: the metrics' tensor cores compiled with ``torch.compile``.

Eager torch runs every filter tap and every elementwise step as its own pass over memory; compiled by
inductor (C++/OpenMP on CPU, Triton on CUDA), a whole core such as VIF's moment filtering or Qabf's
sigmoids becomes a few fused loops. Off by default: the first call of each core compiles for seconds (torch
keeps the result in its on-disk cache, so later processes load it quickly), which pays off only over many
images. ``evaluate(..., compile=True)`` and ``fusebench run --compile-metrics`` turn it on. Where compiling
fails (no C++ compiler, an unsupported platform) the eager core runs instead, after one warning.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])
_ENABLED: ContextVar[bool] = ContextVar("fusebench_metrics_compile", default=False)
_BROKEN: list[str] = []  # the first compile failure: once compiling fails, every core stays eager


@contextmanager
def compiled_kernels(enabled: bool = True) -> Iterator[None]:
    """Scope in which the metric cores marked with ``@kernel`` run compiled."""
    token = _ENABLED.set(enabled)
    try:
        with contextlib.ExitStack() as stack:
            if enabled:
                import torch._dynamo

                # Each filter length, decimation step and dtype is its own graph of the same function (the
                # separable filter alone has ~20), past torch's default of 8 graphs per function.
                config = torch._dynamo.config
                name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # < 2.6
                stack.enter_context(config.patch(**{name: max(64, getattr(config, name))}))
            yield
    finally:
        _ENABLED.reset(token)


def is_compiling() -> bool:
    """Whether torch is tracing a function for compilation right now (always False before torch 2.3)."""
    check = getattr(torch.compiler, "is_compiling", None)
    return bool(check and check())


def enabled() -> bool:
    """Whether ``@kernel`` functions run compiled here (inside ``compiled_kernels`` and compiling works)."""
    return _ENABLED.get() and not _BROKEN


def kernel(fn: F) -> F:
    """Mark a pure tensor function (no caching, no Python side effects) as compilable."""
    compiled: Callable[..., Any] | None = None

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal compiled
        if not enabled() or is_compiling():
            return fn(*args, **kwargs)
        if compiled is None:
            compiled = torch.compile(fn)
        try:
            return compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - compiler failures fall back; a real error in fn re-raises below
            out = fn(*args, **kwargs)
            _BROKEN.append(f"{type(exc).__name__}: {exc}".splitlines()[0])
            warnings.warn(f"torch.compile failed for the metric kernels ({_BROKEN[0]}); using eager torch.",
                          RuntimeWarning, stacklevel=2)
            return out

    return wrapper  # type: ignore[return-value]
