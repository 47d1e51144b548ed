"""Id lists of the literature's test subsets and splits, shipped with the package.

The lists (``lists/<dataset>.<name>.csv``, one ``id`` column) were taken from the curated copies in
``shared/datasets/*/{subsets,splits}``. They hold ids only, no images, so they select the same pairs
from a user's own download as from ours.
"""

from __future__ import annotations

import csv
import io
from importlib import resources

from fusebench.datasets.base import DatasetError


def list_names(dataset: str) -> tuple[str, ...]:
    """Names of the id lists shipped for ``dataset`` (``tang42``, ``cddfuse_test50``, ...), sorted."""
    folder = resources.files("fusebench.datasets") / "lists"
    prefix = f"{dataset}."
    names = (f.name[len(prefix) : -len(".csv")] for f in folder.iterdir() if f.name.startswith(prefix))
    return tuple(sorted(n for n in names if n))


def read_ids(dataset: str, name: str) -> tuple[str, ...]:
    """The ids of list ``name`` of ``dataset``, in the order the source paper used them."""
    resource = resources.files("fusebench.datasets") / "lists" / f"{dataset}.{name}.csv"
    if not resource.is_file():
        raise DatasetError(
            f"{dataset}: no id list '{name}'; available: {', '.join(list_names(dataset)) or 'none'}"
        )
    rows = list(csv.DictReader(io.StringIO(resource.read_text(encoding="utf-8"))))
    return tuple(row["id"].strip() for row in rows if row["id"].strip())
