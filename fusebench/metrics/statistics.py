"""Global statistics: standard deviation (SD), correlation coefficient (CC) and SCD (Aslantas & Bendes 2015).

All three references agree on these (population SD; Pearson r over all pixels); Tang's CC code centres with
the wrong mean in its numerator, which has no numerical effect.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fusebench.metrics._cache import cached
from fusebench.metrics._checks import inputs_are_integers, prepare, reduce
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


_EXACT_PIXELS = 8_000_000  # n^2 * 255^2 * 2 stays below 2^63: the int64 numerators below are exact


class Gram:
    """Exact pixel sums ``s`` (N, 3) and product sums ``g`` (N, 3, 3) of [F, A, B] as int64, for integer-valued
    float64 images, from one matrix product; CC, SCD, SD, MSE, PSNR and RMSE read their statistics from it
    (shared inside one evaluate() call) instead of making several passes over the images each."""

    F, A, B = 0, 1, 2

    def __init__(self, f: Tensor, a: Tensor, b: Tensor) -> None:
        planes = torch.cat([f, a, b], dim=1).reshape(f.shape[0], 3, -1)
        self.n = planes.shape[-1]
        # integers below 2^53: every product and partial sum is exact whatever the summation order
        self.g = torch.bmm(planes, planes.transpose(1, 2)).long()
        self.s = planes.sum(-1).long()

    def sum_sq_diff(self, i: int, j: int) -> Tensor:
        """sum((x_i - x_j)^2) per image (int64)."""
        g = self.g
        return g[:, i, i] - 2 * g[:, i, j] + g[:, j, j]

    def pearson(self, u: dict[int, int], v: dict[int, int]) -> Tensor:
        """Pearson r of the combinations sum_k u[k] x_k and sum_k v[k] x_k (NaN when either is constant)."""
        def cross(p: dict[int, int], q: dict[int, int]) -> Tensor:
            return sum(cp * cq * self.g[:, i, j] for i, cp in p.items() for j, cq in q.items())  # type: ignore

        def total(p: dict[int, int]) -> Tensor:
            return sum(cp * self.s[:, i] for i, cp in p.items())  # type: ignore

        n, su, sv = self.n, total(u), total(v)
        num = n * cross(u, v) - su * sv
        den = ((n * cross(u, u) - su * su).double() * (n * cross(v, v) - sv * sv).double()).sqrt()
        return num.double() / den


def gram(f: Tensor, a: Tensor | None, b: Tensor | None) -> Gram | None:
    """The shared exact Gram statistics of (F, A, B) where they apply (evaluate()'s integer levels in float64,
    images below 8 MP), else None (the metrics then make their own passes)."""
    if (a is None or b is None or not inputs_are_integers() or f.dtype != torch.float64
            or a.dtype != f.dtype or b.dtype != f.dtype or a.shape != f.shape or b.shape != f.shape
            or a.device != f.device or b.device != f.device or f.shape[-2] * f.shape[-1] * f.shape[1] > _EXACT_PIXELS):
        return None
    return cached("gram", (f, a, b), None, lambda: Gram(f, a, b))


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
    ex = gram(f, ir, vi) if isinstance(ir, Tensor) and isinstance(vi, Tensor) else None
    if ex is not None:  # evaluate(): exact sums shared with CC, SCD and PSNR
        var = ex.n * ex.g[:, 0, 0] - ex.s[:, 0] * ex.s[:, 0]
        return reduce(var.double().sqrt() / ex.n, reduction)
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
    ex = gram(f, a, b)
    if ex is not None:
        F, A, B = Gram.F, Gram.A, Gram.B
        return reduce((ex.pearson({A: 1}, {F: 1}) + ex.pearson({B: 1}, {F: 1})) / 2, reduction)
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
    ex = gram(f, a, b)
    if ex is not None:
        F, A, B = Gram.F, Gram.A, Gram.B
        return reduce(ex.pearson({F: 1, B: -1}, {A: 1}) + ex.pearson({F: 1, A: -1}, {B: 1}), reduction)
    return reduce(pearson(f - b, a) + pearson(f - a, b), reduction)
