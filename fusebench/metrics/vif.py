"""Visual information fidelity as the fusion papers report it: multiscale pixel-domain VIF, summed over sources.

VIF = VIFp(IR, F) + VIFp(VI, F), with VIFp the four-scale pixel-domain VIF of Sheikh & Bovik
(``vifp_mscale.m``; CDDFuse's ``Evaluator.VIFF`` despite its name): Gaussian windows N = 17, 9, 5, 3 with
sigma N/5, 'valid' filtering, dyadic subsampling, noise variance sigma_n^2 = 2 on the 0..255 scale.
This is not Han et al.'s VIFF (2013).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from fusebench.metrics._cache import cached
from fusebench.metrics._checks import prepare, reduce
from fusebench.metrics._compile import kernel
from fusebench.metrics._filters import gaussian_1d, moment_stack, separable, separable_strips, strip_rows
from fusebench.metrics._registry import register_metric

_EPS = 1e-10
_SIGMA_NSQ = 2.0
_WINDOWS = {size: gaussian_1d(size, size / 5) for size in (17, 9, 5, 3)}  # one per scale: N = 2^(5-s) + 1


Stats = tuple[Tensor, Tensor, Tensor]


def _vif_statistics(ref: Tensor, dist: Tensor) -> list[list[Stats]]:
    """Per scale, the gain g, the reference variance s1 and the distortion variance sv, (N, S, h, w) each in
    strips of rows (one strip when compiled or on an accelerator), guarded as in ``vifp_mscale.m``, of each
    plane of (N, S, H, W) ``ref`` against the (N, 1, H, W) ``dist``; the distorted image's own moments are
    shared by all references. Independent of the noise variance.
    """
    s = ref.shape[1]
    out = []
    # variances only: shifting by mid-grey (exact under normalised 'valid' filters) avoids float32 cancellation
    x = torch.cat([ref, dist], dim=1) - 128.0

    def moments(rows: Tensor) -> Tensor:
        return moment_stack(*rows.split([s, 1], dim=1))

    for scale in range(1, 5):
        size = 2 ** (5 - scale) + 1
        w = _WINDOWS[size]
        if scale > 1:
            x = separable(x, w, w, step=2)
        out.append([_guarded_statistics(block, s) for _, block in separable_strips(x, w, w, strip_rows(x, 24),
                                                                                   moments)])
    return out


@kernel
def _guarded_statistics(moments: Tensor, s: int) -> tuple[Tensor, Tensor, Tensor]:
    """g, s1 and sv from the filtered moment stack [mu1, mu2, E11, E22, E12] with ``vifp_mscale.m``'s guards."""
    mu1, mu2, e11, e22, e12 = moments.split([s, 1, s, 1, s], dim=1)
    # functional on purpose: in-place updates of the input make the compiled kernel write them back (20x slower)
    s1 = (e11 - mu1 * mu1).clamp(min=0)
    s2 = (e22 - mu2 * mu2).clamp(min=0)
    s12 = e12 - mu1 * mu2
    g = s12 / (s1 + _EPS)
    sv = s2 - g * s12
    low1, low2 = s1 < _EPS, s2 < _EPS
    g = torch.where(low1 | low2, 0.0, g)
    sv = torch.where(low2, 0.0, torch.where(low1, s2, sv))
    s1 = torch.where(low1, 0.0, s1)
    neg = g < 0
    sv = torch.where(neg, s2, sv)
    g = torch.where(neg, 0.0, g)
    sv = sv.clamp(min=_EPS)
    return g, s1, sv


def _vif_scales(a: Tensor, b: Tensor, f: Tensor, sigma_nsq: float) -> Iterator[list[tuple[Tensor, Tensor, Tensor]]]:
    """Per scale, in strips of rows, the VID and VIND terms and the gain g, (N, 2, h, w), of the sources
    (IR, VI) against F; the statistics are shared between VIF and VIFF inside one evaluate() call."""
    stats = cached("vif_statistics", (a, b, f), None, lambda: _vif_statistics(torch.cat([a, b], dim=1), f))
    for strips in stats:
        yield [(*_information_terms(g, s1, sv, sigma_nsq), g) for g, s1, sv in strips]


@kernel
def _information_terms(g: Tensor, s1: Tensor, sv: Tensor, sigma_nsq: float) -> tuple[Tensor, Tensor]:
    """VID = log10(1 + g^2 s1 / (sv + sigma_n^2)) and VIND = log10(1 + s1 / sigma_n^2)."""
    return torch.log10(1 + g * g * s1 / (sv + sigma_nsq)), torch.log10(1 + s1 / sigma_nsq)


