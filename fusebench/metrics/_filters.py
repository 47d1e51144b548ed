"""Shared kernels for every metric family: padding, separable filtering, Sobel, MATLAB ``gradient``, histograms.

All functions take (N, C, H, W) float tensors and keep their device and dtype. Filtering is done with shifted
slices (a handful of fused multiply-adds per tap), which is exact, works for float64 on every device and is
faster on CPU than ``conv2d`` for the small separable kernels the metrics use. The convention (padding mode,
correlation vs. convolution, kernel normalisation) is always an argument, so no metric re-derives a kernel.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor

from fusebench.metrics import _compile

Padding = Literal["valid", "zeros", "reflect", "symmetric", "replicate"]


def pad(x: Tensor, ph: int, pw: int, mode: Padding) -> Tensor:
    """Pad H by ``ph`` and W by ``pw`` on both sides.

    ``reflect`` mirrors without repeating the edge (numpy ``reflect``), ``symmetric`` repeats it (numpy
    ``symmetric``, scipy.ndimage ``reflect``), ``replicate`` repeats the edge value (MATLAB ``replicate``).
    """
    if mode == "valid" or (ph == 0 and pw == 0):
        return x
    if mode == "zeros":
        return torch.nn.functional.pad(x, (pw, pw, ph, ph))
    if mode in ("reflect", "replicate"):
        return torch.nn.functional.pad(x, (pw, pw, ph, ph), mode=mode)
    if mode == "symmetric":
        if pw:
            x = torch.cat([x[..., :pw].flip(-1), x, x[..., -pw:].flip(-1)], dim=-1)
        if ph:
            x = torch.cat([x[..., :ph, :].flip(-2), x, x[..., -ph:, :].flip(-2)], dim=-2)
        return x
    raise ValueError(f"Unknown padding mode {mode!r}")


def _tap(x: Tensor, dim: int, start: int, n: int, step: int) -> Tensor:
    """``n`` entries of ``x`` along ``dim`` from ``start`` every ``step`` (a view)."""
    if step == 1:
        return x.narrow(dim, start, n)
    index = [slice(None)] * x.ndim
    index[dim] = slice(start, start + (n - 1) * step + 1, step)
    return x[tuple(index)]


def correlate1d(x: Tensor, weights: Sequence[float] | Tensor, dim: int, step: int = 1,
                out: Tensor | None = None) -> Tensor:
    """'valid' 1-D correlation along ``dim`` (-1 or -2) by shifted slices, keeping every ``step``-th output
    (bit-identical to subsampling the full result); written into ``out`` when given."""
    w = weights.tolist() if isinstance(weights, Tensor) else list(weights)
    n = (x.shape[dim] - len(w)) // step + 1
    taps = [(k, wk) for k, wk in enumerate(w) if wk != 0.0]
    if not taps:
        return _tap(x, dim, 0, n, step) * 0.0 if out is None else out.zero_()
    k0, w0 = taps[0]
    first = _tap(x, dim, k0, n, step)
    out = first * w0 if out is None else torch.mul(first, w0, out=out)
    for k, wk in taps[1:]:
        out.add_(_tap(x, dim, k, n, step), alpha=wk)  # in place: one pass over memory per tap
    return out


_CHUNK_BYTES = 1 << 22  # filter ~4 MB of planes at a time so each tap pass stays in cache (CPU)


def separable(x: Tensor, rows: Sequence[float] | Tensor, cols: Sequence[float] | Tensor,
              padding: Padding = "valid", step: int = 1) -> Tensor:
    """Correlate with the outer product ``rows[:, None] * cols[None, :]`` (rows act along H, cols along W),
    keeping every ``step``-th output along H and W (``[..., ::step, ::step]`` of the full result, computed
    directly)."""
    x = pad(x, len(rows) // 2, len(cols) // 2, padding)
    if _compile.enabled() and not _compile.is_compiling():  # inside a compiled core: plain slices
        taps = [_tap_tensor(tuple(w.tolist() if isinstance(w, Tensor) else w), x.dtype, x.device)
                for w in (rows, cols)]
        return _separable_fused(x, *taps, step)
    if x.device.type != "cpu":
        return separable_conv(x, rows, cols, step)
    if x.numel() * x.element_size() <= _CHUNK_BYTES:
        return correlate1d(correlate1d(x, cols, -1, step), rows, -2, step)
    planes = x.reshape(-1, 1, *x.shape[-2:])
    oh, ow = (x.shape[-2] - len(rows)) // step + 1, (x.shape[-1] - len(cols)) // step + 1
    out = torch.empty(len(planes), 1, oh, ow, dtype=x.dtype, device=x.device)
    chunk = max(1, _CHUNK_BYTES // (planes[0].numel() * x.element_size()))
    for i in range(0, len(planes), chunk):
        correlate1d(correlate1d(planes[i:i + chunk], cols, -1, step), rows, -2, step, out=out[i:i + chunk])
    return out.reshape(*x.shape[:-2], oh, ow)


_STRIP_BYTES = 1 << 17  # eager CPU: ~128 KB of rows per plane, so a strip's planes and temporaries stay in L2


def strip_rows(x: Tensor, minimum: int = 8) -> int:
    """Rows per strip for cache-blocked evaluation of ``x`` (N, C, H, W): eager torch on CPU makes one pass over
    memory per operation, so a metric whose planes do not fit in cache runs ~2x faster strip by strip (measured
    on Qabf and Nabf at 640x480). Compiled kernels and accelerators take the whole image (one strip)."""
    if x.device.type != "cpu" or _compile.enabled():
        return x.shape[-2]
    return max(minimum, _STRIP_BYTES // max(1, x.shape[0] * x.shape[-1] * x.element_size()))


def strip_sums(fn: Callable[..., tuple[Tensor, ...]], inputs: Sequence[Tensor], halo: int,
               rows: int) -> tuple[Tensor, ...]:
    """Sum over strips of ``fn(*strips)``, the strips of each (N, C, H, W) input covering output rows
    ``[r0, r0 + rows)`` with ``halo`` extra input rows below (``H - halo`` output rows in all); ``fn`` returns
    per-image partial sums."""
    oh = inputs[0].shape[-2] - halo
    totals: tuple[Tensor, ...] | None = None
    for r0 in range(0, oh, rows):
        r = min(rows, oh - r0)
        part = fn(*(t.narrow(-2, r0, r + halo) for t in inputs))
        totals = part if totals is None else tuple(a + b for a, b in zip(totals, part))
    assert totals is not None
    return totals


def separable_strips(x: Tensor, rows: Sequence[float], cols: Sequence[float], strip: int,
                     prepare: Callable[[Tensor], Tensor] | None = None) -> Iterator[tuple[int, Tensor]]:
    """'valid' separable correlation of ``prepare(x)`` (default ``x``) in strips of ``strip`` output rows:
    yields ``(first_row, block)``. Each horizontal pass runs on input rows once (no recomputed halo), just
    before the vertical pass that needs them, so both passes work on data still in cache. ``prepare`` maps
    a row strip of ``x`` to the planes to filter (e.g. ``moment_stack``); it must act row by row."""
    prep = prepare if prepare is not None else (lambda t: t)
    kh, h = len(rows), x.shape[-2]
    oh = h - kh + 1
    if strip >= oh:  # one strip: the plain (or compiled) filter
        yield 0, separable(prep(x), rows, cols)
        return
    buf: Tensor | None = None
    done = 0
    for r0 in range(0, oh, strip):
        r = min(strip, oh - r0)
        need = r0 + r + kh - 1
        if need > done:
            t = prep(x.narrow(-2, done, need - done))
            if buf is None:
                buf = t.new_empty(*t.shape[:-2], h, t.shape[-1] - len(cols) + 1)
            correlate1d(t, cols, -1, out=buf.narrow(-2, done, need - done))
            done = need
        assert buf is not None
        # the vertical pass as one banded matrix product per strip: ~2x faster than a pass per tap on CPU
        yield r0, torch.matmul(_band(tuple(rows), r, buf.dtype, buf.device), buf.narrow(-2, r0, r + kh - 1))


@functools.lru_cache(maxsize=64)
def _band(weights: tuple[float, ...], n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(n, n + k - 1) matrix whose row i holds the k taps at columns i..i+k-1: 'valid' correlation along the
    rows of what it multiplies."""
    k = len(weights)
    out = torch.zeros(n, n + k - 1, dtype=dtype, device=device)
    w = torch.tensor(weights, dtype=dtype, device=device)
    for i in range(n):
        out[i, i:i + k] = w
    return out


