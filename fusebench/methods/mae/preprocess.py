"""Images in [0, 1] <-> MAE inputs: ImageNet normalisation, 3 channels, sides a multiple of the patch.

MAE was pre-trained on ImageNet-normalised RGB, so grey images are repeated into three channels (as
MaeFuse does for the visible Y and the infrared). Any size works: the image is reflect-padded on the right
and bottom to a multiple of the patch size and the output is cropped back. ``warp=640`` instead
reproduces the released MaeFuse code, which bilinearly resizes everything to 640x640 (aspect ratio lost).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fusebench.color import luminance

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _stats(x: Tensor) -> tuple[Tensor, Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return mean, std


def normalize(x: Tensor) -> Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> ImageNet-normalised."""
    mean, std = _stats(x)
    return (x - mean) / std


def denormalize(y: Tensor) -> Tensor:
    """Inverse of :func:`normalize` (no clamping)."""
    mean, std = _stats(y)
    return y * std + mean


def to_mae_input(x: Tensor, patch: int, *, warp: int | None = None) -> tuple[Tensor, tuple[int, int]]:
    """(N, 1|3, H, W) in [0, 1] -> ((N, 3, Hp, Wp) normalised, (H, W)).

    Grey is repeated x3. Sides are reflect-padded (bottom/right) up to a multiple of ``patch``; where the
    pad is not smaller than the side (tiny images) edge replication is used instead, since reflection
    cannot pad that far. With ``warp=S`` the image is bilinearly resized to S x S (S a multiple of ``patch``).
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"Expected an image batch of shape (N, 1 or 3, H, W). Got {tuple(x.shape)}.")
    size = (x.shape[-2], x.shape[-1])
    rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    if warp is not None:
        if warp % patch:
            raise ValueError(f"warp size {warp} is not a multiple of the patch size {patch}")
        rgb = F.interpolate(rgb, size=(warp, warp), mode="bilinear", align_corners=False)
    else:
        pad_h, pad_w = -size[0] % patch, -size[1] % patch
        if pad_h or pad_w:
            mode = "reflect" if pad_h < size[0] and pad_w < size[1] else "replicate"
            rgb = F.pad(rgb, (0, pad_w, 0, pad_h), mode=mode)
    return normalize(rgb), size


def from_mae_output(y: Tensor, size: tuple[int, int], *, warp: bool = False) -> Tensor:
    """(N, 3, Hp, Wp) normalised -> (N, 1, H, W) in [0, 1].

    De-normalise, crop the padding (or, after ``warp``, resize back bicubically), take BT.601 luma
    0.299 R + 0.587 G + 0.114 B (= OpenCV RGB2GRAY, used by MaeFuse), clamp to [0, 1].
    """
    rgb = denormalize(y)
    if warp:
        rgb = F.interpolate(rgb, size=size, mode="bicubic", align_corners=False)
    else:
        rgb = rgb[..., : size[0], : size[1]]
    return luminance(rgb).clamp(0.0, 1.0)
