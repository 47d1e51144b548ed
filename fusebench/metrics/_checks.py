"""Input validation and conversion shared by every metric: one message template, one place.

Functional metrics take grey batches (N, H, W), (N, 1, H, W) or a single (H, W) image, as torch tensors or
numpy arrays. uint8 data is on 0..255; float data needs its ``data_range`` (1.0 or 255.0) stated, because
several metrics (VIF's noise variance, SSIM's constants, PSNR's peak) depend on the absolute scale. Every
metric works internally on the 0..255 scale in float64 (or float32 when the input is float32).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
import torch
from torch import Tensor

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_TRUSTED: ContextVar[bool] = ContextVar("fusebench_metrics_trusted", default=False)
_INTEGERS: ContextVar[bool] = ContextVar("fusebench_metrics_integers", default=False)


@contextmanager
def trusted_inputs() -> Iterator[None]:
    """Skip the per-metric NaN/range scans: used by evaluate(), which validates each image once."""
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


@contextmanager
def integer_inputs(enabled: bool = True) -> Iterator[None]:
    """Scope in which the metrics' inputs are integer grey levels (evaluate() quantises them), so sums of their
    products are exact in float64 and the global statistics may come from one exact Gram matrix."""
    token = _INTEGERS.set(enabled)
    try:
        yield
    finally:
        _INTEGERS.reset(token)


def inputs_are_integers() -> bool:
    """Whether the current metric call is inside ``integer_inputs``."""
    return _INTEGERS.get()


def to_tensor(x: Any, name: str) -> Tensor:
    """numpy / PIL / torch -> torch tensor without copying where possible; TypeError for anything else."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "uif":
            raise TypeError(f"Expected `{name}` to have a numeric dtype. Got {x.dtype}.")
        return torch.from_numpy(np.ascontiguousarray(x))
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(x, Image.Image):
        return torch.from_numpy(np.array(x.convert("RGB") if x.mode not in ("L", "RGB") else x))
    raise TypeError(f"Expected `{name}` to be a torch.Tensor, numpy.ndarray or PIL.Image. Got {type(x).__name__}.")


def check_dtype(x: Tensor, name: str) -> None:
    """uint8 and floating point only: other integer types have no implied range."""
    if x.dtype != torch.uint8 and x.dtype not in _FLOATS:
        raise TypeError(
            f"Expected `{name}` to be uint8 (0..255) or floating point with a stated data_range. Got {x.dtype}."
        )


def resolve_range(x: Tensor, name: str, data_range: float | None) -> float:
    """The value range of ``x``: 255 for uint8, ``data_range`` for floats (required)."""
    if x.dtype == torch.uint8:
        if data_range not in (None, 255, 255.0):
            raise ValueError(f"`{name}` is uint8, so its data_range is 255. Got data_range={data_range}.")
        return 255.0
    if data_range is None:
        raise ValueError(
            f"`{name}` is floating point ({x.dtype}): pass data_range=1.0 for images in [0, 1] or "
            "data_range=255.0 for images in [0, 255]."
        )
    if not isinstance(data_range, (int, float)) or not data_range > 0:
        raise ValueError(f"Expected data_range to be a positive number. Got {data_range!r}.")
    return float(data_range)


def check_values(x: Tensor, name: str, data_range: float) -> None:
    """Finite and inside [0, data_range]."""
    if x.numel() == 0:
        raise ValueError(f"Expected `{name}` to be non-empty. Got shape {tuple(x.shape)}.")
    if x.dtype == torch.uint8 or _TRUSTED.get():
        return
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"Expected `{name}` to contain only finite values. Got NaN or inf.")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > data_range:
        raise ValueError(
            f"Expected `{name}` values in [0, {data_range:g}] (data_range={data_range:g}). Got [{lo:g}, {hi:g}]."
        )


def grey_batch(x: Any, name: str) -> Tensor:
    """(H, W), (N, H, W) or (N, 1, H, W) -> (N, 1, H, W); colour is rejected with a pointer to evaluate()."""
    t = to_tensor(x, name)
    check_dtype(t, name)
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[:, None]
    elif t.ndim == 4 and t.shape[1] != 1:
        raise ValueError(
            f"Expected `{name}` to be grey, (N, 1, H, W). Got {tuple(t.shape)}; convert colour images to "
            "luminance first, or use fusebench.metrics.evaluate(), which handles colour per profile."
        )
    elif t.ndim not in (2, 3, 4):
        raise ValueError(f"Expected `{name}` of shape (H, W), (N, H, W) or (N, 1, H, W). Got {tuple(t.shape)}.")
    if t.shape[-1] == 0 or t.shape[-2] == 0 or t.shape[0] == 0:
        raise ValueError(f"Expected `{name}` to be non-empty. Got shape {tuple(t.shape)}.")
    return t


def work_dtype(x: Tensor) -> torch.dtype:
    """float32 in, float32 out (the fast path); everything else computes in float64."""
    return torch.float32 if x.dtype == torch.float32 else torch.float64


def prepare(
    fused: Any, ir: Any, vi: Any, *, data_range: float | None, needs_sources: bool, min_size: int = 1
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Validate and convert a metric's inputs to (N, 1, H, W) tensors on the 0..255 scale.

    Sources take the fused image's device and working dtype. Raises TypeError for bad types and
    ValueError for bad shapes, ranges and values.
    """
    f = grey_batch(fused, "fused")
    rng = resolve_range(f, "fused", data_range)
    dtype = work_dtype(f)
    out = [f]
    names = ["fused"]
    if needs_sources:
        if ir is None or vi is None:
            raise ValueError("This metric compares the fused image with its sources: pass `ir` and `vi`.")
        for src, nm in ((ir, "ir"), (vi, "vi")):
            s = grey_batch(src, nm)
            if s.shape != f.shape:
                raise ValueError(
                    f"Expected `{nm}` and `fused` to have the same shape. "
                    f"Got {nm}: {tuple(s.shape)} and fused: {tuple(f.shape)}."
                )
            out.append(s)
            names.append(nm)
    h, w = f.shape[-2:]
    if min(h, w) < min_size:
        raise ValueError(f"Expected images of at least {min_size}x{min_size} pixels for this metric. Got {h}x{w}.")
    result: list[Tensor] = []
    for t, nm in zip(out, names):
        r = rng if t is f else 255.0 if t.dtype == torch.uint8 else resolve_range(t, nm, data_range)
        check_values(t, nm, r)
        t = t.to(device=f.device, dtype=dtype)
        result.append(t if r == 255.0 else t * (255.0 / r))
    if not needs_sources:
        return result[0], None, None
    return result[0], result[1], result[2]


def reduce(values: Tensor, reduction: str) -> Tensor:
    """``"none"`` -> (N,), ``"mean"``/``"sum"`` -> scalar."""
    if reduction == "none":
        return values
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    raise ValueError(f"Expected reduction to be 'none', 'mean' or 'sum'. Got {reduction!r}.")
