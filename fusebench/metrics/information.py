"""Histogram metrics: entropy (EN), mutual information (MI) and VIFB's cross entropy (CE).

All three work on 256 integer grey levels of the 0..255 image. What differs between the field's reference
codes is the log base (CDDFuse: nats via sklearn; Tang: bits; VIFB: nats for MI), Tang's joint histogram,
where uint8 saturation merges grey levels 254 and 255 into one bin, and VIFB's min-max stretch before MI.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from fusebench.metrics._cache import cached
from fusebench.metrics._checks import inputs_are_integers, prepare, reduce
from fusebench.metrics._compile import kernel
from fusebench.metrics._filters import entropy, histogram, joint_histogram, levels
from fusebench.metrics._registry import register_metric


def _levels(x: Tensor, normalize: Literal["none", "minmax"]) -> Tensor:
    """Integer levels, computed in float64 so float32 and float64 inputs bin identically; shared by EN, MI and
    CE inside one evaluate() call. evaluate()'s inputs already are levels 0..255: they are only converted (to
    int32, which halves the histogram indices' memory traffic)."""
    if normalize == "none" and inputs_are_integers() and x.shape[0] < 1 << 15:  # joint indices fit in int32
        return cached("levels", (x,), "int32", lambda: x.to(torch.int32))
    return cached("levels", (x,), normalize, lambda: _integer_levels(x, normalize))


@kernel
def _integer_levels(x: Tensor, normalize: Literal["none", "minmax"]) -> Tensor:
    """Grey levels 0..255 (long) of ``x``, optionally min-max stretched first."""
    t = x.double()
    if normalize == "minmax":
        # VIFB: im2double stretch to [0, 1], then int16(x * 255), which rounds half away from zero.
        lo = t.amin(dim=(-2, -1), keepdim=True)
        hi = t.amax(dim=(-2, -1), keepdim=True)
        return torch.floor((t - lo) / (hi - lo) * 255 + 0.5).clamp(0, 255).long()
    return levels(t)


def _counts(x: Tensor, normalize: Literal["none", "minmax"] = "none") -> Tensor:
    """Per-image 256-bin histogram (N, 256) of ``_levels(x, normalize)``, shared like the levels."""
    return cached("histogram", (x,), (normalize, inputs_are_integers()), lambda: histogram(_levels(x, normalize)))


@register_metric(
    "EN",
    higher_is_better=True,
    needs_sources=False,
    description="Shannon entropy of the fused image's 256-level histogram (bits).",
    reference="Roberts et al., J. Appl. Remote Sens. 2008, doi:10.1117/1.2945910",
    min_size=1,
    definitions={
        "fusebench": "-sum p log2 p over the 256-bin histogram of round(F).",
        "cddfuse": "same (uint8(round(F)), bincount, log2).",
        "tang": "same (MATLAB entropy(uint8 F)).",
        "vifb": "same, bins floor(F); colour F: mean over RGB channels.",
    },
)
def en(fused: Any, ir: Any = None, vi: Any = None, *, data_range: float | None = None,
       reduction: str = "none", base: float = 2.0) -> Tensor:
    """EN = -sum_k p_k log_base p_k of the fused image's 256-level histogram.

    Args:
        fused: (N, 1, H, W), (N, H, W) or (H, W) uint8, or float with ``data_range``.
        ir, vi: unused (EN needs no sources); accepted for a uniform signature.
        data_range: 1.0 or 255.0 for float inputs.
        reduction: "none" -> (N,), "mean" or "sum" -> scalar.
        base: log base (2 -> bits).

    Returns:
        Entropy per image, in the fused image's working dtype.

    Example:
        >>> en(torch.tensor([[0, 0], [255, 255]], dtype=torch.uint8))
        tensor([1.], dtype=torch.float64)
    """
    f, _, _ = prepare(fused, None, None, data_range=data_range, needs_sources=False, min_size=1)
    counts = _counts(f)
    return reduce(entropy(counts.to(f.dtype), base=base), reduction)


