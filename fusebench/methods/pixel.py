"""Pixel-level baselines: the mean and the maximum of the two luminance images. No training, no weights."""

from __future__ import annotations

import torch
from torch import Tensor

from fusebench.methods.base import FusionMethod, register_method


class PixelMean(FusionMethod):
    """F = (I + V) / 2."""

    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        return (ir + vi) / 2


class PixelMax(FusionMethod):
    """F = max(I, V), pixel by pixel."""

    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        return torch.maximum(ir, vi)


@register_method("mean", description="pixel mean of infrared and visible luminance")
def mean() -> FusionMethod:
    return PixelMean()


@register_method("max", description="pixel maximum of infrared and visible luminance")
def max_() -> FusionMethod:
    return PixelMax()
