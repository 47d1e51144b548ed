"""Named convention profiles: which definition of each metric, which colour handling, which units.

A profile is data: per-metric keyword options for the functional metrics plus how colour images become the
grey planes the metrics see. ``fusebench`` (the default) is the clean textbook form; ``cddfuse``, ``tang`` and
``vifb`` reproduce the three reference implementations described in docs/metrics.md, quirks included.
A metric that a reference does not define is computed with fusebench's definition under that profile's
colour handling, and ``profile_info()`` lists it under ``"fallback"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from fusebench.registry import UnknownNameError

# BT.601 luma (fusebench.color, OpenCV) and MATLAB rgb2gray's coefficients.
BT601 = (0.299, 0.587, 0.114)
MATLAB_RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)


@dataclass(frozen=True)
class Profile:
    """Conventions of one reference implementation."""

    name: str
    description: str
    colour: Literal["luminance", "per_channel"]
    luma: tuple[float, float, float]
    luma_rounding: Literal["half_even", "half_away"]
    defines: tuple[str, ...]
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    side_by_side: tuple[str, ...] = ()
    #: metrics whose reference converts a colour source next to a grey fused image without rounding the luma
    unrounded_luma: tuple[str, ...] = ()
    units: Mapping[str, str] = field(default_factory=dict)
    reference: str = ""

    def options_for(self, metric: str) -> dict[str, Any]:
        """Keyword options of ``metric`` under this profile (fusebench's defaults when not defined here)."""
        return dict(self.options.get(metric, {})) if metric in self.defines else {}


def _frozen(d: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in d.items()})


_TANG_OPTIONS = {
    "MI": {"base": 2.0, "joint_saturate": True},
    "AG": {"norm": "interior"},
    "PSNR": {"definition": "tang"},
    "MSE": {"definition": "tang"},
    "SSIM": {"definition": "matlab", "combine": "mean"},
    "Qabf": {"tie_strength": "gf"},
    "Nabf": {"argument_order": "tang_driver"},
}
_TANG_DEFINES = ("EN", "SF", "SD", "PSNR", "MSE", "MI", "VIF", "AG", "CC", "SCD", "Qabf", "Nabf", "SSIM")