def _mi_pair(a: Tensor, b: Tensor, normalize: Literal["none", "minmax"], base: float, saturate: bool) -> Tensor:
    """MI(a, b) = H(a) + H(b) - H(a, b) over integer levels; ``saturate`` merges 254/255 in the joint only."""
    dtype = torch.float64
    ha = entropy(_counts(a, normalize).to(dtype), base=base)
    hb = entropy(_counts(b, normalize).to(dtype), base=base)
    la, lb = _levels(a, normalize), _levels(b, normalize)
    if saturate:
        la, lb = la.clamp(max=254), lb.clamp(max=254)
    hab = entropy(joint_histogram(la, lb).to(dtype), dims=2, base=base)
    return ha + hb - hab


@register_metric(
    "MI",
    higher_is_better=True,
    description="Mutual information MI(F,IR) + MI(F,VI) from 256x256 joint histograms.",
    reference="Qu et al., Electron. Lett. 2002, doi:10.1049/el:20020212",
    min_size=1,
    definitions={
        "fusebench": "MI(F,A) + MI(F,B), exact 256x256 joint histograms of round(x), bits.",
        "cddfuse": "MI(F,A) + MI(F,B), exact histograms (sklearn mutual_info_score), nats.",
        "tang": "bits; joint histogram merges grey levels 254 and 255 (uint8 saturation in Hab.m), "
                "marginals exact.",
        "vifb": "nats; every image min-max stretched and re-quantised int16(255 x) first; colour: channel mean.",
    },
)
def mi(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none",
       base: float = 2.0, joint_saturate: bool = False,
       normalize: Literal["none", "minmax"] = "none") -> Tensor:
    """MI = MI(F, IR) + MI(F, VI), MI(X, Y) = H(X) + H(Y) - H(X, Y) over 256 grey levels.

    Args:
        fused, ir, vi: grey batches (N, 1, H, W) / (N, H, W) / (H, W), uint8 or float with ``data_range``.
        data_range: 1.0 or 255.0 for float inputs.
        reduction: "none" -> (N,), "mean"/"sum" -> scalar.
        base: 2 for bits, ``math.e`` for nats.
        joint_saturate: Tang's quirk: levels 254 and 255 share one joint-histogram bin.
        normalize: "minmax" stretches each image to [0, 255] first (VIFB).

    Returns:
        MI per image.

    Example:
        >>> x = torch.tensor([[0, 255], [0, 255]], dtype=torch.uint8)
        >>> mi(x, x, x)
        tensor([2.], dtype=torch.float64)
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=1)
    out = _mi_pair(f, a, normalize, base, joint_saturate) + _mi_pair(f, b, normalize, base, joint_saturate)
    return reduce(out.to(f.dtype), reduction)


def _ce_pair(x: Tensor, f: Tensor) -> Tensor:
    px = _counts(x).double()
    pf = _counts(f).double()
    px, pf = px / px.sum(-1, keepdim=True), pf / pf.sum(-1, keepdim=True)
    both = (px > 0) & (pf > 0)
    terms = torch.where(both, px * torch.log2(torch.where(both, px / pf, torch.ones_like(px))), 0.0)
    return terms.sum(-1)


@register_metric(
    "CE",
    higher_is_better=False,
    description="Cross entropy between the sources' and the fused image's histograms, mean over sources.",
    reference="VIFB (Zhang et al., CVPRW 2020), metrics/metricsCross_entropy.m",
    min_size=1,
    definitions={
        "fusebench": "(CE(VI,F) + CE(IR,F))/2, CE(X,F) = sum_k P_X log2(P_X/P_F) over levels where both > 0.",
        "vifb": "same; colour F: mean over RGB channels.",
    },
)
def ce(fused: Any, ir: Any, vi: Any, *, data_range: float | None = None, reduction: str = "none") -> Tensor:
    """CE = (CE(VI, F) + CE(IR, F)) / 2 with CE(X, F) = sum_k P_X(k) log2(P_X(k) / P_F(k)) (bits).

    Levels where either histogram is empty are skipped, as in VIFB.

    Example:
        >>> x = torch.tensor([[0, 255]], dtype=torch.uint8)
        >>> ce(x, x, x)
        tensor([0.], dtype=torch.float64)
    """
    f, a, b = prepare(fused, ir, vi, data_range=data_range, needs_sources=True, min_size=1)
    return reduce(((_ce_pair(b, f) + _ce_pair(a, f)) / 2).to(f.dtype), reduction)

