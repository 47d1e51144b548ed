"""`fusebench run`: dataset -> method -> fused images -> metrics -> results, resumable.

Layout of one run, ``<out>/<name>/<dataset key>/`` (name: ``--name``, default the method's):

- ``run.json``: what the fused images depend on (method, its config and weights hash, dataset and ids).
  A later run into the same folder with a different fingerprint is refused, never mixed in.
- ``fused/<id>.png``: lossless 8-bit fused images (colour restored where the visible image has colour),
  each written atomically, so an interrupted run resumes from the pairs already on disk.
- ``timings.csv``: seconds spent fusing each pair.
- ``metrics_<profile>.csv`` and ``summary_<profile>.json``: per-image scores and the summary
  (:mod:`fusebench.results`), one pair of files per metric profile so profiles never overwrite each other.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusebench import __version__
from fusebench.datasets import PairDataset, load_dataset
from fusebench.files import atomic_write, sha256_file, write_json
from fusebench.images import write_png
from fusebench.methods import FusionMethod, create_method
from fusebench.results import SCHEMA_VERSION, Summary, environment, git_hash, ids_hash, now
from fusebench.training.precision import resolve_device


class RunError(RuntimeError):
    """A run that cannot proceed without losing or mixing results."""


@dataclass
class RunConfig:
    """Everything ``fusebench run`` was asked to do; stored verbatim in every summary."""

    method: str
    dataset: str
    name: str | None = None  # the row label in tables and the run folder's name; default: the method name
    split: str | None = None
    subset: str | None = None
    data_root: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    device: str = "auto"
    metrics: list[str] | None = None
    profile: str = "fusebench"
    compile_metrics: bool = False  # torch.compile the metric kernels: faster on big datasets, same numbers
    out: str = "runs"
    seed: int = 0


@dataclass
class RunResult:
    run_dir: Path
    summary_path: Path
    metrics_path: Path
    fused: int  # pairs fused in this call
    skipped: int  # pairs already fused by an earlier call


def _method_fingerprint(method: FusionMethod, config: RunConfig, pairs: PairDataset) -> dict[str, Any]:
    weights = config.weights or method.cfg.get("weights")
    return {
        "method": config.method,
        "method_cfg": json.loads(json.dumps(method.cfg, default=str)),
        "weights": str(weights) if weights else None,
        "weights_sha256": sha256_file(weights) if weights and Path(weights).is_file() else None,
        "weights_files_sha256": [sha256_file(p) for p in method.cfg.get("weights_files", [])],
        "dataset": pairs.key,
        "ids_sha256": ids_hash(pairs.ids),
        "inputs_sha256": inputs_hash(pairs),
    }


def inputs_hash(pairs: PairDataset) -> str:
    """Hash of every source file's path and byte size: cheap, and changes when the images are replaced."""
    digest = hashlib.sha256()
    for pair in pairs.pairs:
        for path in (pair.ir, pair.vi):
            digest.update(f"{Path(path).resolve()}\t{Path(path).stat().st_size}\n".encode())
    return digest.hexdigest()


def _claim_run_dir(run_dir: Path, fingerprint: dict[str, Any]) -> None:
    """Create the run folder, or accept it only if it holds a run of exactly this fingerprint."""
    marker = run_dir / "run.json"
    if marker.exists():
        previous = json.loads(marker.read_text())
        if previous != fingerprint:
            changed = sorted(k for k in fingerprint if previous.get(k) != fingerprint[k])
            raise RunError(
                f"{run_dir} holds a run with a different {', '.join(changed)}; refusing to mix or overwrite it. "
                "Choose another --out, or delete that folder."
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"{run_dir} exists and is not a fusebench run folder; choose another --out")
    else:
        write_json(marker, fingerprint)


def _read_timings(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["id"]: float(row["seconds"]) for row in csv.DictReader(handle)}


def _append_timing(path: Path, pair_id: str, seconds: float) -> None:
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["id", "seconds"])
        writer.writerow([pair_id, f"{seconds:.6f}"])


