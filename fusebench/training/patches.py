"""Random aligned crops of (infrared, visible luminance) for training, decoded once and kept in memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from fusebench.color import luminance
from fusebench.datasets.base import PairDataset


class PatchDataset(Dataset[tuple[Tensor, Tensor]]):
    """``patches_per_image`` aligned crops per pair and epoch, each (1, P, P) in [0, 1], with random flips.

    Crops are a pure function of (seed, epoch, index), so a resumed run sees the same data.
    Images smaller than the patch are reflect-padded.
    """

    def __init__(
        self, pairs: PairDataset, patch_size: int = 128, patches_per_image: int = 8, seed: int = 0, flip: bool = True
    ) -> None:
        if len(pairs) == 0:
            raise ValueError(f"dataset {pairs.key} has no pairs to train on")
        self.patch_size, self.patches_per_image, self.seed, self.flip = patch_size, patches_per_image, seed, flip
        self.epoch = 0
        self.images: list[Tensor] = []
        for sample in (pairs[i] for i in range(len(pairs))):
            stacked = torch.cat([sample.ir, luminance(sample.vi)], dim=0)  # (2, H, W)
            pad_h, pad_w = max(0, patch_size - stacked.shape[1]), max(0, patch_size - stacked.shape[2])
            if pad_h or pad_w:
                stacked = F.pad(stacked[None], (0, pad_w, 0, pad_h), mode="reflect")[0]
            self.images.append(stacked)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images) * self.patches_per_image

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index // self.patches_per_image]
        gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
        _, h, w = image.shape
        top = int(torch.randint(0, h - self.patch_size + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - self.patch_size + 1, (1,), generator=gen))
        crop = image[:, top : top + self.patch_size, left : left + self.patch_size]
        if self.flip and torch.rand((), generator=gen) < 0.5:
            crop = crop.flip(-1)
        if self.flip and torch.rand((), generator=gen) < 0.5:
            crop = crop.flip(-2)
        return crop[:1].contiguous(), crop[1:].contiguous()


class WarpDataset(Dataset[tuple[Tensor, Tensor]]):
    """Whole pairs resized to ``size`` x ``size`` (aspect ratio not kept), one item per pair and epoch.

    What the official MaeFuse training does (``Resize((640, 640))`` of each whole image, PIL bilinear, no
    crop, no augmentation); here antialiased bilinear, kept in memory as 8-bit like the resized PIL images.
    ``flip`` adds random flips, a pure function of (seed, epoch, index).
    """

    def __init__(self, pairs: PairDataset, size: int = 640, flip: bool = False, seed: int = 0) -> None:
        if len(pairs) == 0:
            raise ValueError(f"dataset {pairs.key} has no pairs to train on")
        self.size, self.flip, self.seed, self.epoch = size, flip, seed, 0
        self.images: list[Tensor] = []
        for sample in (pairs[i] for i in range(len(pairs))):
            stacked = torch.cat([sample.ir, luminance(sample.vi)], dim=0)[None].float()  # (1, 2, H, W)
            warped = F.interpolate(stacked, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            self.images.append((warped[0].clamp(0, 1) * 255).round().to(torch.uint8))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index].float() / 255.0
        if self.flip:
            gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
            if torch.rand((), generator=gen) < 0.5:
                image = image.flip(-1)
            if torch.rand((), generator=gen) < 0.5:
                image = image.flip(-2)
        return image[:1].contiguous(), image[1:].contiguous()
