"""Perception-based metrics from Z. Liu's toolbox as shipped by VIFB: Chen-Blum (Qcb) and Chen-Varshney (Qcv).

Both min-max normalise every image to integer 0..255 levels (``normalize1``), filter in the frequency domain
on MATLAB's ``freqspace`` grid and work on the whole image, so they are computed in float64 regardless of
the input dtype (the contrast ratio of Qcb divides small band-pass responses). The filtered images are real
up to rounding (the filters are even on the DFT grid), so the real part is kept.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import torch
from torch import Tensor

from fusebench.metrics import _compile
from fusebench.metrics._cache import cached
from fusebench.metrics._checks import prepare, reduce
from fusebench.metrics._compile import kernel
from fusebench.metrics._filters import pad, separable, sobel
from fusebench.metrics._registry import register_metric


@kernel
def normalize1(x: Tensor) -> Tensor:
    """Z. Liu's normalize1: round(255 (x - min) / (max - min)), half away from zero; all-zero images unchanged."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    span = torch.where(hi == lo, 1.0, hi - lo)
    out = torch.floor((x - lo) / span * 255 + 0.5)
    return torch.where((hi == 0) & (lo == 0), x, out)


def _radius(h: int, w: int, divisor: float, device: torch.device) -> Tensor:
    """r = sqrt(u^2 + v^2) on ``freqspace([h, w], 'meshgrid')`` scaled by w/divisor and h/divisor."""
    def axis(n: int) -> Tensor:
        return (torch.arange(n, dtype=torch.float64, device=device) - n // 2) * (2.0 / n)

    u = axis(w)[None, :] * (w / divisor)
    v = axis(h)[:, None] * (h / divisor)
    return torch.sqrt(u * u + v * v)


@functools.lru_cache(maxsize=8)
def _half_plane_csf(model: Literal["chen_blum", "chen_varshney"], h: int, w: int, device: torch.device) -> Tensor:
    """The metric's contrast sensitivity function S, centred as by fftshift, moved to the DFT origin and cut to
    the ``rfft2`` half-plane. Cached: it depends only on the image size (callers must not modify it)."""
    if model == "chen_blum":  # difference of Gaussians on freqspace scaled by size/30
        r = _radius(h, w, 30.0, device)
        s = torch.exp(-((r / 15.3870) ** 2)) - 0.7622 * torch.exp(-((r / 1.3456) ** 2))
    else:  # Mannos-Sakrison on freqspace scaled by size/8
        r = _radius(h, w, 8.0, device)
        s = 2.6 * (0.0192 + 0.144 * r) * torch.exp(-((0.144 * r) ** 1.1))
    return torch.fft.ifftshift(s)[..., : w // 2 + 1]


def _normalised(a: Tensor, b: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
    """normalize1 of (IR, VI, F) stacked on the batch axis, (3N, 1, H, W) float64, and its ``rfft2``; shared by
    Qcb and Qcv inside one evaluate() call."""
    def compute() -> tuple[Tensor, Tensor]:
        x = normalize1(torch.cat([a, b, f]).double())
        return x, torch.fft.rfft2(x)

    return cached("chen_normalised", (a, b, f), None, compute)


def _freq_filter(spec: Tensor, half_plane: Tensor, size: tuple[int, int]) -> Tensor:
    """``real(ifft2(ifftshift(fftshift(fft2(x)) .* S)))`` from ``spec = rfft2(x)``: S is even on the DFT grid,
    so the filtered image is real and the half-plane transform gives it exactly (up to rounding)."""
    return torch.fft.irfft2(spec * half_plane, s=size)


def _fast_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c 7^d >= n: a length the FFT handles without slow prime factors."""
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


_CONTRAST_SIGMAS = (2.0, 4.0)
_CONTRAST_RADIUS = 15  # 31x31 windows


def _contrast_window(sigma: float) -> Tensor:
    """1-D factor of the unnormalised 31x31 Gaussian: the window is its outer product over 2 pi sigma^2."""
    r = torch.arange(-_CONTRAST_RADIUS, _CONTRAST_RADIUS + 1, dtype=torch.float64)
    return torch.exp(-(r * r) / (2 * sigma * sigma))


# (factor, norm) of each window: the 31x31 window is outer(factor, factor) / norm, norm = 2 pi sigma^2
_CONTRAST_WINDOWS = tuple((tuple(_contrast_window(sigma).tolist()), 2 * math.pi * sigma * sigma)
                          for sigma in _CONTRAST_SIGMAS)


@functools.lru_cache(maxsize=8)
def _contrast_spectra(ph: int, pw: int, device: torch.device) -> Tensor:
    """Both windows' spectra (2, ph, pw // 2 + 1) on a ph x pw grid with the window centred on the origin.
    The windows are even about the origin, so the spectra are real and separable. Cached per grid size."""
    origin = torch.arange(-_CONTRAST_RADIUS, _CONTRAST_RADIUS + 1, device=device)
    spectra = []
    for factor, norm in _CONTRAST_WINDOWS:
        g = torch.tensor(factor, dtype=torch.float64, device=device)
        col = torch.zeros(ph, dtype=torch.float64, device=device).index_put_((origin % ph,), g)
        row = torch.zeros(pw, dtype=torch.float64, device=device).index_put_((origin % pw,), g)
        spectra.append(torch.fft.fft(col).real[:, None] * torch.fft.rfft(row).real[None, :] * (1.0 / norm))
    return torch.stack(spectra)


def _local_contrast(x: Tensor) -> Tensor:
    """|G1*x / G2*x - 1| with unnormalised 31x31 Gaussians (sigma 2, 4), filter2 'same' zero padding.

    Compiled, the 62 separable taps per window are two fused loops. Eager, they would be 124 passes over
    memory in float64, so the two windows are applied instead as one FFT product on a grid of at least
    (H + 15) x (W + 15), where the circular wrap only ever meets the zero padding (equal up to rounding).
    """
    if _compile.enabled():
        xp = pad(x, _CONTRAST_RADIUS, _CONTRAST_RADIUS, "zeros")
        g1, g2 = (separable(xp, [v / norm for v in factor], factor) for factor, norm in _CONTRAST_WINDOWS)
        return (g1 / g2).sub_(1).abs_()
    h, w = x.shape[-2:]
    ph, pw = _fast_length(h + _CONTRAST_RADIUS), _fast_length(w + _CONTRAST_RADIUS)
    spec = torch.fft.rfft2(x, s=(ph, pw))
    filtered = torch.fft.irfft2(spec[:, None] * _contrast_spectra(ph, pw, x.device)[:, None], s=(ph, pw))
    g1, g2 = filtered[..., :h, :w].unbind(1)
    return (g1 / g2).sub_(1).abs_()


@register_metric(
    "Qcb",
    higher_is_better=True,
    description="Chen-Blum: contrast preservation under a CSF-filtered local-contrast model.",
    reference="Chen & Blum, Image Vis. Comput. 2009, doi:10.1016/j.imavis.2007.12.002; VIFB metricsQcb.m",
    min_size=2,
    definitions={
        "fusebench": "VIFB/Z. Liu's metricChenBlum: normalize1, DoG CSF (f0=15.387, f1=1.3456, a=0.7622) on "
                     "freqspace scaled by size/30, contrast G(2)/G(4)-1, C' = C^3/(C^2+1e-4), "
                     "mean(lambda_A Q_AF + lambda_B Q_BF).",
        "vifb": "same; colour F: mean over RGB channels.",
    },
)
def qcb(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none") -> Tensor:
    """Qcb = mean(lambda_A Q_AF + lambda_B Q_BF), Q_XF = min(C'_X, C'_F)/max(...), lambda_X ~ C'_X^2.

    Example:
        >>> x = (torch.arange(32 * 32).reshape(32, 32) * 37 % 251).to(torch.uint8)
        >>> qcb(x, x, x)
        tensor([1.], dtype=torch.float64)
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=2)
    out_dtype = f.dtype
    h, w = f.shape[-2:]
    x, spec = _normalised(a, b, f)
    c = _local_contrast(_freq_filter(spec, _half_plane_csf("chen_blum", h, w, x.device), (h, w)))
    return reduce(_chen_blum_quality(c).to(out_dtype), reduction)


@kernel
def _chen_blum_quality(c: Tensor) -> Tensor:
    """mean(lambda_A Q_AF + lambda_B Q_BF) from the local contrasts (3N, 1, H, W) of IR, VI and F."""
    cp = c**3 / (c**2 + 1e-4)
    ca, cb, cf = cp.chunk(3)
    qaf = torch.where(ca < cf, ca / cf, cf / ca)
    qbf = torch.where(cb < cf, cb / cf, cf / cb)
    den = ca * ca + cb * cb
    q = (ca * ca / den) * qaf + (cb * cb / den) * qbf
    return q.mean(dim=(-3, -2, -1))


def _block_sum(x: Tensor, size: int = 16) -> Tensor:
    """Sums over size x size blocks, partial blocks zero-padded (MATLAB ``blkproc``)."""
    h, w = x.shape[-2:]
    ph, pw = -h % size, -w % size
    x = torch.nn.functional.pad(x, (0, pw, 0, ph))
    n, c, hh, ww = x.shape
    return x.reshape(n, c, hh // size, size, ww // size, size).sum(dim=(3, 5))


@kernel
def _block_mean_square(x: Tensor) -> Tensor:
    """Means of x^2 over 16x16 blocks (sums over 256, as in the reference, also for partial blocks)."""
    return _block_sum(x * x) / 256.0


@kernel
def _saliency(x: Tensor) -> Tensor:
    """Chen-Varshney region saliency: 16x16 block sums of the Sobel magnitude to the 5th power."""
    gx, gy = sobel(x, padding="zeros", convolve=False)  # filter2 with the Sobel pair, 'same'
    return _block_sum(torch.sqrt(gx * gx + gy * gy) ** 5)


@register_metric(
    "Qcv",
    higher_is_better=False,
    description="Chen-Varshney: saliency-weighted CSF-filtered squared difference to the sources (lower is better).",
    reference="Chen & Varshney, Inf. Fusion 2007, doi:10.1016/j.inffus.2005.10.001; VIFB metricsQcv.m",
    min_size=2,
    definitions={
        "fusebench": "VIFB/Z. Liu's metricChen: normalize1; lambda = block sums of Sobel magnitude^5 (16x16 "
                     "blocks); D = block means of the Mannos-Sakrison-filtered (freqspace scaled by size/8) "
                     "difference squared; sum(lambda_A D_A + lambda_B D_B) / sum(lambda_A + lambda_B).",
        "vifb": "same; colour F: mean over RGB channels.",
    },
)
def qcv(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none") -> Tensor:
    """Qcv = sum(lambda_A D_A + lambda_B D_B) / sum(lambda_A + lambda_B) over 16x16 regions.

    Example:
        >>> x = (torch.arange(32 * 32).reshape(32, 32) * 37 % 251).to(torch.uint8)
        >>> qcv(x, x, x)
        tensor([0.], dtype=torch.float64)
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=2)
    out_dtype = f.dtype
    n = f.shape[0]
    h, w = f.shape[-2:]
    x, spec = _normalised(a, b, f)
    src = x[: 2 * n]
    lam = _saliency(src)
    spec_f = spec[2 * n:]
    diff = spec[: 2 * n] - torch.cat([spec_f, spec_f])  # the transform is linear: FFT(X - F) = FFT(X) - FFT(F)
    d = _block_mean_square(_freq_filter(diff, _half_plane_csf("chen_varshney", h, w, x.device), (h, w)))
    num = (lam * d).sum(dim=(-3, -2, -1)).reshape(2, n).sum(0)
    den = lam.sum(dim=(-3, -2, -1)).reshape(2, n).sum(0)
    return reduce((num / den).to(out_dtype), reduction)
