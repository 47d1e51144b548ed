"""`folder`: a "method" that reads fused images another method already produced, so they can be scored.

Images are matched to pairs by a name pattern: ``{id}`` by default (the pair id with any common image
extension), or e.g. ``pattern="{id}_fused.png"`` (an exact file name), or ``prefix=``/``suffix=`` around the id
(``suffix="_fused"`` is ``pattern="{id}_fused"``). They pass through unchanged (grey or colour), so a folder
run over fusebench's own output reproduces that run's metrics exactly. :meth:`FolderResults.check_ids`
lists every pair without an image at once; the runner calls it before anything is written, hashes the
images' content (replacing an image re-imports it and invalidates its cached scores) through
:meth:`FolderResults.source_files`.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fusebench.color import luminance
from fusebench.images import IMAGE_EXTENSIONS, ImageError, read_image
from fusebench.methods.base import FusionMethod, OptionError, check_pair_tensors, register_method


def _check_pattern(pattern: str) -> str:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as exc:
        raise OptionError(f"method 'folder': option 'pattern' {pattern!r} is not a valid pattern ({exc})") from exc
    if fields != ["id"] or "/" in pattern or "\\" in pattern:
        raise OptionError(f"method 'folder': option 'pattern' must hold '{{id}}' exactly once and no other "
                          f"field or folder, e.g. '{{id}}_fused.png'; got {pattern!r}")
    return pattern


class FolderResults(FusionMethod):
    """Fused images read from ``path/<pattern with the pair id>``; fuses through ``fuse_images`` with ids."""

    def __init__(self, path: str | Path, pattern: str | None = None, prefix: str = "", suffix: str = "") -> None:
        if pattern is not None and (prefix or suffix):
            raise OptionError("method 'folder': give either option 'pattern' or 'prefix'/'suffix', not both")
        pattern = _check_pattern(pattern if pattern is not None else f"{prefix}{{id}}{suffix}")
        super().__init__(path=str(path), pattern=pattern)
        self.path = Path(path)
        self.pattern = pattern
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: folder of fused images not found (option 'path')")
        self._exact = Path(pattern.replace("{id}", "x")).suffix.lower() in IMAGE_EXTENSIONS
        self._files: dict[str, Path] = {}
        if not self._exact:  # name without extension: any common image extension, but only one per name
            for p in sorted(self.path.iterdir()):
                if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."):
                    if p.stem in self._files:
                        raise ImageError(p, f"two images named '{p.stem}' ({self._files[p.stem].name}, {p.name}); "
                                            "give the extension in pattern=, e.g. '{id}.png'")
                    self._files[p.stem] = p

    def file_for(self, pair_id: str) -> Path | None:
        """The fused image of ``pair_id``, or None when the folder has none."""
        name = self.pattern.format(id=pair_id)
        if self._exact:
            path = self.path / name
            return path if path.is_file() else None
        return self._files.get(name)

    def check_ids(self, ids: Sequence[str]) -> None:
        """Raise one error listing every id without a fused image (and how many), before anything is read."""
        missing = [i for i in ids if self.file_for(i) is None]
        if missing:
            found = sorted(p.name for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            example = f"; it holds {len(found)} image(s), e.g. {', '.join(found[:3])}" if found else "; it holds none"
            which = f"pair '{missing[0]}'" if len(missing) == 1 else f"{len(missing)} of {len(ids)} pairs"
            raise ImageError(
                self.path, f"no fused image for {which} named {self.pattern!r}"
                f"{'' if self._exact else ' (any image extension)'}: {', '.join(missing)}{example}. "
                "Set the name pattern with --set pattern='{id}_fused.png' (or prefix=/suffix=)"
            )

    def source_files(self, ids: Sequence[str]) -> dict[str, Path]:
        """Pair id -> the image file it is read from (for content hashing)."""
        self.check_ids(ids)
        return {i: self.file_for(i) for i in ids}  # type: ignore[misc]

    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        raise TypeError("the `folder` method reads fused images by pair id: call fuse_batch/fuse_images with ids")

    def _read(self, ids: Sequence[str] | None, like: Tensor) -> Tensor:
        if ids is None or len(ids) != like.shape[0]:
            raise TypeError("the `folder` method needs one pair id per image in the batch")
        self.check_ids(ids)
        images = []
        for pair_id in ids:
            path = self.file_for(pair_id)
            arr = read_image(path, mode="keep")  # type: ignore[arg-type]
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


@register_method("folder", description="scores fused images already in a folder: path=DIR, pattern='{id}_fused.png' "
                                       "(default '{id}' with any extension) or prefix=/suffix=")
def folder(path: str | Path, pattern: str | None = None, prefix: str = "", suffix: str = "") -> FusionMethod:
    return FolderResults(path, pattern=pattern, prefix=prefix, suffix=suffix)
