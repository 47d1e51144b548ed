"""Infrared-visible fusion metrics: batched torch functions, named reference conventions, dataset scoring.

Functional metrics share one signature, ``metric(fused, ir, vi, *, data_range, reduction="none", **options)``
on grey (N, 1, H, W) batches; ``evaluate`` / ``evaluate_files`` apply a convention profile ("fusebench",
"cddfuse", "tang", "tang_fixed", "vifb") and return a DataFrame. See docs/metrics.md.
"""

from __future__ import annotations

from fusebench.metrics._compile import compiled_kernels
from fusebench.metrics._registry import METRICS, get_metric, list_metrics, metric_info, register_metric
from fusebench.metrics.chen import qcb, qcv
from fusebench.metrics.edge import nabf, qabf
from fusebench.metrics.error import mse, psnr, rmse
from fusebench.metrics.evaluate import DEFAULT_METRICS, evaluate, evaluate_files
from fusebench.metrics.gradient import ag, ei, sf
from fusebench.metrics.information import ce, en, mi
from fusebench.metrics.nlpd import nlpd
from fusebench.metrics.profiles import PROFILES, Profile, get_profile, list_profiles, profile_info
from fusebench.metrics.ssim import ms_ssim, ssim
from fusebench.metrics.statistics import cc, scd, sd
from fusebench.metrics.vif import vif, viff

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "PROFILES",
    "Profile",
    "ag",
    "cc",
    "ce",
    "compiled_kernels",
    "ei",
    "en",
    "evaluate",
    "evaluate_files",
    "get_metric",
    "get_profile",
    "list_metrics",
    "list_profiles",
    "metric_info",
    "mi",
    "ms_ssim",
    "mse",
    "nabf",
    "nlpd",
    "profile_info",
    "psnr",
    "qabf",
    "qcb",
    "qcv",
    "register_metric",
    "rmse",
    "scd",
    "sd",
    "sf",
    "ssim",
    "vif",
    "viff",
]
