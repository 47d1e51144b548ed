"""`fusebench run`: dataset -> method -> fused images -> metrics -> results, resumable and never stale.

Layout of one run, ``<out>/<name>/<dataset key>/`` (name: ``--name``, default the method's):

- ``run.json``: what the fused images depend on: the method, its config and weights hash, the seed, the
  dataset's ids and a content hash of every source image. It is written when the first pair is fused (a
  run that fails before that leaves nothing behind); a later run into the same folder with a different
  fingerprint is refused, never mixed in.
- ``fused/<id>.png``: lossless 8-bit fused images (colour restored where the visible image has colour),
  each written atomically, so an interrupted run resumes from the pairs already on disk. For the
  ``folder`` method, ``sources.json`` records the content hash of each image read, and an image replaced
  in that folder is read again on the next run.
- ``timings.csv``: seconds spent fusing each pair (rewritten atomically, never appended in place).
- ``scores_<profile>.json``: the score cache: per pair, the content hash of (fused, infrared, visible)
  and each metric's score under its version. A rerun computes only the (pair, metric) scores missing for
  the images as they are now (new metrics, new or changed pairs) and merges them in under the run folder's
  lock (``.lock``), so concurrent runs with different ``--metrics`` keep each other's work.
- ``metrics_<profile>.csv`` and ``summary_<profile>.json``: per-image scores and the summary
  (:mod:`fusebench.results`) of every metric cached for all pairs (the union of all runs' ``--metrics``,
  not only those asked last), one pair of files per metric profile. A metric undefined on some pair (NaN,
  e.g. CC of an all-zero image) has a ``null`` mean and std in the summary and its ids under ``undefined``.

The pairs flow through a pipeline (:mod:`fusebench.pipeline`): DataLoader workers decode and validate them,
pairs of one size are fused in batches (``batch_size``), each fused image is quantised to 8 bits on the device
and scored (there on an accelerator, by worker processes on CPU) while a thread pool writes its PNG; the
numbers equal those of scoring the written PNG (the same 8-bit grids, and the metrics score each image on its
own), so the files and the CSV do not depend on the batch size or the worker count. ``pipeline=False`` keeps the sequential loop (one pair per call, each PNG
written, then read back to be scored). A sharded run (``shard=(i, n)``, or one torchrun rank per shard) fuses
and scores pairs ``i, i+n, ...``; each shard merges its timings and scores under the lock, and the one that
finds every pair scored writes the CSV and summary.

Everything that can be checked is checked before the first pair is fused: the method and its options,
metric and profile names, the dataset, that each pair's images have one size, and that every image is at
least as large as each requested metric needs.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fusebench import __version__
from fusebench.datasets import PairDataset, load_dataset
from fusebench.files import HashCache, atomic_write, file_lock, read_json, sha256_file, write_json
from fusebench.images import ImageError, image_size, write_png
from fusebench.methods import FusionMethod, create_method
from fusebench.methods.base import METHODS, check_method_options
from fusebench.results import SCHEMA_VERSION, Summary, environment, git_hash, ids_hash, now
from fusebench.training.precision import resolve_device

FINGERPRINT_VERSION = 2
SCORES_VERSION = 1
LOCK_NAME = ".lock"


class RunError(RuntimeError):
    """A run that cannot proceed without losing or mixing results."""


@dataclass
class RunConfig:
    """Everything ``fusebench run`` was asked to do; stored (names made canonical) in every summary."""

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
    download: bool = False  # fetch a benchmark missing from the data root from its public source first


@dataclass
class RunResult:
    run_dir: Path
    summary_path: Path
    metrics_path: Path
    fused: int  # pairs fused in this call
    skipped: int  # pairs already fused by an earlier call
    scored: int = 0  # (pair, metric) scores computed in this call; the rest came from the score cache
    cached: int = 0  # (pair, metric) scores of the metrics asked now that were already cached
    metrics: list[str] = field(default_factory=list)  # canonical names of the metrics asked now
    written: bool = True  # whether this call wrote the CSV and summary (a shard leaves it to the last one)


# -- validation: everything before the first pair is fused --------------------------------------------------
def resolve_metrics(names: list[str] | None) -> list[str]:
    """Canonical metric names (aliases and any case accepted); unknown or repeated names raise."""
    from fusebench.metrics import DEFAULT_METRICS, get_metric

    if names is not None and not names:
        raise ValueError("--metrics: expected at least one metric name")
    canonical = [get_metric(n.strip()).name for n in (names if names is not None else DEFAULT_METRICS)]
    repeated = sorted({n for n in canonical if canonical.count(n) > 1})
    if repeated:
        raise ValueError(f"--metrics: {', '.join(repeated)} given more than once (names and aliases count alike)")
    return canonical


def resolve_profile(name: str) -> str:
    """The canonical profile name for ``name`` (any case)."""
    from fusebench.metrics import get_profile, list_profiles

    match = [p for p in list_profiles() if p.casefold() == str(name).strip().casefold()]
    return get_profile(match[0] if match else name).name


def check_image_sizes(pairs: PairDataset, metrics: list[str], max_listed: int = 20) -> None:
    """Every pair's two images have one size, at least as large as each metric's minimum; one error lists
    every offending file (sizes read from the headers, width x height)."""
    from fusebench.datasets.verify import min_sizes

    need = min_sizes(metrics)
    min_side = max(need.values(), default=1)
    mismatched, small = [], []
    for pair in pairs.pairs:
        (iw, ih), (vw, vh) = image_size(pair.ir), image_size(pair.vi)  # headers only, EXIF rotation applied
        if (iw, ih) != (vw, vh):
            mismatched.append(ImageError(pair.ir, f"size {iw}x{ih} differs from the visible image {pair.vi} "
                                                  f"({vw}x{vh}) (width x height)"))
        elif min(iw, ih) < min_side:
            small.append((pair, iw, ih))
    if mismatched:
        if len(mismatched) == 1:
            raise mismatched[0]
        listed = "; ".join(str(e) for e in mismatched[:max_listed])
        raise ImageError(pairs.root or pairs.pairs[0].ir,
                         f"{len(mismatched)} pairs whose images differ in size: {listed}")
    if small:
        blocking = sorted(m for m, s in need.items() if min(min(w, h) for _, w, h in small) < s)
        by_metric = ", ".join(f"{m} needs {need[m]}x{need[m]}" for m in blocking)
        listed = ", ".join(f"{p.ir} and {p.vi} ({w}x{h})" for p, w, h in small[:max_listed])
        more = f" and {len(small) - max_listed} more" if len(small) > max_listed else ""
        raise ValueError(f"{len(small)} of {len(pairs)} pairs are too small for the metrics asked ({by_metric}; "
                         f"width x height): {listed}{more}. Leave those metrics out with --metrics.")


# -- fingerprint ------------------------------------------------------------------------------------------
def _content_hashes(pairs: PairDataset, hashes: HashCache) -> dict[str, tuple[str, str]]:
    return {p.id: (hashes.hash(p.ir), hashes.hash(p.vi)) for p in pairs.pairs}


def _inputs_digest(sources: dict[str, tuple[str, str]]) -> str:
    digest = hashlib.blake2b(digest_size=32)
    for pair_id, (ir, vi) in sources.items():
        digest.update(f"{pair_id}\t{ir}\t{vi}\n".encode())
    return digest.hexdigest()


def inputs_hash(pairs: PairDataset, hashes: HashCache | None = None) -> str:
    """Hash of every source image's content, in pair order (file hashes cached by path, size and mtime)."""
    return _inputs_digest(_content_hashes(pairs, hashes or HashCache()))


