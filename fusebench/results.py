"""The results file every run writes (``summary.json``): the source of truth that tables are built from.

It holds the mean scores and everything needed to reproduce them: the full run config, the method's
resolved config and weights hash, the dataset's exact id list hash, the metric profile and each metric's
direction and version, package versions, the git hash, the device and timings.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypedDict

SCHEMA_VERSION = 1


class MethodInfo(TypedDict):
    name: str  # registry name, e.g. "maefuse-compact"
    label: str  # the row label in tables (``--name``, default: the registry name)
    cfg: dict[str, Any]  # the method's resolved config
    weights: str | None  # weights file used, if any
    weights_sha256: str | None


class DatasetInfo(TypedDict):
    key: str  # "msrs.test", "tno.tang42": the column group in tables
    name: str
    split: str | None
    subset: str | None
    root: str | None
    n_pairs: int
    ids_sha256: str  # hash of the ordered id list: two runs compare only on the same images
    inputs_hash: str  # content hash of every source image, in pair order


class MetricsInfo(TypedDict):
    profile: str  # convention profile ("fusebench", "cddfuse", "tang", "vifb")
    conventions: dict[str, Any]  # the profile's stated conventions
    names: list[str]  # every metric cached for all pairs (the union of the runs' --metrics)
    asked: list[str]  # the metrics the last run asked for
    higher_is_better: dict[str, bool]
    versions: dict[str, int]


class Summary(TypedDict):
    schema: int
    fusebench_version: str
    created: str  # ISO 8601, UTC
    config: dict[str, Any]  # the full run config as given (CLI > defaults)
    method: MethodInfo
    dataset: DatasetInfo
    metrics: MetricsInfo
    n_images: int
    means: dict[str, float | None]  # metric -> mean over images; None where undefined on some image
    stds: dict[str, float | None]  # metric -> population std over images
    undefined: dict[str, list[str]]  # metric -> ids of the images where it is undefined (NaN)
    timings: dict[str, float]  # seconds: fuse_total, fuse_per_pair, metrics_total
    env: dict[str, Any]  # python, torch, numpy, platform, device, gpu
    git_hash: str | None


def ids_hash(ids: list[str]) -> str:
    """SHA-256 of the ordered, newline-joined id list."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def environment(device: str) -> dict[str, Any]:
    """Versions and hardware that can change a number."""
    import numpy
    import torch

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
    return env


def git_hash() -> str | None:
    """The fusebench checkout's commit, when it runs from one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_summary(path: str | Path) -> Summary:
    """Read a summary.json, checking it is one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable results file ({exc})") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION or "means" not in data:
        raise ValueError(f"{path}: not a fusebench summary (schema {SCHEMA_VERSION})")
    missing = [f"{part}.{key}" if key else part for part, key in _REQUIRED if not _has(data, part, key)]
    if missing:
        raise ValueError(f"{path}: a fusebench summary without {', '.join(missing)}; it was edited or is damaged")
    return data  # type: ignore[return-value]


# what tables and figures read from a summary: (section, key); key None means the section itself
_REQUIRED = (("method", "label"), ("dataset", "key"), ("dataset", "ids_sha256"), ("metrics", "profile"),
             ("metrics", "higher_is_better"), ("means", None), ("n_images", None))


def _has(data: dict[str, Any], part: str, key: str | None) -> bool:
    section = data.get(part)
    if key is None:
        return section is not None
    return isinstance(section, dict) and key in section