PROFILES: Mapping[str, Profile] = MappingProxyType({
    "fusebench": Profile(
        name="fusebench",
        description="Textbook definitions on BT.601 luminance rounded to 8-bit levels; MI in bits, SSIM and "
                    "error metrics averaged over the two sources, MI/VIF/SCD summed as customary.",
        colour="luminance", luma=BT601, luma_rounding="half_even",
        defines=(), units={"MI": "bits", "EN": "bits", "PSNR": "dB (peak 255)", "CE": "bits"},
    ),
    "cddfuse": Profile(
        name="cddfuse",
        description="CDDFuse's utils/Evaluator.py (MMIF-CDDFuse @ fd8da1f) and its ~30 descendants.",
        colour="luminance", luma=BT601, luma_rounding="half_even",
        defines=("EN", "SD", "SF", "AG", "MI", "MSE", "CC", "PSNR", "SCD", "VIF", "Qabf", "SSIM"),
        options=_frozen({
            "MI": {"base": math.e},
            "PSNR": {"definition": "cddfuse"},
            "SSIM": {"definition": "skimage019", "combine": "sum"},
            "VIF": {"nan_to_one": True},
            "Qabf": {"tie_strength": "gf"},
        }),
        units={"MI": "nats", "EN": "bits", "PSNR": "dB (peak max F)"},
        reference="github.com/Zhaozixiang1228/MMIF-CDDFuse@fd8da1f utils/Evaluator.py",
    ),
    "tang": Profile(
        name="tang",
        description="Tang's MATLAB Evaluation-for-Image-Fusion (SeAFusion/PIAFusion, Ma group), as its driver "
                    "analysis_Reference.m computes it (Nabf with IR in the fused position).",
        colour="luminance", luma=MATLAB_RGB2GRAY, luma_rounding="half_away",
        defines=_TANG_DEFINES, options=_frozen(_TANG_OPTIONS),
        units={"MI": "bits (254/255 merged in joint)", "EN": "bits", "PSNR": "dB (MSE on [0,1], +48.13)",
               "MSE": "[0,1] scale"},
        reference="github.com/Linfeng-Tang/Evaluation-for-Image-Fusion@0e87153 Evaluation/*.m",
    ),
    "tang_fixed": Profile(
        name="tang_fixed",
        description="tang with Nabf computed on the fused image (the argument order analysis_nabf.m expects).",
        colour="luminance", luma=MATLAB_RGB2GRAY, luma_rounding="half_away",
        defines=_TANG_DEFINES, options=_frozen({**_TANG_OPTIONS, "Nabf": {"argument_order": "fused"}}),
        units={"MI": "bits (254/255 merged in joint)", "EN": "bits", "PSNR": "dB (MSE on [0,1], +48.13)",
               "MSE": "[0,1] scale"},
        reference="github.com/Linfeng-Tang/Evaluation-for-Image-Fusion@0e87153 Evaluation/*.m",
    ),
    "vifb": Profile(
        name="vifb",
        description="VIFB's MATLAB toolkit (xingchenzhang/VIFB @ 22b2ea9): colour fused images scored per RGB "
                    "channel and averaged; grey F with colour sources uses rgb2gray: unrounded for PSNR, RMSE "
                    "and Qabf (VIFB converts to double first), rounded to uint8 for the others.",
        colour="per_channel", luma=MATLAB_RGB2GRAY, luma_rounding="half_away",
        defines=("CE", "EN", "MI", "PSNR", "AG", "EI", "Qabf", "SD", "SF", "RMSE", "SSIM", "Qcb", "Qcv"),
        options=_frozen({
            "MI": {"base": math.e, "normalize": "minmax"},
            "SF": {"norm": "size"},
            "AG": {"norm": "interior"},
            "PSNR": {"definition": "vifb"},
            "RMSE": {"definition": "vifb"},
            "SSIM": {"definition": "wang", "combine": "sum"},
            "Qabf": {"tie_strength": "gf"},
        }),
        side_by_side=("SF",),
        unrounded_luma=("PSNR", "RMSE", "Qabf"),
        units={"MI": "nats (min-max stretched)", "EN": "bits", "CE": "bits", "PSNR": "dB (VIFB definition)"},
        reference="github.com/xingchenzhang/VIFB@22b2ea9 metrics/*.m",
    ),
})


def get_profile(name: str | Profile) -> Profile:
    """The profile called ``name`` (a Profile passes through)."""
    if isinstance(name, Profile):
        return name
    if name not in PROFILES:
        raise UnknownNameError(f"Unknown metric profile '{name}'. Available: {', '.join(PROFILES)}")
    return PROFILES[name]


def list_profiles() -> list[str]:
    """Names of the convention profiles, fusebench's own first."""
    return list(PROFILES)


def profile_info(name: str | Profile, metrics: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
    """JSON-serialisable conventions of a profile (stored with every result).

    ``metrics`` restricts the per-metric part to those names (default: every registered metric).
    """
    from fusebench.metrics._registry import get_metric, list_metrics

    p = get_profile(name)
    names = list(metrics) if metrics is not None else list_metrics()
    per_metric = {}
    for m in names:
        entry = get_metric(m)
        defs = entry.definitions
        defined = p.name != "fusebench" and entry.name in p.defines
        base = p.name.split("_")[0]  # tang_fixed -> tang
        text = defs.get(p.name, defs.get(base, "")) if defined else defs.get("fusebench", "")
        per_metric[entry.name] = {
            "definition": text,
            "options": p.options_for(entry.name),
            "from_reference": defined or p.name == "fusebench",
            "unit": p.units.get(entry.name, ""),
            "version": entry.version,
            "higher_is_better": entry.higher_is_better,
        }
    return {
        "name": p.name,
        "description": p.description,
        "reference": p.reference,
        "colour": p.colour,
        "luma": list(p.luma),
        "luma_rounding": p.luma_rounding,
        "unrounded_luma": list(p.unrounded_luma),
        "quantisation": "every image rounded to integer 0..255 levels before scoring",
        "fallback": [m for m, v in per_metric.items() if not v["from_reference"]],
        "metrics": per_metric,
    }
