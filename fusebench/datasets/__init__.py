"""Benchmark datasets: TNO, RoadScene, MSRS, LLVIP, M3FD, VIFB, the offline ``demo``, and any ir/+vi/ folder.

>>> from fusebench.datasets import load_dataset
>>> pairs = load_dataset("demo")
>>> pairs.key, len(pairs), tuple(pairs[0].ir.shape)
('demo', 6, (1, 48, 64))

Plugins register more datasets in the ``fusebench.datasets`` entry-point group with
``DATASETS.register(name, description=..., splits=(...), subsets=(...))`` on a factory
``(root: Path, split: str | None = None, subset: str | None = None) -> PairDataset``.
"""

from fusebench.datasets.base import (
    DATASETS,
    DatasetError,
    Location,
    Pair,
    PairDataset,
    Sample,
    concat_datasets,
    data_root,
    load_pair,
    pairs_from_folders,
)
from fusebench.datasets.benchmarks import BENCHMARKS, Benchmark
from fusebench.datasets.fetch import ManualDownloadRequired, download_dataset
from fusebench.datasets.loading import list_datasets, load_dataset, locate, parse_name
from fusebench.datasets.verify import Report, verify_dataset

__all__ = [
    "BENCHMARKS",
    "DATASETS",
    "Benchmark",
    "DatasetError",
    "Location",
    "ManualDownloadRequired",
    "Pair",
    "PairDataset",
    "Report",
    "Sample",
    "concat_datasets",
    "data_root",
    "download_dataset",
    "list_datasets",
    "load_dataset",
    "load_pair",
    "locate",
    "pairs_from_folders",
    "parse_name",
    "verify_dataset",
]
