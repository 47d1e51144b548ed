"""Structural similarity (SSIM, Wang et al. 2004) in the three incompatible forms the field uses.

* "wang": 11x11 Gaussian (sigma 1.5), 'valid' map, L = 255, K = (0.01, 0.03), population moments
  (Wang's ``ssim_index.m``; VIFB's ``metricsSsim.m``).
* "skimage019": CDDFuse's ``structural_similarity`` on float32 data with scikit-image 0.19, whose default
  data range for floats is 2: 7x7 uniform window, scipy 'reflect' (symmetric) padding, sample covariance
  (x 49/48), C1 = 4e-4, C2 = 3.6e-3, map mean after cropping 3 pixels per side.
* "matlab": MATLAB's built-in ``ssim`` (Tang): 11x11 Gaussian, replicate padding, full-size map, dynamic range 1
  for doubles, so C1 = 1e-4, C2 = 9e-4 on 0..255 data.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from fusebench.metrics._cache import cached
from fusebench.metrics._checks import prepare, reduce
from fusebench.metrics._compile import kernel
from fusebench.metrics._filters import (
    Padding,
    box_1d,
    gaussian_1d,
    moment_stack,
    pad,
    separable_strips,
    strip_rows,
)
from fusebench.metrics._registry import register_metric

Definition = Literal["wang", "skimage019", "matlab"]
_SHIFT = 128.0

# definition -> (window, padding, C1, C2, covariance correction, crop)
_CONVENTIONS: dict[str, tuple[tuple[float, ...], Padding, float, float, float, int]] = {
    "wang": (gaussian_1d(11, 1.5), "valid", (0.01 * 255) ** 2, (0.03 * 255) ** 2, 1.0, 0),
    "skimage019": (box_1d(7), "symmetric", (0.01 * 2) ** 2, (0.03 * 2) ** 2, 49.0 / 48.0, 3),
    "matlab": (gaussian_1d(11, 1.5), "replicate", 0.01**2, 0.03**2, 1.0, 0),
}


def ssim_and_cs(x: Tensor, y: Tensor, definition: Definition) -> tuple[Tensor, Tensor]:
    """Mean SSIM and mean contrast-structure term per image, (N, S) each, of each plane of (N, S, H, W) ``x``
    against (N, 1, H, W) ``y`` on 0..255 under one convention."""
    win, padding, c1, c2, cov_norm, crop = _CONVENTIONS[definition]
    s, k = x.shape[1], len(win)
    # One filtering pass for all moments; the fused image's own moments are shared by both sources.
    # Moments of (image - 128) cancel far less in E[x^2] - mu^2 (float32); none of these paddings is
    # zero padding, so the shift commutes with the filter (and padding commutes with the products).
    xy = pad(torch.cat([x, y], dim=1), k // 2, k // 2, padding)
    oh, ow = xy.shape[-2] - k + 1, xy.shape[-1] - k + 1

    def moments(rows: Tensor) -> Tensor:
        return moment_stack(*(rows - _SHIFT).split([s, 1], dim=1))

    total_m = total_cs = None
    for r0, block in separable_strips(xy, win, win, strip_rows(xy, 24), moments):
        lo, hi = max(crop, r0), min(oh - crop, r0 + block.shape[-2])  # rows of the (cropped) map in this strip
        if hi > lo:
            m, cs = _ssim_sums(block.narrow(-2, lo - r0, hi - lo), s, c1, c2, cov_norm, crop)
            total_m = m if total_m is None else total_m + m
            total_cs = cs if total_cs is None else total_cs + cs
    assert total_m is not None and total_cs is not None
    count = (oh - 2 * crop) * (ow - 2 * crop)
    return total_m / count, total_cs / count


@kernel
def _ssim_sums(moments: Tensor, s: int, c1: float, c2: float, cov_norm: float, crop: int) -> tuple[Tensor, Tensor]:
    """Sums of the SSIM and contrast-structure maps from the filtered stack [mu_x, mu_y, Exx, Eyy, Exy] of the
    shifted images (``crop`` columns dropped on each side; rows are cropped by the caller)."""
    mu_x, mu_y, exx, eyy, exy = moments.split([s, 1, s, 1, s], dim=1)
    vx = cov_norm * (exx - mu_x * mu_x)
    vy = cov_norm * (eyy - mu_y * mu_y)
    vxy = cov_norm * (exy - mu_x * mu_y)
    mu_x, mu_y = mu_x + _SHIFT, mu_y + _SHIFT
    cs = (2 * vxy + c2) / (vx + vy + c2)
    m = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1) * cs
    if crop:
        m, cs = m[..., crop:-crop], cs[..., crop:-crop]
    return m.sum(dim=(-2, -1)), cs.sum(dim=(-2, -1))


def _source_ssim(a: Tensor, b: Tensor, f: Tensor, definition: Definition) -> tuple[Tensor, Tensor]:
    """``ssim_and_cs`` of the sources (IR, VI) against F, (N, 2) each, shared by SSIM and MS-SSIM's first
    scale inside one evaluate() call."""
    return cached("source_ssim", (a, b, f), definition,
                  lambda: ssim_and_cs(torch.cat([a, b], dim=1), f, definition))


@register_metric(
    "SSIM",
    higher_is_better=True,
    description="Structural similarity of the fused image with each source, combined over sources.",
    reference="Wang et al., IEEE TIP 2004, doi:10.1109/TIP.2003.819861",
    min_size=11,
    definitions={
        "fusebench": "(SSIM(A,F) + SSIM(B,F)) / 2, Wang's SSIM: 11x11 Gaussian sigma 1.5, 'valid', L = 255.",
        "cddfuse": "SSIM(F,A) + SSIM(F,B) (sum), skimage 0.19 on float32: 7x7 uniform, data_range 2, "
                   "sample covariance, 3-pixel crop.",
        "tang": "0.5 SSIM(F,A) + 0.5 SSIM(F,B), MATLAB ssim: Gaussian sigma 1.5, replicate padding, "
                "C1 = 1e-4, C2 = 9e-4 on 0..255.",
        "vifb": "SSIM(VI,F) + SSIM(IR,F) (sum), Wang's SSIM with L = 255, 'valid'; colour: channel mean.",
    },
)
def ssim(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none",
         definition: Definition = "wang", combine: Literal["mean", "sum"] = "mean") -> Tensor:
    """SSIM of F with each source, combined by mean (fusebench, tang) or sum (cddfuse, vifb).

    Args:
        definition: "wang", "skimage019" or "matlab" (see the module docstring).
        combine: "mean" or "sum" over the two sources.

    Example:
        >>> x = (torch.arange(144).reshape(12, 12) % 7 * 30).to(torch.uint8)
        >>> ssim(x, x, x)
        tensor([1.], dtype=torch.float64)
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=11)
    out = _source_ssim(a, b, f, definition)[0].sum(1)
    return reduce(out / 2 if combine == "mean" else out, reduction)


