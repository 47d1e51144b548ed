"""Random aligned crops of (infrared, visible luminance) and warped whole pairs for training.

Both datasets decode lazily by default (``lazy=True``): each item is decoded from the pair's image files
when a DataLoader worker asks for it, so memory does not grow with the dataset (the full LLVIP train set
held as float32 would need about 126 GB). ``lazy=False`` decodes everything up front (the pre-pipeline
behaviour, kept for ``pipeline=false`` and small benchmarks). Items are identical either way.

``cache_dir`` (with ``lazy``) keeps each pair's 8-bit pixels on disk as ``.npy`` after its first decode
and reads later crops through a memory map: no PNG/JPEG decode per crop, still no dataset in RAM. Only
pairs whose decoded values are exactly ``uint8 / 255`` are cached (others are decoded each time), so
items stay identical.

An item is a pure function of its key: an ``int`` index (at the epoch set by :meth:`set_epoch`) or an
``(epoch, index)`` tuple, which is what :class:`~fusebench.training.pipeline.StepBatchSampler` yields, so
workers need no shared epoch state.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from fusebench.color import luminance
from fusebench.datasets.base import PairDataset
from fusebench.files import atomic_write


def _recently_used(recent: OrderedDict[int, Tensor], keep: int, i: int, decode: Callable[[int], Tensor]) -> Tensor:
    """Pair ``i`` from a small least-recently-used store of decoded pairs, decoding it when absent."""
    if i in recent:
        recent.move_to_end(i)
        return recent[i]
    image = recent[i] = decode(i)
    while len(recent) > keep:
        recent.popitem(last=False)
    return image

class PatchDataset(Dataset[tuple[Tensor, Tensor]]):
    """``patches_per_image`` aligned crops per pair and epoch, each (1, P, P) in [0, 1], with random flips.

    Crops are a pure function of (seed, epoch, index), so a resumed run sees the same data.
    Images smaller than the patch are reflect-padded.
    """

    def __init__(
        self, pairs: PairDataset, patch_size: int = 128, patches_per_image: int = 8, seed: int = 0, flip: bool = True,
        *, lazy: bool = False, with_index: bool = False, keep: int = 8, cache_dir: str | Path | None = None,
    ) -> None:
        if len(pairs) == 0:
            raise ValueError(f"dataset {pairs.key} has no pairs to train on")
        self.patch_size, self.patches_per_image, self.seed, self.flip = patch_size, patches_per_image, seed, flip
        self.pairs, self.lazy, self.with_index, self.keep = pairs, lazy, with_index, keep
        self.cache_dir = Path(cache_dir) if cache_dir is not None and lazy else None
        self.n_pairs = len(pairs)
        self.epoch = 0
        self._recent: OrderedDict[int, Tensor] = OrderedDict()  # lazy: the last ``keep`` decoded pairs
        self.images: list[Tensor] = [] if lazy else [self._decode(i) for i in range(len(pairs))]

    def _decode(self, i: int) -> Tensor:
        sample = self.pairs[i]
        stacked = torch.cat([sample.ir, luminance(sample.vi)], dim=0)  # (2, H, W)
        pad_h, pad_w = max(0, self.patch_size - stacked.shape[1]), max(0, self.patch_size - stacked.shape[2])
        if pad_h or pad_w:
            stacked = F.pad(stacked[None], (0, pad_w, 0, pad_h), mode="reflect")[0]
        return stacked

    def _cached(self, i: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Pair ``i``'s 8-bit (infrared, visible) arrays from the disk cache, written on first use; None
        when the pair's values are not 8-bit (16-bit files, colour infrared converted to grey)."""
        assert self.cache_dir is not None
        paths = [self.cache_dir / f"{i}_{m}.npy" for m in ("ir", "vi")]
        skip = self.cache_dir / f"{i}.not8bit"
        if skip.exists():
            return None
        if not all(p.exists() for p in paths):
            sample = self.pairs[i]
            arrays = [(t * 255).round().clamp(0, 255).to(torch.uint8) for t in (sample.ir, sample.vi)]
            if not all(torch.equal(a.float() / 255.0, t) for a, t in zip(arrays, (sample.ir, sample.vi))):
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                skip.touch()
                return None
            for path, array in zip(paths, arrays):
                with atomic_write(path) as handle:  # workers and ranks may race to write the same pair
                    np.save(handle, array.numpy())
        ir, vi = (np.load(p, mmap_mode="r") for p in paths)
        return ir, vi

    def _crop_cached(self, arrays: tuple[np.ndarray, np.ndarray], epoch: int, index: int) -> Tensor:
        """The crop of :meth:`__getitem__`, read through the memory map: same values as the decoded path."""
        ir, vi = arrays
        h, w = ir.shape[1:]
        p = self.patch_size
        if h < p or w < p:  # small image: pad the whole (small) pair as the decoded path does
            full = torch.cat([torch.from_numpy(np.array(ir)).float() / 255.0,
                              luminance(torch.from_numpy(np.array(vi)).float() / 255.0)])
            full = F.pad(full[None], (0, max(0, p - w), 0, max(0, p - h)), mode="reflect")[0]
            return self._crop(full, epoch, index)
        gen = _generator(self.seed, epoch, index)
        top, left = _corner(h, w, p, gen)
        window = (slice(None), slice(top, top + p), slice(left, left + p))
        crop = torch.cat([torch.from_numpy(np.array(ir[window])).float() / 255.0,
                          luminance(torch.from_numpy(np.array(vi[window])).float() / 255.0)])
        return _flips(crop, gen, self.flip)

    def image(self, i: int) -> Tensor:
        """Pair ``i`` as (2, H, W) float (infrared, visible luminance), padded to at least the patch."""
        if not self.lazy:
            return self.images[i]
        return _recently_used(self._recent, self.keep, i, self._decode)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_pairs * self.patches_per_image

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, ...]:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        pair = index // self.patches_per_image
        arrays = self._cached(pair) if self.cache_dir is not None else None
        crop = self._crop_cached(arrays, epoch, index) if arrays is not None else self._crop(self.image(pair), epoch, index)
        out = (crop[:1].contiguous(), crop[1:].contiguous())
        return (*out, pair) if self.with_index else out


    def _crop(self, image: Tensor, epoch: int, index: int) -> Tensor:
        gen = _generator(self.seed, epoch, index)
        _, h, w = image.shape
        top, left = _corner(h, w, self.patch_size, gen)
        return _flips(image[:, top : top + self.patch_size, left : left + self.patch_size], gen, self.flip)


