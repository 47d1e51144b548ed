"""Global statistics: standard deviation (SD), correlation coefficient (CC) and SCD (Aslantas & Bendes 2015).

All three references agree on these (population SD; Pearson r over all pixels); Tang's CC code centres with
the wrong mean in its numerator, which has no numerical effect.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from fusebench.metrics._checks import prepare, reduce
from fusebench.metrics._compile import kernel
from fusebench.metrics._registry import register_metric


@kernel
def pearson(x: Tensor, y: Tensor) -> Tensor:
    """Pearson r per image of two (N, 1, H, W) tensors (NaN when either image is constant)."""
    xc = x - x.mean(dim=(-3, -2, -1), keepdim=True)
    yc = y - y.mean(dim=(-3, -2, -1), keepdim=True)
    num = (xc * yc).sum(dim=(-3, -2, -1))
    den = ((xc * xc).sum(dim=(-3, -2, -1)) * (yc * yc).sum(dim=(-3, -2, -1))).sqrt()
    return num / den


@register_metric(
    "SD",
    higher_is_better=True,
    needs_sources=False,
    description="Standard deviation of the fused image (contrast), 0..255 scale.",
    reference="Rao, Int. J. Remote Sens. 1997, doi:10.1080/014311697217558",
    min_size=1,
    definitions={
        "fusebench": "population SD sqrt(mean((F - mean F)^2)).",
        "cddfuse": "same (np.std, float32).",
        "tang": "same.",
        "vifb": "same ('Variance' in VIFB returns the SD); colour F: mean over RGB channels.",
    },
)
def sd(fused: Any, ir: Any = None, vi: Any = None, *, data_range: float | None = None,
       reduction: str = "none") -> Tensor:
    """SD = sqrt(mean((F - mean(F))^2)) (population, ddof = 0) on the 0..255 scale.

    Example:
        >>> import torch
        >>> sd(torch.tensor([[0, 255]], dtype=torch.uint8))
        tensor([127.5000], dtype=torch.float64)
    """
    f, _, _ = prepare(fused, None, None, data_range=data_range, needs_sources=False, min_size=1)
    return reduce(_population_sd(f), reduction)


@kernel
def _population_sd(f: Tensor) -> Tensor:
    fc = f - f.mean(dim=(-3, -2, -1), keepdim=True)
    return (fc * fc).mean(dim=(-3, -2, -1)).sqrt()


@register_metric(
    "CC",
    higher_is_better=True,
    description="Mean Pearson correlation of the fused image with each source.",
    reference="Ma et al., Inf. Fusion 2019 (survey), doi:10.1016/j.inffus.2018.02.004",
    min_size=1,
    definitions={
        "fusebench": "(r(A,F) + r(B,F)) / 2, Pearson r over all pixels.",
        "cddfuse": "same.",
        "tang": "same.",
    },
)
def cc(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none") -> Tensor:
    """CC = (r(IR, F) + r(VI, F)) / 2; NaN when an image is constant (r undefined).

    Example:
        >>> import torch
        >>> x = torch.tensor([[0, 10], [20, 30]], dtype=torch.uint8)
        >>> cc(x, x, x)
        tensor([1.], dtype=torch.float64)
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=1)
    return reduce((pearson(a, f) + pearson(b, f)) / 2, reduction)


@register_metric(
    "SCD",
    higher_is_better=True,
    description="Sum of the correlations of differences r(F-VI, IR) + r(F-IR, VI).",
    reference="Aslantas & Bendes, AEU 2015, doi:10.1016/j.aeue.2015.09.004",
    min_size=1,
    definitions={
        "fusebench": "r(F - B, A) + r(F - A, B), Pearson r (corr2).",
        "cddfuse": "same.",
        "tang": "same.",
    },
)
def scd(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none") -> Tensor:
    """SCD = r(F - VI, IR) + r(F - IR, VI), in [-2, 2].

    Example:
        >>> import torch
        >>> ir = torch.tensor([[0, 10], [20, 35]], dtype=torch.uint8)
        >>> vi = torch.tensor([[5, 0], [40, 10]], dtype=torch.uint8)
        >>> scd(ir // 2 + vi // 2, ir, vi).shape
        torch.Size([1])
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=1)
    return reduce(pearson(f - b, a) + pearson(f - a, b), reduction)
