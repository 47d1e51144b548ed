"""`folder`: a "method" that reads fused images another method already produced, so they can be scored.

Images are matched to pairs by id (file stem) with any common extension. They pass through unchanged
(grey or colour), so a folder run over fusebench's own output reproduces that run's metrics exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fusebench.color import luminance
from fusebench.images import IMAGE_EXTENSIONS, ImageError, read_image
from fusebench.methods.base import FusionMethod, check_pair_tensors, register_method


class FolderResults(FusionMethod):
    """Fused images read from ``path/<id>.<ext>``; needs the pair ids, so it fuses through ``fuse_images``."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path=str(path))
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: folder of fused images not found")
        self._files = {p.stem: p for p in sorted(self.path.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}

    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        raise TypeError("the `folder` method reads fused images by pair id: call fuse_batch/fuse_images with ids")

    def _read(self, ids: Sequence[str] | None, like: Tensor) -> Tensor:
        if ids is None or len(ids) != like.shape[0]:
            raise TypeError("the `folder` method needs one pair id per image in the batch")
        images = []
        for pair_id in ids:
            if pair_id not in self._files:
                raise ImageError(self.path / pair_id, f"no fused image for pair '{pair_id}' in {self.path}")
            path = self._files[pair_id]
            arr = read_image(path, mode="keep")
            if arr.shape[:2] != tuple(like.shape[-2:]):
                raise ImageError(
                    path, f"size {arr.shape[1]}x{arr.shape[0]} differs from the source pair "
                    f"({like.shape[-1]}x{like.shape[-2]})"
                )
            images.append(torch.from_numpy(np.atleast_3d(arr)).permute(2, 0, 1))
        channels = {im.shape[0] for im in images}
        if len(channels) > 1:  # mixed grey and colour files in one batch: compare on luminance
            images = [luminance(im) for im in images]
        return torch.stack(images).to(like.device, like.dtype)

    def fuse_batch(self, ir: Tensor, vi: Tensor, ids: Sequence[str] | None = None) -> Tensor:
        return self.check_output(luminance(self._read(ids, ir)), ir, ids)

    def fuse_images(self, ir: Tensor, vi: Tensor, ids: Sequence[str] | None = None) -> Tensor:
        check_pair_tensors(ir, vi)
        return self._read(ids, ir)


@register_method("folder", description="scores fused images already in a folder (matched by pair id); path=DIR")
def folder(path: str | Path) -> FusionMethod:
    return FolderResults(path)
