"""Edge-based metrics of Xydeas & Petrovic: edge preservation Qabf and the fusion-artefact measure Nabf.

Qabf follows the common implementation shared by CDDFuse, Tang (``analysis_Qabf.m``) and VIFB
(``metricsQabf.m``): Sobel by true convolution with zero padding, alpha = atan(gy/gx) (pi/2 where gx = 0),
Tg = 0.9994, kg = -15, Dg = 0.5, Ta = 0.9879, ka = -22, Da = 0.8, weights g^1. The references set the strength
ratio to gF (not 1) where gA == gF; fusebench uses 1 there. Nabf follows Shreyamsha Kumar's modified Petrovic
measure (Tang's ``analysis_nabf.m``), including Tang's driver bug as an option (IR passed as the fused image).
Both depend on exact zero tests in the orientation, so evaluate() feeds them integer-valued images.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

from fusebench.metrics._checks import prepare, reduce
from fusebench.metrics._compile import kernel
from fusebench.metrics._filters import Padding, pad, sobel, strip_rows, strip_sums
from fusebench.metrics._registry import register_metric


def _qabf_features(x: Tensor, padding: Padding = "zeros") -> tuple[Tensor, Tensor]:
    """Gradient magnitude and orientation atan(gy/gx) with alpha = pi/2 where gx == 0."""
    gx, gy = sobel(x, padding=padding, convolve=True)
    g = torch.sqrt(gx * gx + gy * gy)
    zero = gx == 0
    alpha = torch.where(zero, math.pi / 2, torch.atan(gy / torch.where(zero, 1.0, gx)))
    return g, alpha


def _qabf_q(gs: Tensor, as_: Tensor, gf: Tensor, af: Tensor, tie_strength: Literal["one", "gf"]) -> Tensor:
    """Q^{XF} = Q_g Q_alpha of the source planes (gs, as_), (N, S, H, W), against F's (gf, af), (N, 1, H, W)."""
    # gf/gs where gs > gf, gs/gf where gs < gf (the same divisions as the references'); ties set below
    ratio = torch.minimum(gs, gf) / torch.maximum(gs, gf)
    g_rel = torch.where(gs == gf, 1.0 if tie_strength == "one" else gf, ratio)
    a_rel = 1 - (as_ - af).abs() / (math.pi / 2)
    qg = 0.9994 * torch.sigmoid(15 * (g_rel - 0.5))  # = 0.9994 / (1 + exp(-15 (g_rel - 0.5)))
    qa = 0.9879 * torch.sigmoid(22 * (a_rel - 0.8))
    return qg * qa


@register_metric(
    "Qabf",
    higher_is_better=True,
    description="Xydeas-Petrovic edge information transferred from the sources to F (gradient-weighted).",
    reference="Xydeas & Petrovic, Electron. Lett. 2000, doi:10.1049/el:20000267",
    definitions={
        "fusebench": "sum(Q^AF gA + Q^BF gB) / sum(gA + gB); Sobel by convolution, zero padding; Tg=0.9994, "
                     "kg=-15, Dg=0.5, Ta=0.9879, ka=-22, Da=0.8; strength ratio 1 where gA == gF.",
        "cddfuse": "same, but strength ratio gF where gA == gF (reference bug).",
        "tang": "same as cddfuse.",
        "vifb": "same as cddfuse; colour F: mean over RGB channels.",
    },
)
def qabf(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none",
         tie_strength: Literal["one", "gf"] = "one") -> Tensor:
    """Qabf = sum(Q^{AF} g_A + Q^{BF} g_B) / sum(g_A + g_B), Q = Q_g Q_alpha (sigmoids of strength/orientation).

    Args:
        tie_strength: strength ratio where g_A == g_F: "one" (textbook) or "gf" (the references' bug).

    Example:
        >>> x = torch.zeros(8, 8, dtype=torch.uint8); x[:, 4:] = 200
        >>> qabf(x, x, x)
        tensor([0.9748], dtype=torch.float64)
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=2)
    return reduce(qabf_core(f, a, b, tie_strength), reduction)


def qabf_core(f: Tensor, a: Tensor, b: Tensor, tie_strength: Literal["one", "gf"] = "one") -> Tensor:
    """Qabf of (N, 1, H, W) images on 0..255, strip by strip on CPU (see ``strip_rows``)."""
    x = pad(torch.cat([f, a, b], dim=1), 1, 1, "zeros")
    num, den = strip_sums(lambda t: _qabf_sums(t, tie_strength), [x], 2, strip_rows(x, 16))
    return num / den


@kernel
def _qabf_sums(xp: Tensor, tie_strength: Literal["one", "gf"]) -> tuple[Tensor, Tensor]:
    """sum(Q^AF gA + Q^BF gB) and sum(gA + gB) of the zero-padded stack [F, A, B] (N, 3, h + 2, w + 2)."""
    g, alpha = _qabf_features(xp, padding="valid")
    (gf, gs), (af, as_) = g.split([1, 2], dim=1), alpha.split([1, 2], dim=1)  # both sources in one pass
    num = (_qabf_q(gs, as_, gf, af, tie_strength) * gs).sum(dim=(-3, -2, -1))
    return num, gs.sum(dim=(-3, -2, -1))


def _nabf_features(x: Tensor, padding: Padding = "reflect") -> tuple[Tensor, Tensor]:
    """Sobel/8 by correlation on a mirror-extended image; alpha = atan(gv/gh), 0 where both vanish."""
    gv, gy = sobel(x, padding=padding, convolve=False, normalized=True)
    gh = -gy  # [-1 -2 -1; 0 0 0; 1 2 1] / 8
    g = torch.sqrt(gh * gh + gv * gv)
    # g == 0 exactly where gh == gv == 0 (no square of a difference of 0..255 images underflows); there gv / 1 = 0
    # and atan gives the reference's 0 (or -0, which |as - af| treats alike)
    alpha = torch.atan(gv / torch.where(g == 0, 1.0, gh))
    return g, alpha


def _nabf_q(gs: Tensor, as_: Tensor, gf: Tensor, af: Tensor) -> Tensor:
    """Q^{XF} = sqrt(Q_g Q_alpha) of the source planes (N, S, H, W) against F's (N, 1, H, W)."""
    # 0 where either strength is 0 (then the minimum is 0), else the smaller over the larger
    larger = torch.maximum(gs, gf)
    g_rel = torch.minimum(gs, gf) / torch.where(larger == 0, 1.0, larger)
    a_rel = ((as_ - af).abs() - math.pi / 2).abs() * (2 / math.pi)
    qg = 0.9999 * torch.sigmoid(19 * (g_rel - 0.5))
    qa = 0.9995 * torch.sigmoid(22 * (a_rel - 0.5))
    return torch.sqrt(qg * qa)