def _generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The random stream of one item in one epoch: crops and flips are a pure function of (seed, epoch, index)."""
    return torch.Generator().manual_seed(hash((seed, epoch, index)) & 0x7FFFFFFF)


def _corner(h: int, w: int, p: int, gen: torch.Generator) -> tuple[int, int]:
    """Top-left corner of a random p x p window in an h x w image."""
    top = int(torch.randint(0, h - p + 1, (1,), generator=gen))
    return top, int(torch.randint(0, w - p + 1, (1,), generator=gen))


def _flips(image: Tensor, gen: torch.Generator, flip: bool) -> Tensor:
    """Random horizontal, then vertical flip (each with probability 1/2) when ``flip``."""
    if flip and torch.rand((), generator=gen) < 0.5:
        image = image.flip(-1)
    if flip and torch.rand((), generator=gen) < 0.5:
        image = image.flip(-2)
    return image


class WarpDataset(Dataset[tuple[Tensor, Tensor]]):
    """Whole pairs resized to ``size`` x ``size`` (aspect ratio not kept), one item per pair and epoch.

    What the official MaeFuse training does (``Resize((640, 640))`` of each whole image, PIL bilinear, no
    crop, no augmentation); here antialiased bilinear, kept in memory as 8-bit like the resized PIL images.
    ``flip`` adds random flips, a pure function of (seed, epoch, index).
    """

    def __init__(self, pairs: PairDataset, size: int = 640, flip: bool = False, seed: int = 0, *,
                 lazy: bool = False, with_index: bool = False, keep: int = 64,
                 cache_dir: str | Path | None = None) -> None:
        if len(pairs) == 0:
            raise ValueError(f"dataset {pairs.key} has no pairs to train on")
        self.size, self.flip, self.seed, self.epoch = size, flip, seed, 0
        self.pairs, self.lazy, self.with_index, self.keep = pairs, lazy, with_index, keep
        self.cache_dir = Path(cache_dir) if cache_dir is not None and lazy else None
        self.n_pairs = len(pairs)
        self._recent: OrderedDict[int, Tensor] = OrderedDict()  # lazy: the last ``keep`` warped pairs (uint8)
        self.images: list[Tensor] = [] if lazy else [self._decode(i) for i in range(len(pairs))]

    def _decode(self, i: int) -> Tensor:
        sample = self.pairs[i]
        stacked = torch.cat([sample.ir, luminance(sample.vi)], dim=0)[None].float()  # (1, 2, H, W)
        warped = F.interpolate(stacked, size=(self.size, self.size), mode="bilinear", align_corners=False,
                               antialias=True)
        return (warped[0].clamp(0, 1) * 255).round().to(torch.uint8)

    def image(self, i: int) -> Tensor:
        """Pair ``i`` warped, (2, size, size) uint8 (from the disk cache when one is set: exact, 8-bit)."""
        if not self.lazy:
            return self.images[i]
        if self.cache_dir is not None:
            path = self.cache_dir / f"{i}_warp{self.size}.npy"
            if not path.exists():
                with atomic_write(path) as handle:
                    np.save(handle, self._decode(i).numpy())
            return torch.from_numpy(np.array(np.load(path, mmap_mode="r")))
        return _recently_used(self._recent, self.keep, i, self._decode)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_pairs

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, ...]:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        image = self.image(index).float() / 255.0
        if self.flip:
            image = _flips(image, _generator(self.seed, epoch, index), flip=True)
        out = (image[:1].contiguous(), image[1:].contiguous())
        return (*out, index) if self.with_index else out