@functools.lru_cache(maxsize=64)
def _tap_tensor(weights: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """Filter taps as a tensor for the compiled filter (cached: the metrics use a handful of windows)."""
    return torch.tensor(weights, dtype=dtype, device=device)


@_compile.kernel
def _separable_fused(x: Tensor, rows: Tensor, cols: Tensor, step: int) -> Tensor:
    """'valid' separable correlation as written for ``torch.compile``: each direction becomes one fused loop.

    Compiled as its own graph on purpose: inside a larger graph the compiler may inline the horizontal pass
    into the vertical one and recompute it for every vertical tap.
    """
    def along(t: Tensor, w: Tensor, dim: int) -> Tensor:
        n = (t.shape[dim] - w.shape[0]) // step + 1
        out = _tap(t, dim, 0, n, step) * w[0]
        for k in range(1, w.shape[0]):
            out = out + _tap(t, dim, k, n, step) * w[k]
        return out

    return along(along(x, cols, -1), rows, -2)


def separable_conv(x: Tensor, rows: Sequence[float] | Tensor, cols: Sequence[float] | Tensor,
                   step: int = 1) -> Tensor:
    """'valid' separable correlation as two strided ``conv2d`` calls (the accelerator path)."""
    planes = x.reshape(-1, 1, *x.shape[-2:])
    kw = torch.as_tensor(cols, dtype=x.dtype).to(x.device).view(1, 1, 1, -1)
    kh = torch.as_tensor(rows, dtype=x.dtype).to(x.device).view(1, 1, -1, 1)
    conv = torch.nn.functional.conv2d
    out = conv(conv(planes, kw, stride=(1, step)), kh, stride=(step, 1))
    return out.reshape(*x.shape[:-2], *out.shape[-2:])


@_compile.kernel
def moment_stack(x: Tensor, y: Tensor) -> Tensor:
    """(N, 3S+2, H, W) stack [x, y, x*x, y*y, x*y] of (N, S, H, W) ``x`` and (N, 1, H, W) ``y``, in one buffer."""
    s = x.shape[1]
    out = torch.empty(x.shape[0], 3 * s + 2, *x.shape[-2:], dtype=x.dtype, device=x.device)
    out[:, :s] = x
    out[:, s:s + 1] = y
    torch.mul(x, x, out=out[:, s + 1:2 * s + 1])
    torch.mul(y, y, out=out[:, 2 * s + 1:2 * s + 2])
    torch.mul(x, y, out=out[:, 2 * s + 2:])
    return out


def gaussian_1d(size: int, sigma: float) -> tuple[float, ...]:
    """Normalised 1-D Gaussian taps (computed in float64) whose outer product equals MATLAB
    ``fspecial('gaussian', size, sigma)``. Python floats, so compiled filters see constants.

    fspecial zeroes entries below eps*max before normalising; for the windows used here (sigma >= size/8)
    no entry is that small, so the separable form is exact.
    """
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return tuple((g / g.sum()).tolist())


def box_1d(size: int) -> tuple[float, ...]:
    """Normalised uniform window (scipy ``uniform_filter``)."""
    return (1.0 / size,) * size


def sobel(x: Tensor, padding: Padding = "zeros", convolve: bool = True,
          normalized: bool = False) -> tuple[Tensor, Tensor]:
    """Sobel responses ``(gx, gy)`` with the field's raw kernels, 'same' size.

    gx uses ``[-1 0 1; -2 0 2; -1 0 1]`` and gy ``[1 2 1; 0 0 0; -1 -2 -1]``; ``convolve=True`` applies
    them as true convolution (MATLAB ``conv2``), ``False`` as correlation (``filter2``/``imfilter``).
    ``normalized`` divides by 8.
    """
    sign = -1.0 if convolve else 1.0
    scale = 1.0 / 8.0 if normalized else 1.0
    xp = pad(x, 1, 1, padding)
    smooth = [1.0 * scale, 2.0 * scale, 1.0 * scale]
    diff = [-1.0 * sign, 0.0, 1.0 * sign]
    gx = correlate1d(correlate1d(xp, diff, -1), smooth, -2)
    gy = correlate1d(correlate1d(xp, smooth, -1), [-d for d in diff], -2)
    return gx, gy


def matlab_gradient(x: Tensor) -> tuple[Tensor, Tensor]:
    """MATLAB ``gradient``: central differences inside, one-sided differences on the first/last row/column."""

    def along(t: Tensor, dim: int) -> Tensor:
        n = t.shape[dim]
        if n < 2:
            return torch.zeros_like(t)
        first = t.narrow(dim, 1, 1) - t.narrow(dim, 0, 1)
        last = t.narrow(dim, n - 1, 1) - t.narrow(dim, n - 2, 1)
        inner = (t.narrow(dim, 2, n - 2) - t.narrow(dim, 0, n - 2)) / 2
        return torch.cat([first, inner, last], dim=dim)

    return along(x, -1), along(x, -2)


@_compile.kernel
def levels(x: Tensor, bins: int = 256) -> Tensor:
    """Integer grey levels (long) of a 0..255 image: round half to even, clamped to ``[0, bins-1]``."""
    return torch.round(x).clamp(0, bins - 1).long()


@_compile.kernel
def _bin_index(a: Tensor, b: Tensor | None, bins: int) -> Tensor:
    """Flat ``bincount`` indices of (N, ...) levels ``a`` (or of the pairs ``(a, b)``: a * bins + b), image i's
    shifted into its own block of bins."""
    n = a.shape[0]
    index = a.reshape(n, -1) if b is None else a.reshape(n, -1) * bins + b.reshape(n, -1)
    block = bins if b is None else bins * bins
    return (index + torch.arange(n, device=a.device, dtype=index.dtype)[:, None] * block).reshape(-1)


def histogram(lv: Tensor, bins: int = 256) -> Tensor:
    """Per-image counts (N, bins) of (N, ...) integer levels, one ``bincount`` for the whole batch."""
    n = lv.shape[0]
    return torch.bincount(_bin_index(lv, None, bins), minlength=n * bins).reshape(n, bins)


def joint_histogram(a: Tensor, b: Tensor, bins: int = 256) -> Tensor:
    """Per-image joint counts (N, bins, bins) of two (N, ...) integer-level tensors."""
    n = a.shape[0]
    return torch.bincount(_bin_index(a, b, bins), minlength=n * bins * bins).reshape(n, bins, bins)


@_compile.kernel
def entropy(counts: Tensor, dims: int = 1, base: float = 2.0) -> Tensor:
    """Shannon entropy of per-image histograms over the last ``dims`` dimensions (0 log 0 = 0)."""
    flat = counts.reshape(*counts.shape[: counts.ndim - dims], -1)
    p = flat / flat.sum(-1, keepdim=True)
    return -torch.special.xlogy(p, p).sum(-1) / math.log(base)