def _method_fingerprint(method: FusionMethod, config: RunConfig, pairs: PairDataset, inputs: str) -> dict[str, Any]:
    weights = config.weights or method.cfg.get("weights")
    return {
        "fingerprint_version": FINGERPRINT_VERSION,
        "method": config.method,
        "method_cfg": json.loads(json.dumps(method.cfg, default=str)),
        "weights": str(weights) if weights else None,
        "weights_sha256": sha256_file(weights) if weights and Path(weights).is_file() else None,
        "weights_files_sha256": [sha256_file(p) for p in method.cfg.get("weights_files", [])],
        "seed": config.seed,
        "dataset": pairs.key,
        "ids_sha256": ids_hash(pairs.ids),
        "inputs_hash": inputs,
    }


def _check_run_dir(run_dir: Path, fingerprint: dict[str, Any]) -> bool:
    """Whether ``run_dir`` already holds this run (True), is free (False); RunError if it holds another."""
    marker = run_dir / "run.json"
    if marker.exists():
        try:
            previous = read_json(marker, "run record")
        except OSError as exc:
            raise RunError(f"{marker}: cannot read ({exc})") from exc
        if not isinstance(previous, dict):
            raise RunError(f"{marker}: not a fusebench run record; delete that folder or choose another --out")
        if previous != fingerprint:
            changed = sorted(k for k in {*fingerprint, *previous} if previous.get(k) != fingerprint.get(k))
            raise RunError(
                f"{run_dir} holds a run with a different {', '.join(changed)}; refusing to mix or overwrite it. "
                "Choose another --out or --name, or delete that folder."
            )
        return True
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir} exists and is not a folder; choose another --out")
    if run_dir.is_dir() and any(not _leftover(p) for p in run_dir.iterdir()):
        raise RunError(f"{run_dir} exists and is not a fusebench run folder; choose another --out")
    return False