_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


@kernel
def _halve(x: Tensor) -> Tensor:
    """2x2 block means; an odd last row/column is dropped."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) / 4


@register_metric(
    "MS_SSIM",
    higher_is_better=True,
    description="Multi-scale SSIM (Wang et al. 2003, 5 scales) of F with each source, mean over sources.",
    reference="Wang, Simoncelli & Bovik, Asilomar 2003, doi:10.1109/ACSSC.2003.1292216",
    min_size=176,
    definitions={
        "fusebench": "(MS-SSIM(A,F) + MS-SSIM(B,F))/2; 5 scales, weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), "
                     "Wang's 'valid' Gaussian SSIM terms (L = 255), contrast-structure at scales 1-4 and SSIM at "
                     "scale 5, negative terms clamped to 0, 2x2 mean downsampling (odd row/column dropped). "
                     "Not Tang's analysis_ms_ssim (that is MEF-SSIM).",
    },
)
def ms_ssim(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none") -> Tensor:
    """MS-SSIM = prod_{s<5} max(cs_s, 0)^{w_s} * max(SSIM_5, 0)^{w_5}, averaged over the two sources.

    Example:
        >>> x = (torch.arange(176 * 176).reshape(176, 176) * 37 % 251).to(torch.uint8)
        >>> round(ms_ssim(x, x, x).item(), 6)
        1.0
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=176)
    out = _source_ssim(a, b, f, "wang")[1].clamp(min=0) ** _MS_WEIGHTS[0]  # scale 1 shared with SSIM
    x = torch.cat([a, b], dim=1)
    for scale, weight in enumerate(_MS_WEIGHTS[1:], start=1):
        x, f = _halve(x), _halve(f)
        sim, cs = ssim_and_cs(x, f, "wang")
        out = out * (sim if scale == len(_MS_WEIGHTS) - 1 else cs).clamp(min=0) ** weight
    return reduce(out.mean(1), reduction)