def vifp_multiscale(a: Tensor, b: Tensor, f: Tensor, sigma_nsq: float = _SIGMA_NSQ) -> Tensor:
    """Four-scale pixel VIF (N, 2) of the sources ``a`` and ``b`` against ``f``, each (N, 1, H, W)."""
    num = den = torch.zeros(f.shape[0], 2, dtype=f.dtype, device=f.device)
    for strips in _vif_scales(a, b, f, sigma_nsq):
        for vid, vind, _ in strips:
            num = num + vid.sum(dim=(-2, -1))
            den = den + vind.sum(dim=(-2, -1))
    return num / den


@register_metric(
    "VIF",
    higher_is_better=True,
    description="Visual information fidelity: multiscale pixel VIF (Sheikh & Bovik) of F w.r.t. each source, summed.",
    reference="Sheikh & Bovik, IEEE TIP 2006, doi:10.1109/TIP.2005.859378; vifp_mscale.m",
    min_size=41,
    definitions={
        "fusebench": "VIFp(A,F) + VIFp(B,F), 4 scales, Gaussian N=17,9,5,3 (sigma N/5), sigma_n^2 = 2 on 0..255.",
        "cddfuse": "same; a NaN VIFp term (constant source) becomes 1.0.",
        "tang": "same (vifp_mscale.m).",
    },
)
def vif(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none",
        nan_to_one: bool = False) -> Tensor:
    """VIF = VIFp(IR, F) + VIFp(VI, F), each the ratio of summed log10 information terms over 4 scales.

    Args:
        nan_to_one: CDDFuse's guard: a NaN term (0/0 for a constant source) counts as 1.0.

    Example:
        >>> x = (torch.arange(48 * 48).reshape(48, 48) * 37 % 251).to(torch.uint8)
        >>> round(vif(x, x, x).item(), 6)
        2.0
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=41)
    terms = vifp_multiscale(a, b, f)
    if nan_to_one:
        terms = torch.nan_to_num(terms, nan=1.0)
    return reduce(terms.sum(1), reduction)


_HAN_SIGMA_NSQ = 0.005 * 255 * 255
_HAN_WEIGHTS = (1 / 2.15, 0.0, 0.15 / 2.15, 1 / 2.15)


@register_metric(
    "VIFF",
    higher_is_better=True,
    description="Han et al.'s fusion VIF: per-pixel the source with the smaller gain, 4 weighted scales.",
    reference="Han et al., Inf. Fusion 2013, doi:10.1016/j.inffus.2011.08.002; MEFB metrics/metricsVIF.m",
    min_size=41,
    definitions={
        "fusebench": "sum_s p_s F_s, p = [1, 0, 0.15, 1]/2.15, F_s = sum(VID_sel + 1e-7) / sum(VIND_sel + 1e-7), "
                     "VID/VIND of the source with the smaller gain g per coefficient (ties: VI), the VIFp "
                     "pyramid with sigma_n^2 = 0.005 * 255^2 (author's code as shipped in MEFB), grey planes.",
    },
)
def viff(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none") -> Tensor:
    """VIFF = sum_s p_s sum(VID_sel + C) / sum(VIND_sel + C), selection by the smaller gain (Han et al. 2013).

    Example:
        >>> x = (torch.arange(48 * 48).reshape(48, 48) * 37 % 251).to(torch.uint8)
        >>> round(viff(x, x, x).item(), 6)
        1.0
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=41)
    out = torch.zeros(f.shape[0], dtype=f.dtype, device=f.device)
    for weight, strips in zip(_HAN_WEIGHTS, _vif_scales(a, b, f, _HAN_SIGMA_NSQ)):
        num = den = torch.zeros(f.shape[0], dtype=f.dtype, device=f.device)
        for vid, vind, g in strips:
            n, d = _smaller_gain_sums(vid, vind, g)
            num, den = num + n, den + d
        out = out + weight * (num / den)
    return reduce(out, reduction)


@kernel
def _smaller_gain_sums(vid: Tensor, vind: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """sum(VID_sel + 1e-7) and sum(VIND_sel + 1e-7), per coefficient the source with the smaller gain."""
    first = g[:, :1] < g[:, 1:]  # MATLAB: L = G1 < G2 selects source 1 (IR), else source 2 (VI)
    vid_sel = torch.where(first, vid[:, :1], vid[:, 1:])
    vind_sel = torch.where(first, vind[:, :1], vind[:, 1:])
    return (vid_sel + 1e-7).sum(dim=(-3, -2, -1)), (vind_sel + 1e-7).sum(dim=(-3, -2, -1))
