"""Resolving what a user typed (``msrs``, ``msrs.test``, ``tno.tang42``, ``~/my_pairs``) into pairs on disk.

Registered names win; anything else that is an existing folder is a generic dataset: its ``ir/`` and
``vi/`` (or ``<split>/ir`` and ``<split>/vi``) paired by file stem, keyed by the folder's name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fusebench.datasets.base import DATASETS, DatasetError, Location, PairDataset, data_root
from fusebench.datasets.benchmarks import BENCHMARKS
from fusebench.registry import Entry, UnknownNameError


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching the fnmatch ``pattern``, sorted."""
    return DATASETS.list(pattern)


def parse_name(
    name: str, split: str | None = None, subset: str | None = None
) -> tuple[str, str | None, str | None]:
    """Split a dotted key (``msrs.test``, ``tno.tang42``) into (name, split, subset).

    Each dotted part is a split if the dataset has such a split, else a subset. A part that contradicts
    an explicit ``split``/``subset`` argument raises.
    """
    base, _, rest = name.partition(".")
    if name in DATASETS or not rest or base not in DATASETS:
        return name, split, subset
    meta = DATASETS.get(base).meta
    splits, subsets = tuple(meta.get("splits", ())), tuple(meta.get("subsets", ()))
    for part in rest.split("."):
        if part in splits:
            kind, given, split = "split", split, part
        elif part in subsets:
            kind, given, subset = "subset", subset, part
        else:
            raise DatasetError(
                f"{base}: '{part}' in '{name}' is neither a split ({', '.join(splits) or 'none'}) "
                f"nor a subset ({', '.join(subsets) or 'none'})"
            )
        if given not in (None, part):
            raise DatasetError(f"'{name}' names {kind} '{part}' but {kind}='{given}' was also given")
    return base, split, subset


def _is_folder_name(name: str) -> bool:
    return name not in DATASETS and (os.sep in name or "/" in name or Path(name).expanduser().is_dir())


def _generic(path: str, split: str | None, subset: str | None) -> Location:
    folder = Path(path).expanduser()
    if subset is not None:
        raise DatasetError(f"{folder}: a folder dataset has no named subsets (got subset='{subset}')")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found")
    if split is not None:
        if not (folder / split).is_dir():
            found = sorted(d.name for d in folder.iterdir() if (d / "ir").is_dir())
            raise DatasetError(
                f"{folder}: no split folder '{split}'; folders with ir/: {', '.join(found) or 'none'}"
            )
        folder = folder / split
    elif not (folder / "ir").is_dir() and not (folder / "vi").is_dir():
        splits = sorted(d.name for d in folder.iterdir() if (d / "ir").is_dir())
        hint = f"; pass a split: {', '.join(splits)}" if splits else ""
        raise DatasetError(f"{folder}: expected ir/ and vi/ folders inside{hint}")
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path).expanduser().resolve().name) or "folder"
    return Location(name, folder, split, None, None, {"description": f"pairs from the folder {folder}"})


def locate(
    name: str,
    split: str | None = None,
    subset: str | None = None,
    root: str | os.PathLike[str] | None = None,
    *,
    every_split: bool = False,
) -> list[Location]:
    """Where the selection lives (built-ins and folders); ``every_split``: one per official split."""
    if _is_folder_name(name):
        return [_generic(name, split, subset)]
    base, split, subset = parse_name(name, split, subset)
    _entry(base)
    if base not in BENCHMARKS:
        raise DatasetError(f"dataset '{base}' comes from a plugin and has no known folder layout")
    return BENCHMARKS[base].locations(data_root(root), split, subset, every_split=every_split)


def load_dataset(
    name: str,
    split: str | None = None,
    subset: str | None = None,
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
) -> PairDataset:
    """The pairs of dataset ``name`` (built-in, plugin, dotted key or folder), paired and ready to index.

    Args:
        name: ``tno``, ``msrs``, ``msrs.test``, ``tno.tang42``, ``demo``, ... or a folder with ``ir/``
            and ``vi/``.
        split: official split (``train``/``test``); a split dataset defaults to ``test``
            (see ``info["note"]``).
        subset: a named id list (``tang42``, ``cddfuse_test50``, ...).
        root: data root (default ``$FUSEBENCH_DATA``, else ``./datasets``); ``demo`` needs none.
        download: fetch a built-in benchmark that is missing from the root from its public source first
            (:func:`fusebench.datasets.download_dataset`; not with ``FUSEBENCH_OFFLINE=1``).

    Raises:
        DatasetError: unknown name/split/subset (listing the valid ones), missing folder, unpaired ids.
        fusebench.download.DownloadError: ``download`` and the fetch failed (the message says what to do).
    """
    if _is_folder_name(name):
        return _generic(name, split, subset).dataset()
    base, split, subset = parse_name(name, split, subset)
    entry = _entry(base)
    if download and _missing(base, root):
        from fusebench.datasets.fetch import download_dataset
        from fusebench.download import DownloadError

        try:
            download_dataset(base, root)
        except DownloadError as exc:
            raise DatasetError(f"{base}: not at {data_root(root) / base}, and fetching it failed: {exc}. Or point "
                               f"--data-root / $FUSEBENCH_DATA at the folder that holds {base}/") from exc
    return entry.factory(root=data_root(root), split=split, subset=subset)


def _missing(name: str, root: str | os.PathLike[str] | None) -> bool:
    """A built-in benchmark whose folder is not under the data root, and downloads are allowed."""
    from fusebench.download import offline

    bench = BENCHMARKS.get(name)
    return bench is not None and bench.folder is None and not (data_root(root) / name).is_dir() and not offline()


def _entry(name: str) -> Entry[PairDataset]:
    try:
        return DATASETS.get(name)
    except UnknownNameError as exc:
        raise DatasetError(f"{exc} (or give a folder that holds ir/ and vi/)") from None
