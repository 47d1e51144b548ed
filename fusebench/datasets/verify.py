"""``fusebench datasets verify``: decode every pair and report every problem with the file's path.

Loading stops at the first problem; verifying collects all of them: ids present in only one of
``ir/`` and ``vi/``, listed ids that are missing, files that do not decode, IR/VI size mismatches, and
images smaller than a metric of the default suite needs (``fusebench run`` would refuse them; pass
``metrics=`` to check against other metrics). Notes (not problems) flag 16-bit files and infrared stored
as three channels, which load fine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from fusebench.datasets.base import Location
from fusebench.datasets.loading import locate
from fusebench.images import IMAGE_EXTENSIONS, ImageError, read_image


@dataclass(frozen=True)
class Finding:
    """One problem or note about one file (or folder)."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Report:
    """Outcome of verifying one selection (``msrs.test``): pairs that decoded, problems, notes."""

    key: str
    folder: Path
    checked: int = 0
    problems: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_dataset(
    name: str, split: str | None = None, subset: str | None = None, root: str | os.PathLike[str] | None = None,
    metrics: Sequence[str] | None = None,
) -> list[Report]:
    """Verify a dataset, every official split when ``split`` is None; DatasetError if it is not found.

    ``metrics``: the metrics whose minimum image size is checked (default: the default suite).
    """
    return [verify_location(loc, metrics) for loc in locate(name, split, subset, root, every_split=True)]


def min_sizes(metrics: Sequence[str] | None = None) -> dict[str, int]:
    """Metric -> smallest height and width it is defined for (default: the default suite)."""
    from fusebench.metrics import DEFAULT_METRICS, get_metric

    return {get_metric(m).name: int(get_metric(m).meta.get("min_size", 1)) for m in (metrics or DEFAULT_METRICS)}


def verify_location(location: Location, metrics: Sequence[str] | None = None) -> Report:
    """Check every pair of one selection; see the module docstring for what is checked."""
    need = min_sizes(metrics)
    report = Report(location.key, location.folder)
    ir_dir, vi_dir = location.folder / "ir", location.folder / "vi"
    missing_dirs = [d for d in (ir_dir, vi_dir) if not d.is_dir()]
    if missing_dirs:
        report.problems += [Finding(d, "folder not found") for d in missing_dirs]
        return report
    ir, vi = _by_stem(ir_dir, report), _by_stem(vi_dir, report)
    if location.ids is None:
        for i in sorted(ir.keys() - vi.keys()):
            report.problems.append(Finding(ir[i], f"unpaired id '{i}': no visible image in {vi_dir}"))
        for i in sorted(vi.keys() - ir.keys()):
            report.problems.append(Finding(vi[i], f"unpaired id '{i}': no infrared image in {ir_dir}"))
        ids = sorted(ir.keys() & vi.keys())
    else:
        for i in location.ids:
            for folder, files in ((ir_dir, ir), (vi_dir, vi)):
                if i not in files:
                    report.problems.append(
                        Finding(folder, f"id '{i}' of subset '{location.subset}' is missing")
                    )
        ids = [i for i in location.ids if i in ir and i in vi]
    for i in ids:
        if _check_pair(ir[i], vi[i], report, need):
            report.checked += 1
    return report


def _by_stem(folder: Path, report: Report) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or path.name.startswith("."):
            continue
        if path.stem in found:
            report.problems.append(
                Finding(path, f"id '{path.stem}' appears twice (also {found[path.stem].name})")
            )
        else:
            found[path.stem] = path
    return found


def _check_pair(ir_path: Path, vi_path: Path, report: Report, need: dict[str, int] | None = None) -> bool:
    """Decode both files, note bit depth and channels; True when the pair is usable."""
    shapes = []
    for path, kind in ((ir_path, "ir"), (vi_path, "vi")):
        try:
            shapes.append(read_image(path, mode="grey" if kind == "ir" else "keep").shape[:2])
        except ImageError as exc:
            report.problems.append(Finding(path, exc.problem))
            continue
        with Image.open(path) as img:
            if img.mode.startswith("I"):
                report.notes.append(Finding(path, f"16-bit image ({img.mode}); loaded scaled by 1/65535"))
            if kind == "ir" and img.mode == "RGB":
                report.notes.append(Finding(path, "3-channel infrared; loaded as one channel"))
    if len(shapes) < 2:
        return False
    if shapes[0] != shapes[1]:
        (ih, iw), (vh, vw) = shapes
        report.problems.append(
            Finding(ir_path, f"size {iw}x{ih} differs from the visible image {vi_path} ({vw}x{vh})")
        )
        return False
    h, w = shapes[0]
    too_small = {m: s for m, s in (need or {}).items() if min(h, w) < s}
    if too_small:
        report.problems.append(Finding(ir_path, f"size {w}x{h} (with {vi_path.name}) is too small for "
                                                + ", ".join(f"{m} (needs {s}x{s})" for m, s in too_small.items())))
        return False
    return True
