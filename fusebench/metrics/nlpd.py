"""Normalised Laplacian pyramid distance (NLPD, Laparra et al. 2016) in a fusion form.

No fusion reference implements NLPD. fusebench scores NLPD(A, F) and NLPD(B, F) with the single-pair
definition of Laparra's ``NLP_dist.m`` as ported by pyiqa (6 levels, 5x5 binomial-like filter [.05 .25 .4 .25
.05], symmetric padding for the reduction, zero-interleaved upsampling, divisive normalisation by fixed
3x3 filters and sigmas, images on [0, 1]) and reports their mean: lower is better.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fusebench.metrics._checks import prepare, reduce
from fusebench.metrics._compile import kernel
from fusebench.metrics._filters import correlate1d, pad, separable
from fusebench.metrics._registry import register_metric

_TAPS = (0.05, 0.25, 0.4, 0.25, 0.05)
_SIGMAS = (0.0248, 0.0185, 0.0179, 0.0191, 0.0220, 0.2782)
# Divisive-normalisation filters (applied by true convolution in NLP_dist.m); rows of 3x3 kernels.
_DN = (
    ((0, 0.1011, 0), (0.1493, 0, 0.1460), (0, 0.1015, 0)),
    ((0, 0.0757, 0), (0.1986, 0, 0.1846), (0, 0.0837, 0)),
    ((0, 0.0477, 0), (0.2138, 0, 0.2243), (0, 0.0467, 0)),
    ((0, 0, 0), (0.2503, 0, 0.2616), (0, 0, 0)),
    ((0, 0, 0), (0.2598, 0, 0.2552), (0, 0, 0)),
    ((0, 0, 0), (0.2215, 0, 0.0717), (0, 0, 0)),
)


def _normalise(x: Tensor, level: int) -> Tensor:
    """x / (sigma + |x| convolved with the level's 3x3 filter, zero padding)."""
    k = _DN[level]
    ax = pad(x.abs(), 1, 1, "zeros")
    h, w = x.shape[-2:]
    acc = torch.zeros_like(x)
    for i in range(3):
        for j in range(3):
            wk = k[2 - i][2 - j]  # true convolution = correlation with the rotated kernel
            if wk:
                acc.add_(ax[..., i:i + h, j:j + w], alpha=wk)
    return x / (_SIGMAS[level] + acc)


def _upsample_blur(x: Tensor, dim: int, n: int) -> Tensor:
    """Along ``dim``: zero-interleave 2x, correlate with the 5 taps (zero padding) and keep outputs 2..n+1.

    Polyphase form: even outputs take taps 0, 2, 4 and odd ones taps 1, 3 of ``x``; the skipped products are
    exact zeros and the taps are added in the same order, so it is bit-identical to filtering the
    zero-interleaved signal (and nowhere needs the zero padding).
    """
    even = correlate1d(x, _TAPS[0::2], dim).narrow(dim, 0, (n + 1) // 2)
    odd = correlate1d(x.narrow(dim, 1, x.shape[dim] - 1), _TAPS[1::2], dim).narrow(dim, 0, n // 2)
    shape = list(x.shape)
    shape[dim] = n
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    index = [slice(None)] * x.ndim
    index[dim] = slice(0, n, 2)
    out[tuple(index)] = even
    index[dim] = slice(1, n, 2)
    out[tuple(index)] = odd
    return out


def nlp_pyramid(x: Tensor) -> list[Tensor]:
    """The six normalised Laplacian pyramid bands of (N, 1, H, W) images on [0, 1]."""
    bands = []
    j = x
    for level in range(5):
        low = separable(pad(j, 2, 2, "symmetric"), _TAPS, _TAPS, step=2)
        h, w = j.shape[-2:]
        rep = 4 * pad(low, 1, 1, "replicate")
        blurred = _upsample_blur(_upsample_blur(rep, -1, w), -2, h)  # W first, as the separable filter does
        bands.append(_normalise(j - blurred, level))
        j = low
    bands.append(_normalise(j, 5))
    return bands


def _band_distance(px: list[Tensor], py: list[Tensor]) -> Tensor:
    """Single-pair NLPD of matching pyramids: mean over the 6 bands of the RMS band difference."""
    d = [(bx - by).square().mean(dim=(-3, -2, -1)).sqrt() for bx, by in zip(px, py)]
    return torch.stack(d, dim=1).mean(1)


@register_metric(
    "NLPD",
    higher_is_better=False,
    description="Normalised Laplacian pyramid distance of F to each source (Laparra 2016), mean over sources.",
    reference="Laparra et al., Electronic Imaging 2016, doi:10.2352/ISSN.2470-1173.2016.16.HVEI-103",
    min_size=32,
    definitions={
        "fusebench": "(NLPD(A,F) + NLPD(B,F)) / 2 on [0,1] data; NLPD = mean over 6 levels of the RMS "
                     "difference of divisively normalised Laplacian bands (pyiqa/NLP_dist.m parameters).",
    },
)
def nlpd(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none") -> Tensor:
    """NLPD = (NLPD(IR, F) + NLPD(VI, F)) / 2; 0 when F equals both sources.

    Example:
        >>> x = (torch.arange(32 * 32).reshape(32, 32) * 37 % 251).to(torch.uint8)
        >>> nlpd(x, x, x)
        tensor([0.], dtype=torch.float64)
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=32)
    return reduce(_nlpd_core(f, a, b), reduction)


@kernel
def _nlpd_core(f: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """(NLPD(A, F) + NLPD(B, F)) / 2 of (N, 1, H, W) images on 0..255."""
    n = f.shape[0]
    bands = nlp_pyramid(torch.cat([a, b, f]) / 255.0)  # F's pyramid once, shared by both pairs
    sources = [band[: 2 * n] for band in bands]
    fused = [torch.cat([band[2 * n:]] * 2) for band in bands]
    return _band_distance(sources, fused).reshape(2, n).mean(0)