def nabf_core(f: Tensor, a: Tensor, b: Tensor, threshold: float = 2.0) -> Tensor:
    """Shreyamsha Kumar's N_abf of (N, 1, H, W) images on 0..255 (``f`` in the fused position), strip by
    strip on CPU."""
    x = pad(torch.cat([f, a, b], dim=1), 1, 1, "reflect")
    num, den = strip_sums(lambda t: _nabf_sums(t, threshold), [x], 2, strip_rows(x, 16))
    return num / den


@kernel
def _nabf_sums(xp: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Numerator and denominator sums of N_abf of the mirror-extended stack [F, A, B] (N, 3, h + 2, w + 2)."""
    g, alpha = _nabf_features(xp, padding="valid")
    (gf, gs), (af, as_) = g.split([1, 2], dim=1), alpha.split([1, 2], dim=1)  # both sources in one pass
    w = torch.where(gs >= threshold, gs * gs.sqrt(), 0.001)  # g^1.5 (to rounding), a fraction of pow's cost
    na = gf > gs.amax(dim=1, keepdim=True)
    num = torch.where(na, (1 - _nabf_q(gs, as_, gf, af)) * w, 0.0).sum(dim=(-3, -2, -1))
    return num, w.sum(dim=(-3, -2, -1))


@register_metric(
    "Nabf",
    higher_is_better=False,
    description="Fusion artefacts: edge strength F adds beyond both sources (Shreyamsha Kumar's N_abf).",
    reference="Shreyamsha Kumar, SIViP 2015, doi:10.1007/s11760-013-0556-9; Tang's analysis_nabf.m",
    definitions={
        "fusebench": "sum na((1-Q^AF) wA + (1-Q^BF) wB) / sum(wA + wB), na = [gF > gA and gF > gB], "
                     "Sobel/8 with mirror extension, w = g^1.5 if g >= 2 else 0.001, Q = sqrt(Qg Qa).",
        "tang": "as Tang's analysis_Reference computes it: analysis_nabf(ir, vi, F), i.e. the infrared image in "
                "the fused position and F as a source (driver bug).",
        "tang_fixed": "fusebench's definition (F in the fused position) with Tang's other conventions.",
    },
)
def nabf(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none",
         argument_order: Literal["fused", "tang_driver"] = "fused") -> Tensor:
    """N_abf = sum na ((1 - Q^AF) w_A + (1 - Q^BF) w_B) / sum (w_A + w_B); lower is better.

    Args:
        argument_order: "fused" (F is the fused image) or "tang_driver" (Tang's tables: IR treated as fused,
            VI and F as the sources).

    Example:
        >>> x = torch.zeros(8, 8, dtype=torch.uint8); x[:, 4:] = 200
        >>> nabf(x, x, x)
        tensor([0.], dtype=torch.float64)
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=2)
    out = nabf_core(a, b, f) if argument_order == "tang_driver" else nabf_core(f, a, b)
    return reduce(out, reduction)
