"""Colour handling in one place: visible RGB -> YCbCr (ITU-R BT.601, full range, as JPEG), fuse Y, put CbCr back.

Every method fuses luminance only; the runner restores colour with these two functions, so no method
re-implements the conversion (and no two methods disagree about it).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Rows: Y, Cb, Cr from R, G, B (BT.601 full-range, the JPEG/JFIF matrix).
_RGB_TO_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=torch.float64
)
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)
_OFFSET = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)


def _check_rgb(x: Tensor, name: str) -> None:
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"Expected `{name}` of shape (..., 3, H, W). Got {tuple(x.shape)}.")


def rgb_to_ycbcr(rgb: Tensor) -> Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> (..., 3, H, W) YCbCr in [0, 1] (Cb, Cr centred on 0.5)."""
    _check_rgb(rgb, "rgb")
    m = _RGB_TO_YCBCR.to(rgb.device, rgb.dtype)
    out = torch.einsum("ij,...jhw->...ihw", m, rgb)
    return out + _OFFSET.to(rgb.device, rgb.dtype)[:, None, None]


def ycbcr_to_rgb(ycbcr: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr`; the result is clamped to [0, 1]."""
    _check_rgb(ycbcr, "ycbcr")
    m = _YCBCR_TO_RGB.to(ycbcr.device, ycbcr.dtype)
    centred = ycbcr - _OFFSET.to(ycbcr.device, ycbcr.dtype)[:, None, None]
    return torch.einsum("ij,...jhw->...ihw", m, centred).clamp(0.0, 1.0)


def luminance(image: Tensor) -> Tensor:
    """Y of an (..., 3, H, W) RGB image, or the image itself when it has one channel."""
    if image.shape[-3] == 1:
        return image
    return rgb_to_ycbcr(image)[..., :1, :, :]


def replace_luminance(vi: Tensor, fused_y: Tensor) -> Tensor:
    """Put the fused Y back with the visible image's CbCr; grey visible images stay grey."""
    if vi.shape[-3] == 1:
        return fused_y
    ycbcr = rgb_to_ycbcr(vi)
    return ycbcr_to_rgb(torch.cat([fused_y.to(ycbcr.dtype), ycbcr[..., 1:, :, :]], dim=-3))
