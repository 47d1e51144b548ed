"""Paired infrared/visible datasets: pairing by id, loading, the data root, and the dataset registry.

A dataset is a list of :class:`Pair` (id = file stem, identical in ``ir/`` and ``vi/``). Indexing a
:class:`PairDataset` decodes one pair into float32 tensors in [0, 1]: infrared (1, H, W), visible
(1, H, W) for grey or (3, H, W) for colour.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from fusebench.images import IMAGE_EXTENSIONS, ImageError, read_image
from fusebench.registry import Registry

DATASETS: Registry[PairDataset] = Registry("dataset", entry_point_group="fusebench.datasets")


class DatasetError(ValueError):
    """A dataset that cannot be used as asked (missing folder, unpaired ids, unknown split)."""


@dataclass(frozen=True)
class Pair:
    """One registered infrared/visible pair on disk."""

    id: str
    ir: Path
    vi: Path


@dataclass
class Sample:
    """One decoded pair: ``ir`` (1, H, W) and ``vi`` (1 or 3, H, W), float32 in [0, 1]."""

    id: str
    ir: Tensor
    vi: Tensor


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root`` if given, else ``$FUSEBENCH_DATA``, else ``./datasets``."""
    return Path(root or os.environ.get("FUSEBENCH_DATA") or "datasets").expanduser()


def _images_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
            if path.stem in found:
                raise DatasetError(f"{folder}: id '{path.stem}' appears twice ({found[path.stem].name}, {path.name})")
            found[path.stem] = path
    return found


def pairs_from_folders(ir_dir: Path, vi_dir: Path, ids: Sequence[str] | None = None) -> list[Pair]:
    """Pair ``ir_dir/<id>.*`` with ``vi_dir/<id>.*``; unpaired or missing ids raise, naming them."""
    ir, vi = _images_by_stem(Path(ir_dir)), _images_by_stem(Path(vi_dir))
    if ids is None:
        only_ir, only_vi = sorted(set(ir) - set(vi)), sorted(set(vi) - set(ir))
        if only_ir or only_vi:
            raise DatasetError(
                f"unpaired images: ids only in {ir_dir}: {only_ir[:10]}; ids only in {vi_dir}: {only_vi[:10]}"
            )
        ids = sorted(ir)
    missing = [i for i in ids if i not in ir or i not in vi]
    if missing:
        raise DatasetError(f"ids listed but not found in {ir_dir} and {vi_dir}: {missing[:10]}")
    if not ids:
        raise DatasetError(f"no images found in {ir_dir}")
    return [Pair(i, ir[i], vi[i]) for i in ids]


@dataclass(frozen=True)
class Location:
    """Where one dataset selection lives: a folder holding ``ir/`` and ``vi/``, plus an optional id list.

    ``ids=None`` means every pair in the folder; a list keeps its order (the literature's order).
    """

    name: str
    folder: Path
    split: str | None = None
    subset: str | None = None
    ids: tuple[str, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return ".".join(p for p in (self.name, self.split, self.subset) if p)

    def dataset(self) -> PairDataset:
        """Pair the files (raising DatasetError for unpaired or missing ids) without decoding them."""
        pairs = pairs_from_folders(self.folder / "ir", self.folder / "vi", self.ids)
        info = {**self.info, "folder": str(self.folder), "pairs": len(pairs)}
        return PairDataset(self.name, pairs, split=self.split, subset=self.subset, root=self.folder, info=info)


class PairDataset(Dataset[Sample]):
    """An ordered list of pairs with a name such as ``tno``, ``msrs.test`` or ``roadscene.cddfuse_test50``."""

    def __init__(
        self,
        name: str,
        pairs: Sequence[Pair],
        *,
        split: str | None = None,
        subset: str | None = None,
        root: Path | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.name, self.split, self.subset, self.root = name, split, subset, root
        self.pairs = list(pairs)
        self.info = dict(info or {})

    @property
    def key(self) -> str:
        """``name[.split][.subset]``: the dataset's name in results and tables."""
        return ".".join(p for p in (self.name, self.split, self.subset) if p)

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        return load_pair(self.pairs[index])

    def __repr__(self) -> str:
        return f"PairDataset({self.key!r}, {len(self)} pairs, root={str(self.root)!r})"


def concat_datasets(parts: Sequence[PairDataset]) -> PairDataset:
    """One dataset of several (for training on e.g. MSRS train + LLVIP train); ids become ``key:id``."""
    if len(parts) == 1:
        return parts[0]
    pairs = [Pair(f"{part.key}:{p.id}", p.ir, p.vi) for part in parts for p in part.pairs]
    return PairDataset("+".join(part.key for part in parts), pairs, info={"parts": [part.key for part in parts]})


def load_pair(pair: Pair) -> Sample:
    """Decode one pair; size mismatches raise an ImageError naming both files."""
    ir = read_image(pair.ir, mode="grey")
    vi = read_image(pair.vi, mode="keep")
    if ir.shape[:2] != vi.shape[:2]:
        raise ImageError(
            pair.ir, f"size {ir.shape[1]}x{ir.shape[0]} differs from the visible image {pair.vi} "
            f"({vi.shape[1]}x{vi.shape[0]})"
        )
    ir_t = torch.from_numpy(ir)[None]
    vi_t = torch.from_numpy(vi)[None] if vi.ndim == 2 else torch.from_numpy(vi).permute(2, 0, 1).contiguous()
    return Sample(pair.id, ir_t, vi_t)
