"""Gradient statistics of the fused image: spatial frequency (SF), average gradient (AG), edge intensity (EI).

The references differ only in normalisation: SF divides each squared-difference sum by its own number of
differences (CDDFuse, Tang) or by M*N (VIFB); AG sums MATLAB-``gradient`` magnitudes and divides by M*N
(CDDFuse's ``np.mean``) or by (M-1)(N-1) (Tang, VIFB).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from fusebench.metrics._checks import prepare, reduce
from fusebench.metrics._compile import kernel
from fusebench.metrics._filters import matlab_gradient, sobel
from fusebench.metrics._registry import register_metric


@register_metric(
    "SF",
    higher_is_better=True,
    needs_sources=False,
    description="Spatial frequency sqrt(RF^2 + CF^2) of the fused image.",
    reference="Eskicioglu & Fisher, IEEE Trans. Commun. 1995, doi:10.1109/26.477498",
    definitions={
        "fusebench": "RF^2 = mean of the M(N-1) squared horizontal differences, CF^2 = mean of the (M-1)N "
                     "vertical ones; SF = sqrt(RF^2 + CF^2).",
        "cddfuse": "same.",
        "tang": "same.",
        "vifb": "both sums divided by M*N; colour F: channels side by side as an M x 3N image (seams included).",
    },
)
def sf(fused: Any, ir: Any = None, vi: Any = None, *, data_range: float | None = None,
       reduction: str = "none", norm: Literal["valid", "size"] = "valid") -> Tensor:
    """SF = sqrt(RF^2 + CF^2) from squared first differences along rows and columns.

    Args:
        norm: "valid" divides each sum by its number of differences, "size" by M*N (VIFB).

    Example:
        >>> sf(torch.tensor([[0, 10], [0, 10]], dtype=torch.uint8))
        tensor([10.], dtype=torch.float64)
    """
    f, _, _ = prepare(fused, None, None, data_range=data_range, needs_sources=False, min_size=2)
    dh, dv = _squared_differences(f)
    m, n = f.shape[-2:]
    if norm == "valid":
        rf2, cf2 = dh / (m * (n - 1)), dv / ((m - 1) * n)
    else:
        rf2, cf2 = dh / (m * n), dv / (m * n)
    return reduce((rf2 + cf2).sqrt(), reduction)


@kernel
def _squared_differences(f: Tensor) -> tuple[Tensor, Tensor]:
    """Per image, the sums of squared horizontal and vertical neighbour differences."""
    dh = (f[..., :, 1:] - f[..., :, :-1]).square().sum(dim=(-3, -2, -1))
    dv = (f[..., 1:, :] - f[..., :-1, :]).square().sum(dim=(-3, -2, -1))
    return dh, dv


@kernel
def _gradient_sum(f: Tensor) -> Tensor:
    """Per image, the sum of sqrt((Gx^2 + Gy^2) / 2) with MATLAB ``gradient``."""
    gx, gy = matlab_gradient(f)
    return ((gx * gx + gy * gy) / 2).sqrt().sum(dim=(-3, -2, -1))


@kernel
def _sobel_magnitude_mean(f: Tensor) -> Tensor:
    """Per image, the mean Sobel magnitude (correlation, replicate padding)."""
    gx, gy = sobel(f, padding="replicate", convolve=False)
    return torch.sqrt(gx * gx + gy * gy).mean(dim=(-3, -2, -1))


@register_metric(
    "AG",
    higher_is_better=True,
    needs_sources=False,
    description="Average gradient: mean of sqrt((Gx^2 + Gy^2)/2) with MATLAB gradient().",
    reference="Cui et al., Opt. Commun. 2015, doi:10.1016/j.optcom.2014.12.032",
    definitions={
        "fusebench": "mean over all M*N pixels of sqrt((Gx^2+Gy^2)/2), MATLAB gradient (central inside, "
                     "one-sided at the border).",
        "cddfuse": "same (np.mean).",
        "tang": "sum divided by (M-1)(N-1) (larger by MN/((M-1)(N-1))).",
        "vifb": "sum divided by (M-1)(N-1); colour F: mean over RGB channels.",
    },
)
def ag(fused: Any, ir: Any = None, vi: Any = None, *, data_range: float | None = None,
       reduction: str = "none", norm: Literal["size", "interior"] = "size") -> Tensor:
    """AG = sum sqrt((Gx^2 + Gy^2) / 2) / D, D = M*N ("size") or (M-1)(N-1) ("interior").

    Example:
        >>> ag(torch.tensor([[0, 10], [0, 10]], dtype=torch.uint8))
        tensor([7.0711], dtype=torch.float64)
    """
    f, _, _ = prepare(fused, None, None, data_range=data_range, needs_sources=False, min_size=2)
    total = _gradient_sum(f)
    m, n = f.shape[-2:]
    return reduce(total / (m * n if norm == "size" else (m - 1) * (n - 1)), reduction)


@register_metric(
    "EI",
    higher_is_better=True,
    needs_sources=False,
    description="Edge intensity: mean Sobel gradient magnitude of the fused image (replicate padding).",
    reference="VIFB (Zhang et al., CVPRW 2020), metrics/metricsEdge_intensity.m",
    min_size=1,
    definitions={
        "fusebench": "mean of sqrt(gx^2+gy^2), raw Sobel by correlation with replicate padding.",
        "vifb": "same; colour F: mean over RGB channels.",
    },
)
def ei(fused: Any, ir: Any = None, vi: Any = None, *, data_range: float | None = None,
       reduction: str = "none") -> Tensor:
    """EI = mean sqrt(gx^2 + gy^2), Sobel ``imfilter(F, fspecial('sobel'), 'replicate')`` and its transpose.

    Example:
        >>> ei(torch.zeros(4, 4, dtype=torch.uint8))
        tensor([0.], dtype=torch.float64)
    """
    f, _, _ = prepare(fused, None, None, data_range=data_range, needs_sources=False, min_size=1)
    return reduce(_sobel_magnitude_mean(f), reduction)
