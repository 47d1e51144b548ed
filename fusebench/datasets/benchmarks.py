"""The built-in benchmarks (TNO, RoadScene, MSRS, LLVIP, M3FD, VIFB, demo): layout, splits, subsets, metadata.

Every benchmark lives in ``<data root>/<name>/`` as ``ir/`` + ``vi/`` (no official split) or
``train|test/{ir,vi}`` (official split), with the id as the file stem (see ``shared/datasets/README.md``).
Official splits are folders; the literature's subsets and unofficial splits are id lists
(:mod:`fusebench.datasets.lists`). Asked for without a split, a split dataset gives its official
``test`` split, which is what a benchmark table reports; ``PairDataset.info["note"]`` says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fusebench.datasets.base import DATASETS, DatasetError, Location, PairDataset
from fusebench.datasets.demo import demo_folder
from fusebench.datasets.lists import list_names, read_ids
from fusebench.datasets.sources import SOURCES


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark: where its pairs are and what ``fusebench datasets list`` says about it."""

    name: str
    description: str
    pairs: str  # pair counts of the official release
    licence: str
    citation: str
    homepage: str
    splits: tuple[str, ...] = ()
    folder: Callable[[], Path] | None = None  # fixed location (demo); otherwise <data root>/<name>

    @property
    def subsets(self) -> tuple[str, ...]:
        return list_names(self.name)

    @property
    def default_split(self) -> str | None:
        return "test" if "test" in self.splits else None

    def locations(
        self, root: Path, split: str | None = None, subset: str | None = None, *, every_split: bool = False
    ) -> list[Location]:
        """The selections asked for: one, or with ``every_split`` and no split, one per official split."""
        if split is not None and split not in self.splits:
            valid = ", ".join(self.splits) if self.splits else "none (it has no official split)"
            raise DatasetError(f"{self.name}: unknown split '{split}'; valid splits: {valid}")
        if subset is not None and subset not in self.subsets:
            valid = ", ".join(self.subsets) if self.subsets else "none"
            raise DatasetError(f"{self.name}: unknown subset '{subset}'; valid subsets: {valid}")
        base = self.folder() if self.folder else root / self.name
        if self.folder is None and not base.is_dir():
            raise DatasetError(
                f"{self.name}: not found at {base}. Download it with "
                f"`fusebench datasets download {self.name} --data-root {root}`, "
                f"or point --data-root / $FUSEBENCH_DATA at the folder that holds {self.name}/"
            )
        info = {"description": self.description, "licence": self.licence, "citation": self.citation}
        ids = read_ids(self.name, subset) if subset else None
        if split is None and self.splits:
            if every_split:
                return [Location(self.name, base / s, s, subset, ids, info) for s in self.splits]
            split = self.default_split or self.splits[0]
            info["note"] = (
                f"no split given: using the official '{split}' split ({self.name}.{split}); "
                f"splits: {', '.join(self.splits)}"
            )
        return [Location(self.name, base / split if split else base, split, subset, ids, info)]

    def load(self, root: Path, split: str | None = None, subset: str | None = None) -> PairDataset:
        """Registry factory: the selected pairs as a PairDataset (files are decoded on indexing)."""
        return self.locations(root, split, subset)[0].dataset()


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "tno",
            "TNO Image Fusion Dataset: grey IR/visible surveillance scenes (one test pool, no split)",
            "60+ scenes (figshare); 47 in the common subsets",
            "research use with credit to TNO (Soesterberg, NL)",
            "Toet, A. TNO Image Fusion Dataset. figshare, 2014. doi:10.6084/m9.figshare.1008029",
            "https://figshare.com/articles/dataset/TNO_Image_Fusion_Dataset/1008029",
        ),
        Benchmark(
            "roadscene",
            "RoadScene: 221 aligned FLIR road pairs, grey IR and colour visible (no official split)",
            "221",
            "no licence file; derived from FLIR ADAS (FLIR terms may apply)",
            "Xu et al., FusionDN, AAAI 2020; Xu et al., U2Fusion, TPAMI 2020",
            "https://github.com/hanna-xu/RoadScene",
        ),
        Benchmark(
            "msrs",
            "MSRS: Multi-Spectral Road Scenarios, 640x480 day/night pairs from MFNet, enhanced IR",
            "361 test + 1,083 train",
            "no licence file; cite PIAFusion",
            "Tang et al., PIAFusion, Information Fusion 83-84, 2022",
            "https://github.com/Linfeng-Tang/MSRS",
            splits=("test", "train"),
        ),
        Benchmark(
            "llvip",
            "LLVIP: low-light pedestrian scenes, 1280x1024, IR stored as 3-channel grey",
            "3,463 test + 12,025 train",
            "non-commercial use only; citation required; privacy clause",
            "Jia et al., LLVIP: A Visible-infrared Paired Dataset for Low-light Vision, ICCV Workshops 2021",
            "https://bupt-ai-cz.github.io/LLVIP/",
            splits=("test", "train"),
        ),
        Benchmark(
            "m3fd",
            "M3FD: multi-scenario multi-modality pairs, mostly 1024x768 (fusion set)",
            "300 (fusion set); 4,200 (detection set)",
            "no data licence stated; cite TarDAL",
            "Liu et al., TarDAL, CVPR 2022",
            "https://github.com/JinyuanLiu-CV/TarDAL",
        ),
        Benchmark(
            "vifb",
            "VIFB: the 21-pair Visible and Infrared image Fusion Benchmark test set (INO, RGB-T tracking)",
            "21",
            "no licence file; cite VIFB and its source datasets",
            "Zhang et al., VIFB: A Visible and Infrared Image Fusion Benchmark, CVPR Workshops 2020",
            "https://github.com/xingchenzhang/VIFB",
        ),
        Benchmark(
            "demo",
            "6 synthetic pairs generated offline from a fixed seed (37x53 to 81x61, one 16-bit IR)",
            "6",
            "generated by fusebench (MIT)",
            "none",
            "fusebench.datasets.demo",
            folder=demo_folder,
        ),
    )
}

for _bench in BENCHMARKS.values():
    _source = SOURCES.get(_bench.name)
    DATASETS.register(
        _bench.name,
        description=_bench.description,
        splits=_bench.splits,
        default_split=_bench.default_split,
        subsets=_bench.subsets,
        pairs=_bench.pairs,
        licence=_bench.licence,
        citation=_bench.citation,
        homepage=_bench.homepage,
        download=_source.summary if _source else "generated locally",
    )(_bench.load)