def _to_numpy_image(fused: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) float32."""
    arr = fused.detach().float().cpu().numpy()
    return arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)


def fuse_dataset(
    method: FusionMethod, pairs: PairDataset, fused_dir: Path, device: torch.device, timings_path: Path,
    progress: bool = True,
) -> tuple[int, int]:
    """Fuse every pair whose PNG is not on disk yet; returns (fused now, already there)."""
    from tqdm.auto import tqdm

    todo = [i for i, p in enumerate(pairs.pairs) if not (fused_dir / f"{p.id}.png").exists()]
    fused_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(todo, desc=f"{method.name} on {pairs.key}", unit="pair", disable=not progress)
    reads_files = callable(getattr(method, "fuse_files", None))
    for index in bar:
        pair = pairs.pairs[index]
        start = time.perf_counter()
        if reads_files:  # published networks read the files with their official readers (exactness)
            image = method.fuse_files(pair.ir, pair.vi)
        else:
            sample = pairs[index]
            ir, vi = sample.ir[None].to(device), sample.vi[None].to(device)
            with torch.inference_mode():
                image = _to_numpy_image(method.fuse_images(ir, vi, ids=[sample.id])[0])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        write_png(fused_dir / f"{pair.id}.png", image)
        _append_timing(timings_path, pair.id, seconds)
    return len(todo), len(pairs) - len(todo)


def run(config: RunConfig, progress: bool = True) -> RunResult:
    """Fuse a dataset with a method (resuming), score every image, and write the summary."""
    from fusebench.metrics import DEFAULT_METRICS, evaluate_files, get_metric, profile_info

    torch.manual_seed(config.seed)
    pairs = load_dataset(config.dataset, split=config.split, subset=config.subset, root=config.data_root)
    options = dict(config.method_options)
    if config.weights:
        options["weights"] = config.weights
    method = create_method(config.method, **options)
    device = resolve_device(config.device)
    if device.type not in method.devices:
        raise RunError(f"method '{config.method}' runs on {', '.join(method.devices)}, not {device.type}")
    method.to(device).eval()

    label = config.name or config.method
    run_dir = Path(config.out) / label / pairs.key
    fingerprint = _method_fingerprint(method, config, pairs)
    _claim_run_dir(run_dir, fingerprint)
    fused_dir, timings_path = run_dir / "fused", run_dir / "timings.csv"
    n_fused, n_skipped = fuse_dataset(method, pairs, fused_dir, device, timings_path, progress)

    names = list(config.metrics or DEFAULT_METRICS)
    triples = [(p.id, fused_dir / f"{p.id}.png", p.ir, p.vi) for p in pairs.pairs]
    start = time.perf_counter()
    scores = evaluate_files(triples, metrics=names, profile=config.profile, device=str(device),
                            progress=progress, compile=config.compile_metrics)
    metrics_seconds = time.perf_counter() - start
    timings = _read_timings(timings_path)
    scores["fuse_seconds"] = [timings.get(i, float("nan")) for i in scores.index]

    metrics_path = run_dir / f"metrics_{config.profile}.csv"
    with atomic_write(metrics_path, "w") as handle:
        scores.to_csv(handle, index_label="id", float_format="%.10g")

    fuse_total = float(sum(timings.get(i, 0.0) for i in pairs.ids))
    summary: Summary = {
        "schema": SCHEMA_VERSION,
        "fusebench_version": __version__,
        "created": now(),
        "config": asdict(config),
        "method": {
            "name": config.method,
            "label": label,
            "cfg": fingerprint["method_cfg"],
            "weights": fingerprint["weights"],
            "weights_sha256": fingerprint["weights_sha256"],
        },
        "dataset": {
            "key": pairs.key, "name": pairs.name, "split": pairs.split, "subset": pairs.subset,
            "root": str(pairs.root) if pairs.root else None, "n_pairs": len(pairs), "ids_sha256": ids_hash(pairs.ids),
        },
        "metrics": {
            "profile": config.profile,
            "conventions": profile_info(config.profile),
            "names": names,
            "higher_is_better": {n: bool(get_metric(n).higher_is_better) for n in names},
            "versions": {n: int(get_metric(n).version) for n in names},
        },
        "n_images": len(scores),
        "means": {n: float(scores[n].mean()) for n in names},
        "stds": {n: float(scores[n].std(ddof=0)) for n in names},
        "timings": {
            "fuse_total": fuse_total,
            "fuse_per_pair": fuse_total / max(len(pairs), 1),
            "metrics_total": metrics_seconds,
        },
        "env": environment(str(device)),
        "git_hash": git_hash(),
    }
    summary_path = run_dir / f"summary_{config.profile}.json"
    write_json(summary_path, summary)
    return RunResult(run_dir, summary_path, metrics_path, n_fused, n_skipped)
