"""Pixel-error metrics: MSE, PSNR and RMSE, each averaged over the two sources.

The three references use three incompatible PSNRs: CDDFuse takes max(F) as the peak; Tang computes the MSE
on [0, 1] data but keeps the peak 255 (ordinary PSNR + 48.13 dB); VIFB's "mse" is sqrt(SSE)/(MN).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from fusebench.metrics._checks import prepare, reduce
from fusebench.metrics._compile import kernel
from fusebench.metrics._registry import register_metric
from fusebench.metrics.statistics import Gram, gram


def _source_mse(f: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """mean((A - F)^2) and mean((B - F)^2) per image: from evaluate()'s shared exact sums where they apply."""
    ex = gram(f, a, b)
    if ex is not None:
        return (ex.sum_sq_diff(Gram.A, Gram.F).double() / ex.n, ex.sum_sq_diff(Gram.B, Gram.F).double() / ex.n)
    return _mean_sq(a, f), _mean_sq(b, f)


@kernel
def _mean_sq(x: Tensor, f: Tensor) -> Tensor:
    return (x - f).square().mean(dim=(-3, -2, -1))


@kernel
def _vifb_mse(x: Tensor, f: Tensor) -> Tensor:
    """VIFB's "mse": sqrt(sum (X - F)^2) / (M N) (neither a mean squared nor a root-mean-squared error)."""
    m, n = f.shape[-2:]
    return (x - f).square().sum(dim=(-3, -2, -1)).sqrt() / (m * n)


@register_metric(
    "MSE",
    higher_is_better=False,
    description="Mean squared error between the fused image and each source, mean over sources.",
    min_size=1,
    definitions={
        "fusebench": "(mean((A-F)^2) + mean((B-F)^2)) / 2 on the 0..255 scale.",
        "cddfuse": "same.",
        "tang": "same on data divided by 255 (= fusebench / 255^2).",
    },
)
def mse(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none",
        definition: Literal["standard", "tang"] = "standard") -> Tensor:
    """MSE = (mean((IR - F)^2) + mean((VI - F)^2)) / 2 (0..255 scale; "tang": on [0, 1]).

    Example:
        >>> f = torch.zeros(2, 2, dtype=torch.uint8)
        >>> mse(f, f + 2, f)
        tensor([2.], dtype=torch.float64)
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=1)
    ea, eb = _source_mse(f, a, b)
    out = (ea + eb) / 2
    return reduce(out / 255.0**2 if definition == "tang" else out, reduction)


@register_metric(
    "PSNR",
    higher_is_better=True,
    description="Peak signal-to-noise ratio of the fused image against the sources (dB).",
    min_size=1,
    definitions={
        "fusebench": "10 log10(255^2 / MSE), MSE the mean over sources on 0..255.",
        "cddfuse": "10 log10(max(F)^2 / MSE): the peak is the fused image's maximum.",
        "tang": "10 log10(255^2 / MSE_n), MSE_n on [0,1] data (= standard PSNR + 48.13 dB).",
        "vifb": "20 log10(255 / sqrt((e(VI,F) + e(IR,F))/2)), e(X,F) = sqrt(sum (X-F)^2)/(MN); "
                "colour F: mean over RGB channels.",
    },
)
def psnr(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none",
         definition: Literal["standard", "cddfuse", "tang", "vifb"] = "standard") -> Tensor:
    """PSNR = 10 log10(peak^2 / MSE) in dB, MSE averaged over the two sources; +inf when F equals both.

    Args:
        definition: "standard" (peak 255), "cddfuse" (peak max(F)), "tang" (MSE on [0, 1]), "vifb".

    Example:
        >>> f = torch.zeros(2, 2, dtype=torch.uint8)
        >>> psnr(f, f + 255, f + 255)
        tensor([0.], dtype=torch.float64)
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=1)
    if definition == "vifb":
        e = (_vifb_mse(b, f) + _vifb_mse(a, f)) / 2
        return reduce(20 * torch.log10(255.0 / e.sqrt()), reduction)
    ea, eb = _source_mse(f, a, b)
    err = (ea + eb) / 2
    if definition == "cddfuse":
        peak2 = f.amax(dim=(-3, -2, -1)).square()
    elif definition == "tang":
        peak2, err = torch.full_like(err, 255.0**2), err / 255.0**2
    else:
        peak2 = torch.full_like(err, 255.0**2)
    return reduce(10 * torch.log10(peak2 / err), reduction)


@register_metric(
    "RMSE",
    higher_is_better=False,
    description="Root mean squared error against each source, mean over sources.",
    min_size=1,
    definitions={
        "fusebench": "(sqrt(mean((A-F)^2)) + sqrt(mean((B-F)^2))) / 2 on 0..255.",
        "vifb": "(e(VI,F) + e(IR,F)) / 2 with VIFB's e(X,F) = sqrt(sum (X-F)^2)/(MN); colour: channel mean.",
    },
)
def rmse(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none",
         definition: Literal["standard", "vifb"] = "standard") -> Tensor:
    """RMSE = (rmse(IR, F) + rmse(VI, F)) / 2 on 0..255 ("vifb": VIFB's sqrt(SSE)/(MN) per source).

    Example:
        >>> f = torch.zeros(2, 2, dtype=torch.uint8)
        >>> rmse(f, f + 4, f)
        tensor([2.], dtype=torch.float64)
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=1)
    if definition == "vifb":
        return reduce((_vifb_mse(b, f) + _vifb_mse(a, f)) / 2, reduction)
    ea, eb = _source_mse(f, a, b)
    return reduce((ea.sqrt() + eb.sqrt()) / 2, reduction)
