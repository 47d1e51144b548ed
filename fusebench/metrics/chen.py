"""Perception-based metrics from Z. Liu's toolbox as shipped by VIFB: Chen-Blum (Qcb) and Chen-Varshney (Qcv).

Both min-max normalise every image to integer 0..255 levels (``normalize1``), filter in the frequency domain
on MATLAB's ``freqspace`` grid and work on the whole image, so they are computed in float64 regardless of
the input dtype (the contrast ratio of Qcb divides small band-pass responses). The filtered images are real
up to rounding (the filters are even on the DFT grid), so the real part is kept.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from fusebench.metrics._cache import cached
from fusebench.metrics._checks import prepare, reduce
from fusebench.metrics._filters import pad, separable, sobel
from fusebench.metrics._registry import register_metric


def normalize1(x: Tensor) -> Tensor:
    """Z. Liu's normalize1: round(255 (x - min) / (max - min)), half away from zero; all-zero images unchanged."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    span = torch.where(hi == lo, 1.0, hi - lo)
    out = torch.floor((x - lo) / span * 255 + 0.5)
    return torch.where((hi == 0) & (lo == 0), x, out)


def _radius(h: int, w: int, divisor: float, x: Tensor) -> Tensor:
    """r = sqrt(u^2 + v^2) on ``freqspace([h, w], 'meshgrid')`` scaled by w/divisor and h/divisor."""
    def axis(n: int) -> Tensor:
        return (torch.arange(n, dtype=torch.float64, device=x.device) - n // 2) * (2.0 / n)

    u = axis(w)[None, :] * (w / divisor)
    v = axis(h)[:, None] * (h / divisor)
    return torch.sqrt(u * u + v * v)


def _half_response(response: Tensor) -> Tensor:
    """S centred as by fftshift, moved to the DFT origin and cut to the ``rfft2`` half-plane."""
    return torch.fft.ifftshift(response)[..., : response.shape[-1] // 2 + 1]


def _normalised(a: Tensor, b: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
    """normalize1 of (IR, VI, F) stacked on the batch axis, (3N, 1, H, W) float64, and its ``rfft2``; shared by
    Qcb and Qcv inside one evaluate() call."""
    def compute() -> tuple[Tensor, Tensor]:
        x = normalize1(torch.cat([a, b, f]).double())
        return x, torch.fft.rfft2(x)

    return cached("chen_normalised", (a, b, f), None, compute)


def _freq_filter(spec: Tensor, response: Tensor, size: tuple[int, int]) -> Tensor:
    """``real(ifft2(ifftshift(fftshift(fft2(x)) .* S)))`` from ``spec = rfft2(x)``: S is even on the DFT grid,
    so the filtered image is real and the half-plane transform gives it exactly (up to rounding)."""
    return torch.fft.irfft2(spec * _half_response(response), s=size)


def _local_contrast(x: Tensor) -> Tensor:
    """|G1*x / G2*x - 1| with unnormalised 31x31 Gaussians (sigma 2, 4), filter2 'same' zero padding."""
    r = torch.arange(-15, 16, dtype=torch.float64, device=x.device)
    xp = pad(x, 15, 15, "zeros")  # padded once for both windows
    out = []
    for sigma in (2.0, 4.0):
        g = torch.exp(-(r * r) / (2 * sigma * sigma))
        out.append(separable(xp, g / (2 * math.pi * sigma * sigma), g))
    return out[0].div_(out[1]).sub_(1).abs_()


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
    r = _radius(h, w, 30.0, x)
    s = torch.exp(-((r / 15.3870) ** 2)) - 0.7622 * torch.exp(-((r / 1.3456) ** 2))
    c = _local_contrast(_freq_filter(spec, s, (h, w)))
    cp = c**3 / (c**2 + 1e-4)
    ca, cb, cf = cp.chunk(3)
    qaf = torch.where(ca < cf, ca / cf, cf / ca)
    qbf = torch.where(cb < cf, cb / cf, cf / cb)
    den = ca * ca + cb * cb
    q = (ca * ca / den) * qaf + (cb * cb / den) * qbf
    return reduce(q.mean(dim=(-3, -2, -1)).to(out_dtype), reduction)


def _block_sum(x: Tensor, size: int = 16) -> Tensor:
    """Sums over size x size blocks, partial blocks zero-padded (MATLAB ``blkproc``)."""
    h, w = x.shape[-2:]
    ph, pw = -h % size, -w % size
    x = torch.nn.functional.pad(x, (0, pw, 0, ph))
    n, c, hh, ww = x.shape
    return x.reshape(n, c, hh // size, size, ww // size, size).sum(dim=(3, 5))


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
    gx, gy = sobel(src, padding="zeros", convolve=False)  # filter2 with the Sobel pair, 'same'
    lam = _block_sum(torch.sqrt(gx * gx + gy * gy) ** 5)
    r = _radius(h, w, 8.0, src)
    csf = 2.6 * (0.0192 + 0.144 * r) * torch.exp(-((0.144 * r) ** 1.1))
    spec_f = spec[2 * n:]
    diff = spec[: 2 * n] - torch.cat([spec_f, spec_f])  # the transform is linear: FFT(X - F) = FFT(X) - FFT(F)
    d = _block_sum(_freq_filter(diff, csf, (h, w)) ** 2) / 256.0
    num = (lam * d).sum(dim=(-3, -2, -1)).reshape(2, n).sum(0)
    den = lam.sum(dim=(-3, -2, -1)).reshape(2, n).sum(0)
    return reduce((num / den).to(out_dtype), reduction)
