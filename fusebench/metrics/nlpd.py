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
from fusebench.metrics._filters import pad, separable
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


def nlp_pyramid(x: Tensor) -> list[Tensor]:
    """The six normalised Laplacian pyramid bands of (N, 1, H, W) images on [0, 1]."""
    bands = []
    j = x
    for level in range(5):
        low = separable(pad(j, 2, 2, "symmetric"), _TAPS, _TAPS)[..., ::2, ::2]
        h, w = j.shape[-2:]
        rep = pad(low, 1, 1, "replicate")
        up = torch.zeros(*rep.shape[:-2], 2 * rep.shape[-2], 2 * rep.shape[-1], dtype=x.dtype, device=x.device)
        up[..., ::2, ::2] = 4 * rep
        blurred = separable(up, _TAPS, _TAPS, padding="zeros")[..., 2:2 + h, 2:2 + w]
        bands.append(_normalise(j - blurred, level))
        j = low
    bands.append(_normalise(j, 5))
    return bands


def nlpd_pair(x: Tensor, y: Tensor) -> Tensor:
    """Single-pair NLPD: mean over the 6 bands of the RMS band difference."""
    px, py = nlp_pyramid(x), nlp_pyramid(y)
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
    n = f.shape[0]
    d = nlpd_pair(torch.cat([a, b]) / 255.0, torch.cat([f, f]) / 255.0).reshape(2, n)
    return reduce(d.mean(0), reduction)