def _leftover(path: Path) -> bool:
    """What an unclaimed run folder may hold without being someone else's: our lock, an empty fused/, and the
    temporary file of a concurrent run writing its run.json at this moment (atomic writes rename it in place)."""
    return (path.name == LOCK_NAME or (path.name == "fused" and path.is_dir() and not any(path.iterdir()))
            or (path.name.startswith(".") and path.name.endswith(".tmp")))


def _claim(run_dir: Path, fingerprint: dict[str, Any]) -> None:
    """Under the lock: write run.json unless this run is there already (another process may have claimed)."""
    if not _check_run_dir(run_dir, fingerprint):
        write_json(run_dir / "run.json", fingerprint)


def _remove_unclaimed(run_dir: Path, stop: Path) -> None:
    """After a failed run that claimed nothing: remove the folders and lock it created, up to ``stop``."""
    if (run_dir / "run.json").exists() or not run_dir.is_dir():
        return
    if any(not _leftover(p) for p in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    parent = run_dir.parent
    while parent != stop and parent.is_dir() and stop in parent.parents:
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
        parent = parent.parent


# -- timings ------------------------------------------------------------------------------------------------
def _read_timings(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    out: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            with contextlib.suppress(KeyError, TypeError, ValueError):  # a torn line from an older version
                out[row["id"]] = float(row["seconds"])
    return out


def _merge_timings(lock: Path, path: Path, timings: dict[str, float]) -> None:
    """A shard's timings into ``timings.csv``, under the run folder's lock (the other shards' rows kept)."""
    with file_lock(lock):
        _write_timings(path, {**_read_timings(path), **timings})


def _write_timings(path: Path, timings: dict[str, float]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "seconds"])
    writer.writerows([pair_id, f"{seconds:.6f}"] for pair_id, seconds in timings.items())
    with atomic_write(path, "w") as handle:
        handle.write(buffer.getvalue())


def _to_numpy_image(fused: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) float32."""
    arr = fused.detach().float().cpu().numpy()
    return arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)


def output_path(method: FusionMethod, fused_dir: Path, pair: Any) -> Path:
    """Where a pair's fused image goes: ``<id>.png``, or where the method says when it asks for another format
    (``output_format="input"`` of the official MaeFuse: the visible file's extension)."""
    if method.cfg.get("output_format") == "input" and callable(getattr(method, "output_path", None)):
        return Path(method.output_path(fused_dir, pair.id, pair.vi))
    return fused_dir / f"{pair.id}.png"


def _writer(method: FusionMethod) -> Any:
    """``write(path, image)``: atomic; the method's own writer when it asks for the input's format, else PNG."""
    if method.cfg.get("output_format") == "input" and callable(getattr(method, "write_output", None)):
        from fusebench.pipeline import write_with

        def write(path: Path, image: np.ndarray) -> None:
            from fusebench.images import to_uint8

            write_with(method.write_output, Path(path), image if image.dtype == np.uint8 else to_uint8(image))

        return write
    return write_png


def _fuse_one(method: FusionMethod, pairs: PairDataset, index: int, device: torch.device) -> np.ndarray:
    pair = pairs.pairs[index]
    if callable(getattr(method, "fuse_files", None)):  # published networks: their official readers (exactness)
        return method.fuse_files(pair.ir, pair.vi)
    sample = pairs[index]
    ir, vi = sample.ir[None].to(device), sample.vi[None].to(device)
    with torch.inference_mode():
        return _to_numpy_image(method.fuse_images(ir, vi, ids=[sample.id])[0])


def fuse_dataset(
    method: FusionMethod, pairs: PairDataset, fused_dir: Path, device: torch.device, timings_path: Path,
    progress: bool = True, *, claim: Any = None, redo: set[str] | frozenset[str] = frozenset(),
    on_fused: Any = None,
) -> tuple[int, int]:
    """Fuse every pair whose PNG is not on disk yet (or whose id is in ``redo``); returns (fused now, already there).

    ``claim()`` is called once, after the first pair is fused and before its PNG is written; ``on_fused(id)``
    after each PNG. Timings are kept in memory and ``timings.csv`` is rewritten atomically every few seconds
    and when the call ends (also by an error or an interruption).
    """
    from tqdm.auto import tqdm

    todo = [i for i, p in enumerate(pairs.pairs) if p.id in redo or not output_path(method, fused_dir, p).exists()]
    timings = _read_timings(timings_path)
    write = _writer(method)
    bar = tqdm(todo, desc=f"{method.name} on {pairs.key}", unit="pair", disable=not progress)
    claimed, written, last_flush = claim is None, False, time.monotonic()
    try:
        for index in bar:
            pair = pairs.pairs[index]
            start = time.perf_counter()
            image = _fuse_one(method, pairs, index, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            if not claimed:
                claim()
                claimed = True
            write(output_path(method, fused_dir, pair), image)
            timings[pair.id] = seconds
            written = True
            if on_fused is not None:
                on_fused(pair.id)
            if time.monotonic() - last_flush > 5.0:
                _write_timings(timings_path, timings)
                last_flush = time.monotonic()
    finally:
        if written:
            _write_timings(timings_path, timings)
    return len(todo), len(pairs) - len(todo)


def fuse_pipeline(
    method: FusionMethod, pairs: PairDataset, fused_dir: Path, device: torch.device, progress: bool = True, *,
    claim: Any = None, redo: set[str] | frozenset[str] = frozenset(), on_fused: Any = None,
    timings: dict[str, float] | None = None, flush_timings: Any = None, indices: list[int] | None = None,
    batch_size: int = 1, workers: int | None = None, writer_threads: int | None = None,
    metrics: list[str] | None = None, profile: str = "fusebench", compile_metrics: bool = False,
    scoring_seconds: list[float] | None = None,
) -> tuple[int, int, dict[str, dict[str, float]]]:
    """:func:`fuse_dataset` as a pipeline; returns (fused now, already there, scores of the pairs fused now).

    DataLoader workers decode and validate the pairs (``indices``: dataset positions, default all), batches
    hold up to ``batch_size`` pairs of one size, the fused images are quantised to 8 bits on the device and
    scored there with ``metrics`` (PNG outputs only: the numbers equal scoring the written file), while a
    thread pool writes them. On CPU, batches are scored by worker processes, several at once with one torch
    thread each (:func:`fusebench.pipeline.scoring_executor`). Methods with ``fuse_files`` read their own files.
    ``claim()`` runs before the first write, ``on_fused(id)`` after each; ``flush_timings(timings)`` every few
    seconds and at the end. The seconds spent scoring each batch (summed over the scoring workers) are appended
    to ``scoring_seconds``.
    Outputs and scores do not depend on ``batch_size`` or ``workers`` (the methods fuse pairs independently).
    """
    from tqdm.auto import tqdm

    from fusebench.images import to_uint8
    from fusebench.pipeline import InOrderPool, default_workers, loader, quantise, scoring_executor, to_hwc
    from fusebench.threads import usable_cores

    share = range(len(pairs)) if indices is None else indices
    todo = [i for i in share if pairs.pairs[i].id in redo or not output_path(method, fused_dir, pairs.pairs[i]).exists()]
    timings = {} if timings is None else timings
    files = callable(getattr(method, "fuse_files", None))
    write = _writer(method)
    part = "" if indices is None else f" (shard of {len(share)} pairs)"
    bar = tqdm(total=len(todo), desc=f"{method.name} on {pairs.key}{part}", unit="pair", disable=not progress)
    scores: dict[str, dict[str, float]] = {}
    state = {"claimed": claim is None, "written": False, "flushed": time.monotonic()}

    def written(tag: tuple[str, float], _: None) -> None:
        pair_id, seconds = tag
        timings[pair_id] = seconds
        state["written"] = True
        if on_fused is not None:
            on_fused(pair_id)
        bar.update(1)
        if flush_timings is not None and time.monotonic() - state["flushed"] > 5.0:
            flush_timings(timings)
            state["flushed"] = time.monotonic()

    def scored(_: list[str], result: tuple[dict[str, dict[str, float]], float]) -> None:
        scores.update(result[0])
        if scoring_seconds is not None:
            scoring_seconds.append(result[1])

    cores = min(usable_cores(), torch.get_num_threads())  # --threads caps the scoring workers too
    writer_threads = max(1, min(4, cores)) if writer_threads is None else writer_threads
    # scoring: on CPU several batches at once in worker processes (eager metrics scale poorly over intra-op
    # threads), started before any other thread; on accelerators and with compiled kernels one at a time
    cpu_workers = device.type == "cpu" and not compile_metrics and bool(metrics)
    pool, parallel, score_threads = scoring_executor(cores) if cpu_workers else \
        (ThreadPoolExecutor(1, thread_name_prefix="fusebench-scorer"), 1, None)
    scorer = InOrderPool(scored, pool, limit=2 * parallel)
    writer = InOrderPool(written, ThreadPoolExecutor(writer_threads, thread_name_prefix="fusebench-writer"),
                         limit=max(4, 2 * batch_size))
    groups = loader(pairs, todo, batch_size=batch_size, workers=default_workers(cores) if workers is None else workers,
                    pin_memory=device.type == "cuda")
    try:
        for group in groups:
            if group.ir is None:  # the decoder's error, at this pair's turn
                raise group.items[0].error.exception()  # type: ignore[union-attr]
            batch = [pairs.pairs[d.index] for d in group.items]
            start = time.perf_counter()
            if files:  # published networks: their official readers (exactness)
                outs = [method.fuse_files(pair.ir, pair.vi) for pair in batch]
                fused8 = [torch.from_numpy(np.require(a if a.dtype == np.uint8 else to_uint8(a), requirements="CW"))
                          for a in outs]
                fused8 = [t[None] if t.ndim == 2 else t.permute(2, 0, 1) for t in fused8]
            else:
                ir = group.ir.to(device, non_blocking=True)
                vi = group.vi.to(device, non_blocking=True)  # type: ignore[union-attr]
                with torch.inference_mode():
                    fused8 = list(quantise(method.fuse_images(ir, vi, ids=group.ids)))
            host = torch.stack(fused8).cpu() if fused8[0].device.type != "cpu" else fused8  # one copy per batch
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = (time.perf_counter() - start) / len(batch)
            if not state["claimed"]:
                claim()
                state["claimed"] = True
            for pair, image in zip(batch, host):
                writer.submit((pair.id, seconds), write, output_path(method, fused_dir, pair), to_hwc(image))
            if metrics:
                png = [j for j, pair in enumerate(batch) if output_path(method, fused_dir, pair).suffix.lower() == ".png"]
                every = len(png) == len(batch)
                ids = [batch[j].id for j in png]
                f8: list[Any] = [fused8[j] for j in png]
                a8: Any = group.ir8 if every else group.ir8[png]  # type: ignore[index]
                b8: Any = group.vi8 if every else group.vi8[png]  # type: ignore[index]
                if cpu_workers:  # to another process as plain arrays (no shared-memory tensors to clean up)
                    f8, a8, b8 = [t.numpy() for t in f8], a8.numpy(), b8.numpy()
                scorer.submit(ids, _score_in_memory, ids, f8, a8, b8, metrics, profile, device, compile_metrics,
                              score_threads)
    except BaseException:
        with contextlib.suppress(BaseException):
            writer.drain()  # the pairs fused before the error are kept, as the sequential loop keeps them
        with contextlib.suppress(BaseException):
            scorer.drain()
        raise
    else:
        writer.drain()
        scorer.drain()
    finally:
        groups.close()  # stops the workers
        writer.close()
        scorer.close()
        bar.close()
        if state["written"] and flush_timings is not None:
            flush_timings(timings)
    return len(todo), len(share) - len(todo), scores


def _score_in_memory(ids: list[str], fused8: list[Any], ir8: Any, vi8: Any,
                     metrics: list[str], profile: str, device: torch.device, compile_metrics: bool,
                     threads: int | None = None) -> tuple[dict[str, dict[str, float]], float]:
    """Scores of quantised fused images (C, H, W) uint8 against the sources' 8-bit grids (tensors or numpy
    arrays), on ``device``, with ``threads`` torch threads, and the seconds it took: the numbers
    :func:`fusebench.metrics.evaluate_files` gives for the written PNGs (same grids, same batches of one shape;
    the metrics score each image independently)."""
    from fusebench.metrics import evaluate

    start = time.perf_counter()
    fused8, ir8, vi8 = [torch.as_tensor(f) for f in fused8], torch.as_tensor(ir8), torch.as_tensor(vi8)

    groups: dict[tuple[Any, ...], list[int]] = {}
    for j, f in enumerate(fused8):
        if f.shape[-2:] != ir8[j].shape[-2:]:
            raise ValueError(f"{ids[j]}: the fused image is {f.shape[-1]}x{f.shape[-2]} but the pair is "
                             f"{ir8[j].shape[-1]}x{ir8[j].shape[-2]} (width x height)")
        groups.setdefault((*f.shape, *vi8[j].shape), []).append(j)
    out: dict[str, dict[str, float]] = {}
    for members in groups.values():
        f = torch.stack([fused8[j] for j in members]).to(device, non_blocking=True)
        frame = evaluate(f, ir8[members].to(device, non_blocking=True), vi8[members].to(device, non_blocking=True),
                         metrics=list(metrics), profile=profile, ids=[ids[j] for j in members], device=str(device),
                         compile=compile_metrics, threads=threads)
        for j in members:
            out[ids[j]] = {n: float(frame.loc[ids[j], n]) for n in metrics}
    return out, time.perf_counter() - start


# -- the score cache ---------------------------------------------------------------------------------------
def _read_scores(path: Path) -> dict[str, Any]:
    """The score cache; a corrupt one is set aside (renamed ``*.corrupt``) and rebuilt, with a warning."""
    if not path.exists():
        return {}
    try:
        data = read_json(path, "score cache")
    except ValueError as exc:
        import warnings

        warnings.warn(f"{exc}; it is set aside as {path.name}.corrupt and the scores are computed again",
                      stacklevel=2)
        with contextlib.suppress(OSError):
            path.replace(path.with_name(path.name + ".corrupt"))
        return {}
    if not isinstance(data, dict) or data.get("version") != SCORES_VERSION or not isinstance(data.get("pairs"), dict):
        return {}
    return data["pairs"]


def _metric_key(name: str) -> str:
    from fusebench.metrics import get_metric

    return f"{name}@{int(get_metric(name).version)}"


def _pair_keys(pairs: list[Any], paths: dict[str, Path], sources: dict[str, tuple[str, str]],
               hashes: HashCache) -> dict[str, str]:
    """Pair id -> content hash of (fused, infrared, visible): what a cached score is valid for."""
    return {p.id: f"{hashes.hash(paths[p.id])}:{sources[p.id][0]}:{sources[p.id][1]}" for p in pairs}


def _summary_means(scores: pd.DataFrame, names: list[str]) -> tuple[dict, dict, dict]:
    means: dict[str, float | None] = {}
    stds: dict[str, float | None] = {}
    undefined: dict[str, list[str]] = {}
    for n in names:
        col = scores[n].astype(float)
        bad = [str(i) for i in col.index[~np.isfinite(col.to_numpy())]]
        if bad:  # a mean over fewer images would not compare with other methods' means: no number at all
            undefined[n] = bad
            means[n] = stds[n] = None
        else:
            means[n], stds[n] = float(col.mean()), float(col.std(ddof=0))
    return means, stds, undefined


def _column_order(asked: list[str], cached: set[str]) -> list[str]:
    from fusebench.metrics import DEFAULT_METRICS, list_metrics

    order = [*asked, *DEFAULT_METRICS, *list_metrics()]
    return [m for i, m in enumerate(order) if m in cached and m not in order[:i]]


# -- the run ------------------------------------------------------------------------------------------------
def run(config: RunConfig, progress: bool = True, *, batch_size: int = 1, workers: int | None = None,
        pipeline: bool = True, shard: tuple[int, int] | None = None) -> RunResult:
    """Fuse a dataset with a method (resuming), score what is not cached yet, and write the summary.

    ``pipeline`` (default): DataLoader ``workers`` decode, batches of up to ``batch_size`` pairs of one size,
    fused images scored in memory while a thread pool writes them (:func:`fuse_pipeline`); off: the
    sequential loop (one pair at a time, then every PNG read back to be scored). Both give the same files and
    scores. ``shard=(i, n)`` fuses and scores only pairs ``i, i+n, ...`` (one process of ``n``, e.g. a
    torchrun rank); each shard merges its scores into the cache under the lock, and the one that finds every
    pair scored (the last to finish) writes the CSV and summary (``RunResult.written``).
    """
    from fusebench.metrics import evaluate_files, get_metric, profile_info

    # 1. everything that can be wrong, before anything is fused or written
    if batch_size < 1:
        raise ValueError(f"--batch-size: expected a positive number, got {batch_size}")
    if workers is not None and workers < 0:
        raise ValueError(f"--workers: expected 0 or more, got {workers}")
    if shard is not None:
        index, count = shard
        if not (count >= 1 and 0 <= index < count):
            raise ValueError(f"--shard: expected I/N with 0 <= I < N, got {index}/{count}")
        if not pipeline:
            raise ValueError("--shard needs the pipeline (leave --pipeline on)")
    if not str(config.method).strip():
        raise ValueError("--method: expected a method name, got an empty one")
    entry = METHODS.get(config.method.strip())
    names = resolve_metrics(config.metrics)
    config = replace(config, method=entry.name, profile=resolve_profile(config.profile),
                     metrics=list(names) if config.metrics is not None else None)
    options = check_method_options(entry.name, dict(config.method_options))
    if config.weights:
        options = check_method_options(entry.name, {**options, "weights": config.weights})
    label = config.name or config.method
    if label in (".", "..") or any(sep in label for sep in ("/", "\\")) or not label.strip():
        raise ValueError(f"--name: expected a plain folder name inside --out, got {label!r}")
    pairs = load_dataset(config.dataset, split=config.split, subset=config.subset, root=config.data_root,
                         download=config.download)
    check_image_sizes(pairs, names)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    method = create_method(entry.name, **options)
    if device.type not in method.devices:
        raise RunError(f"method '{entry.name}' runs on {', '.join(method.devices)}, not {device.type}")
    method.to(device).eval()
    folder_files = method.source_files(pairs.ids) if callable(getattr(method, "source_files", None)) else None

    out = Path(config.out)
    run_dir = out / label / pairs.key
    hashes = HashCache()
    sources = _content_hashes(pairs, hashes)
    fingerprint = _method_fingerprint(method, config, pairs, _inputs_digest(sources))
    claimed = _check_run_dir(run_dir, fingerprint)
    fused_dir, timings_path = run_dir / "fused", run_dir / "timings.csv"
    sources_path = run_dir / "sources.json"

    # 2. fuse what is missing; the folder is claimed with the first fused pair. One process holds the run
    # folder's lock while it fuses (a concurrent run waits, then finds the pairs done); the shards of a sharded
    # run fuse side by side and take the lock only to claim and to merge timings, sources and scores.
    lock = run_dir / LOCK_NAME
    share = None if shard is None else [i for i in range(len(pairs)) if i % shard[1] == shard[0]]
    mine = pairs.pairs if share is None else [pairs.pairs[i] for i in share]
    fresh: dict[str, dict[str, float]] = {}
    scored_in_memory: list[float] = []  # seconds the pipeline spent scoring fused images before they were written
    try:
        with file_lock(lock) if shard is None else contextlib.nullcontext():
            claimed = _check_run_dir(run_dir, fingerprint)  # again: another run may have claimed it meanwhile
            redo: set[str] = set()
            folder_hashes: dict[str, str] = {}
            recorded: dict[str, str] = {}
            if folder_files is not None:
                folder_hashes = {i: hashes.hash(p) for i, p in folder_files.items()}
                if sources_path.exists():
                    recorded = read_json(sources_path, "record of the folder's images")
                redo = {i for i, h in folder_hashes.items() if recorded.get(i) != h}
                mine_now: dict[str, str] = {}

                def on_fused(pair_id: str) -> None:
                    recorded[pair_id] = mine_now[pair_id] = folder_hashes[pair_id]
            else:
                on_fused = None  # type: ignore[assignment]
            fused_dir.mkdir(parents=True, exist_ok=True)
            claim: Any = None
            if not claimed and shard is None:
                claim = lambda: _claim(run_dir, fingerprint)
            elif not claimed:
                def claim() -> None:
                    with file_lock(lock):
                        _claim(run_dir, fingerprint)
            try:
                if not pipeline:
                    n_fused, n_skipped = fuse_dataset(method, pairs, fused_dir, device, timings_path, progress,
                                                      claim=claim, redo=redo, on_fused=on_fused)
                else:
                    if shard is None:
                        timings, flush = _read_timings(timings_path), partial(_write_timings, timings_path)
                    else:
                        timings, flush = {}, partial(_merge_timings, lock, timings_path)
                    n_fused, n_skipped, fresh = fuse_pipeline(
                        method, pairs, fused_dir, device, progress, claim=claim, redo=redo, on_fused=on_fused,
                        timings=timings, flush_timings=flush, indices=share, batch_size=batch_size,
                        workers=workers, metrics=names, profile=config.profile,
                        compile_metrics=config.compile_metrics, scoring_seconds=scored_in_memory,
                    )
            finally:
                if folder_files is not None and shard is None and recorded:
                    write_json(sources_path, recorded)
                elif folder_files is not None and mine_now:
                    with file_lock(lock):
                        now_recorded = read_json(sources_path, "record") if sources_path.exists() else {}
                        write_json(sources_path, {**now_recorded, **mine_now})
    except BaseException:
        if shard is None:  # a shard leaves the folder to the others: they may be about to claim it
            _remove_unclaimed(run_dir, out)
        raise
    metrics_path = run_dir / f"metrics_{config.profile}.csv"
    summary_path = run_dir / f"summary_{config.profile}.json"
    if not (run_dir / "run.json").exists():
        if shard is not None:  # nothing fused by this shard and none claimed yet: the others will write
            return RunResult(run_dir, summary_path, metrics_path, n_fused, n_skipped, 0, 0, names, written=False)
        _remove_unclaimed(run_dir, out)  # nothing to fuse and nothing claimed: an empty dataset
        raise RunError(f"{pairs.key}: no pairs to fuse")

    # 3. score what the cache lacks for the images as they are now (outside the lock: runs score in parallel);
    # the pairs fused just now were scored in memory by the pipeline
    scores_path = run_dir / f"scores_{config.profile}.json"
    paths = {p.id: output_path(method, fused_dir, p) for p in pairs.pairs}
    keys = _pair_keys(mine, paths, sources, hashes)
    cache = _read_scores(scores_path)
    wanted = {n: _metric_key(n) for n in names}
    missing: dict[tuple[str, ...], list[str]] = {}
    computed: dict[str, dict[str, float]] = {}
    n_scored = 0
    for p in mine:
        have = cache.get(p.id, {})
        have_scores = have.get("scores", {}) if have.get("key") == keys[p.id] else {}
        need = tuple(n for n in names if wanted[n] not in have_scores)
        if need and p.id in fresh:
            computed[p.id] = {wanted[n]: fresh[p.id][n] for n in need}
            n_scored += len(need)
        elif need:
            missing.setdefault(need, []).append(p.id)
    by_id = {p.id: p for p in pairs.pairs}
    start = time.perf_counter()
    for need, ids in missing.items():
        triples = [(i, paths[i], by_id[i].ir, by_id[i].vi) for i in ids]
        frame = evaluate_files(triples, metrics=list(need), profile=config.profile, device=str(device),
                               progress=progress, compile=config.compile_metrics)
        for i in ids:
            computed.setdefault(i, {}).update({wanted[n]: float(frame.loc[i, n]) for n in need})
        n_scored += len(ids) * len(need)
    metrics_seconds = time.perf_counter() - start + sum(scored_in_memory)

    # 4. merge into the cache and write the union, under the lock (a concurrent run may have merged meanwhile)
    with file_lock(lock):
        cache = _read_scores(scores_path)
        for i, new in computed.items():
            old = cache.get(i, {})
            kept = old.get("scores", {}) if old.get("key") == keys[i] else {}
            cache[i] = {"key": keys[i], "scores": {**kept, **new}}
        cache = {p.id: cache[p.id] for p in pairs.pairs if p.id in cache}
        write_json(scores_path, {"version": SCORES_VERSION, "profile": config.profile, "pairs": cache})
        if shard is not None:  # the other shards' pairs: scored (by them) for the images on disk now?
            others = [p for p in pairs.pairs if p.id not in keys and paths[p.id].exists()]
            keys.update(_pair_keys(others, paths, sources, hashes))
        hashes.save()
        valid = [cache.get(p.id, {}).get("scores", {}) if p.id in keys and cache.get(p.id, {}).get("key") == keys[p.id]
                 else {} for p in pairs.pairs]
        complete = set.intersection(*(set(v) for v in valid)) if valid else set()
        if shard is not None and not all(wanted[n] in complete for n in names):  # another shard is not done
            return RunResult(run_dir, summary_path, metrics_path, n_fused, n_skipped, n_scored,
                             len(mine) * len(names) - n_scored, names, written=False)
        metric_names = {k.rsplit("@", 1)[0] for k in complete}
        columns = [m for m in _column_order(names, metric_names) if _metric_key(m) in complete]
        rows = {p.id: [math.nan if v.get(_metric_key(m)) is None else v[_metric_key(m)] for m in columns]
                for p, v in zip(pairs.pairs, valid)}
        scores = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
        scores.index.name = "id"
        timings = _read_timings(timings_path)
        scores["fuse_seconds"] = [timings.get(i, math.nan) for i in scores.index]

        with atomic_write(metrics_path, "w") as handle:
            scores.to_csv(handle, index_label="id", float_format="%.10g")

        fuse_total = float(sum(timings.get(i, 0.0) for i in pairs.ids))
        means, stds, undefined = _summary_means(scores, columns)
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
                "root": str(pairs.root) if pairs.root else None, "n_pairs": len(pairs),
                "ids_sha256": ids_hash(pairs.ids), "inputs_hash": fingerprint["inputs_hash"],
            },
            "metrics": {
                "profile": config.profile,
                "conventions": profile_info(config.profile),
                "names": columns,
                "asked": names,
                "higher_is_better": {n: bool(get_metric(n).higher_is_better) for n in columns},
                "versions": {n: int(get_metric(n).version) for n in columns},
            },
            "n_images": len(scores),
            "means": means,
            "stds": stds,
            "undefined": undefined,
            "timings": {
                "fuse_total": fuse_total,
                "fuse_per_pair": fuse_total / max(len(pairs), 1),
                "metrics_total": metrics_seconds,
            },
            "env": environment(str(device)),
            "git_hash": git_hash(),
        }
        write_json(summary_path, summary)
    return RunResult(run_dir, summary_path, metrics_path, n_fused, n_skipped, n_scored,
                     len(mine) * len(names) - n_scored, names)
