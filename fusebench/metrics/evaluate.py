"""Scoring fused images: ``evaluate`` for in-memory batches, ``evaluate_files`` for a dataset streamed from disk.

Both quantise every image to integer 0..255 levels (all three reference codes score 8-bit images, and the
gradient-orientation metrics are only well defined on integers), turn colour into the grey planes the
profile prescribes, and call the registered functional metrics with the profile's options. The result is a
DataFrame whose ``attrs`` record the profile and the metric metadata.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from fusebench.metrics._cache import shared_intermediates
from fusebench.metrics._checks import (
    check_dtype,
    check_values,
    integer_inputs,
    resolve_range,
    to_tensor,
    trusted_inputs,
)
from fusebench.metrics._compile import compiled_kernels
from fusebench.metrics._registry import get_metric, metric_info
from fusebench.metrics.profiles import Profile, get_profile, profile_info
from fusebench.threads import scoring_split, scoring_threads, torch_threads, workers_sleep


def _cpu_chunk_pixels(compiled: bool, dtype: torch.dtype) -> int:
    """Grey-plane pixels per CPU chunk. Eager torch makes one pass over memory per operation, so ~0.5 MP keeps
    each pass in cache; compiled float32 kernels make few passes and gain from fewer, larger calls (2 MP), while
    compiled float64 does not (both measured with benchmarks/metrics_speed.py at batch sizes 1 and 8)."""
    return 1 << 21 if compiled and dtype == torch.float32 else 1 << 19


DEFAULT_METRICS: tuple[str, ...] = (
    "EN", "SD", "SF", "AG", "MI", "SCD", "CC", "VIF", "Qabf", "SSIM", "PSNR", "Nabf",
)


def _as_nchw(x: Any, name: str) -> Tensor:
    """(N, C, H, W) from torch/numpy/PIL inputs of shape (H, W), (H, W, C), (N, H, W) or (N, C, H, W).

    A 3-D numpy/PIL array whose last axis has 1 or 3 entries is (H, W, C); a 3-D tensor is (N, H, W).
    A 4-D input is (N, C, H, W) when axis 1 has 1 or 3 entries, else (N, H, W, C).
    """
    from_numpy = not isinstance(x, Tensor)
    t = to_tensor(x, name)
    check_dtype(t, name)
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        if from_numpy and t.shape[-1] in (1, 3):
            t = t.permute(2, 0, 1)[None]
        elif t.shape[0] == 3:  # three grey images, or one RGB image in (C, H, W)?
            raise ValueError(
                f"`{name}` of shape {tuple(t.shape)} is ambiguous: pass one RGB image as (1, 3, H, W) (or "
                "(H, W, 3) as numpy), or three grey images as (3, 1, H, W)."
            )
        else:
            t = t[:, None]
    elif t.ndim == 4:
        if t.shape[1] not in (1, 3) and t.shape[-1] in (1, 3):
            t = t.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"Expected `{name}` of shape (H, W), (H, W, C), (N, H, W) or (N, C, H, W). "
                         f"Got {tuple(t.shape)}.")
    if t.shape[1] not in (1, 3):
        raise ValueError(f"Expected `{name}` to have 1 (grey) or 3 (RGB) channels. Got shape {tuple(t.shape)}.")
    if 0 in t.shape:
        raise ValueError(f"Expected `{name}` to be non-empty. Got shape {tuple(t.shape)}.")
    return t


def _quantise(t: Tensor, name: str, data_range: float | None, device: torch.device) -> Tensor:
    """Validated image on integer 0..255 levels, float64 on ``device`` (round half to even)."""
    rng = resolve_range(t, name, data_range)
    check_values(t, name, rng)
    if t.dtype != torch.uint8 and rng == 255.0 and 0 < float(t.max()) <= 1.0:
        raise ValueError(
            f"`{name}` has data_range=255 but all its values are in [0, 1]: pass data_range=1.0 for images in "
            "[0, 1] (or give 0..255 images as uint8)."
        )
    t64 = t.to(device=device, dtype=torch.float64)
    return t64 if t.dtype == torch.uint8 else (t64 * (255.0 / rng)).round()


def _grey(t: Tensor, p: Profile, rounded: bool = True) -> Tensor:
    """One plane per image: equal channels stay as they are, colour becomes the profile's (rounded) luminance."""
    if t.shape[1] == 1:
        return t
    r, g, b = t.unbind(1)
    y = p.luma[0] * r + p.luma[1] * g + p.luma[2] * b
    if not rounded:  # a grey pixel stays exactly grey (the coefficients sum to 1 only up to rounding)
        return torch.where((r == g) & (g == b), r, y)[:, None]
    y = torch.round(y) if p.luma_rounding == "half_even" else torch.floor(y + 0.5)
    return y[:, None].clamp_(0, 255)


def _planes(f: Tensor, a: Tensor, b: Tensor, p: Profile) -> tuple[Tensor, Tensor, Tensor, int]:
    """Grey (N*K, 1, H, W) planes of fused, ir, vi and the number K of planes per image."""
    if p.colour == "per_channel" and f.shape[1] == 3:
        k = 3
        f3, a3, b3 = (x.expand(-1, 3, -1, -1) for x in (f, a, b))
        return tuple(x.reshape(-1, 1, *x.shape[-2:]) for x in (f3, a3, b3)) + (k,)  # type: ignore[return-value]
    return _grey(f, p), _grey(a, p), _grey(b, p), 1


def evaluate(
    fused: Any,
    ir: Any,
    vi: Any,
    *,
    metrics: Sequence[str] | None = None,
    profile: str | Profile = "fusebench",
    data_range: float | None = None,
    ids: Sequence[Any] | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    cache: bool = True,
    compile: bool = False,
    threads: int | None = None,
) -> pd.DataFrame:
    """Score N fused images against their sources: one row per image, one column per metric.

    Args:
        fused, ir, vi: (N, C, H, W), (N, H, W), (H, W) or (H, W, C); torch, numpy or PIL; grey or RGB. Or
            lists of single images (paths, arrays, tensors, PIL) that may differ in size, or one path each.
            A 3-D tensor (3, H, W) is refused as ambiguous (three grey images or one RGB image?).
        metrics: registered names (default ``DEFAULT_METRICS``); aliases such as "qabf" are accepted.
        profile: "fusebench" (default), "cddfuse", "tang", "tang_fixed", "vifb" or a Profile.
        data_range: 1.0 or 255.0, required for float inputs (uint8 is 0..255).
        ids: row labels (default 0..N-1).
        device: where to compute (default: the fused tensor's device).
        dtype: torch.float64 (reference accuracy) or torch.float32 (fast path).
        cache: compute intermediates that several metrics share (VIF/VIFF statistics, SSIM terms, Qcb/Qcv
            spectra, grey levels and histograms) once per batch; the numbers are the same either way.
        compile: run the metrics' tensor cores through ``torch.compile`` (fused loops, 2-3x faster on CPU).
            Compiling takes ~2 minutes for all metrics the first time on a machine (~25 s in later processes,
            from torch's disk cache), so it is for large datasets of one image size. The numbers agree with
            eager to rounding.
        threads: CPU threads for the scoring (torch's setting is restored afterwards). None (default):
            ``$FUSEBENCH_THREADS`` if set, else torch's current setting capped by the affinity/cgroup cores and,
            unless ``OMP_WAIT_POLICY=PASSIVE`` was set before torch started, by the cores other processes leave
            free (re-measured between calls): spinning OpenMP workers that share a core with another process
            make every operation slow (20x measured on a 2-core machine). On CPU a batch of several chunks
            is scored a few chunks at once, each with a share of the threads
            (:func:`fusebench.threads.scoring_split`; eager kernels only: torch.compile is not thread-safe);
            a single chunk uses them all as intra-op threads only while OpenMP's idle workers spin (with
            ``OMP_WAIT_POLICY=PASSIVE`` they wake up for every operation, which made 2 threads slower than 1).

    Returns:
        DataFrame indexed by ``ids``; ``df.attrs`` holds "profile" and "profile_info".

    Raises:
        TypeError: unsupported input types or dtypes. ValueError: shapes, ranges, NaN/inf, missing data_range.
    """
    if any(isinstance(x, (list, tuple, str, os.PathLike)) for x in (fused, ir, vi)):
        return _evaluate_list(fused, ir, vi, metrics=metrics, profile=profile, data_range=data_range, ids=ids,
                              device=device, dtype=dtype, cache=cache, compile=compile, threads=threads)
    p = get_profile(profile)
    names = [get_metric(m).name for m in (metrics if metrics is not None else DEFAULT_METRICS)]
    if len(set(names)) != len(names):
        raise ValueError(f"Expected distinct metric names. Got {list(metrics or [])}.")
    imgs = {nm: _as_nchw(x, nm) for nm, x in (("fused", fused), ("ir", ir), ("vi", vi))}
    n, _, h, w = imgs["fused"].shape
    for nm in ("ir", "vi"):
        if imgs[nm].shape[0] != n or imgs[nm].shape[-2:] != (h, w):
            raise ValueError(
                f"Expected `{nm}` and `fused` to have the same number of images, height and width. "
                f"Got {nm}: {tuple(imgs[nm].shape)} and fused: {tuple(imgs['fused'].shape)}."
            )
    index = pd.Index(list(ids) if ids is not None else range(n), name="id")
    if len(index) != n:
        raise ValueError(f"Expected one id per image ({n}). Got {len(index)} ids.")
    dev = torch.device(device) if device is not None else imgs["fused"].device
    parts = _score(imgs, names, p, data_range, dev, dtype, cache, compile, scoring_threads(threads))
    columns = {name: np.concatenate(v) for name, v in parts.items()}
    df = pd.DataFrame(columns, index=index, columns=names)
    df.attrs["profile"] = p.name
    df.attrs["profile_info"] = profile_info(p, names)
    df.attrs["metrics"] = {m: metric_info(m) for m in names}
    return df


def _score(imgs: dict[str, Tensor], names: list[str], p: Profile, data_range: float | None, dev: torch.device,
           dtype: torch.dtype, cache: bool, compile: bool, threads: int) -> dict[str, list[np.ndarray]]:
    """Per metric, the scores of validated (N, C, H, W) images, chunk by chunk, with ``threads`` CPU threads."""
    n, _, h, w = imgs["fused"].shape
    with torch_threads(threads):
        f, a, b = (_quantise(imgs[nm], nm, data_range, dev) for nm in ("fused", "ir", "vi"))
        pf, pa, pb, k = _planes(f, a, b, p)
        pf, pa, pb = (x.to(dtype) for x in (pf, pa, pb))
        unrounded = [name for name in names if name in p.unrounded_luma]
        if k == 1 and unrounded and 3 in (a.shape[1], b.shape[1]):  # VIFB: rgb2gray of a double source
            exact = {"ir": _grey(a, p, rounded=False).to(dtype), "vi": _grey(b, p, rounded=False).to(dtype)}
        else:
            exact = {}
    for name in names:
        entry = get_metric(name)
        if min(h, w) < entry.min_size:
            raise ValueError(f"Metric {name} needs images of at least {entry.min_size}x{entry.min_size} "
                             f"pixels. Got {h}x{w}.")
    # On CPU, a few images at a time keep every intermediate in cache; accelerators take the whole batch.
    step = n if dev.type != "cpu" else max(1, _cpu_chunk_pixels(compile, dtype) // (h * w * k))
    chunks = -(-n // step)
    # equal-sized chunks (sizes differ by at most one): fewer distinct shapes for compiled kernels
    starts = [i * n // chunks for i in range(chunks + 1)]

    def score_chunk(i: int, end: int, chunk_threads: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        # the scopes are entered here: context variables do not follow a chunk into a pool thread
        with torch_threads(chunk_threads), trusted_inputs(), compiled_kernels(compile), \
                shared_intermediates() if cache else contextlib.nullcontext():  # inputs validated, quantised
            sl = slice(i * k, end * k)
            m = end - i
            cf, ca, cb = pf[sl], pa[sl], pb[sl]
            for name in names:
                entry, opts = get_metric(name), p.options_for(name)
                if k == 3 and name in p.side_by_side:  # VIFB indexes an RGB image as an M x 3N matrix
                    wide = cf.reshape(m, 3, h, w).permute(0, 2, 1, 3).reshape(m, 1, h, 3 * w)
                    vals = entry.factory(wide, data_range=255.0, **opts)
                elif exact and name in unrounded:
                    vals = entry.factory(cf, exact["ir"][sl], exact["vi"][sl], data_range=255.0, **opts)
                else:
                    with integer_inputs():  # quantised levels: exact shared sums for the global statistics
                        vals = entry.factory(cf, ca, cb, data_range=255.0, **opts).reshape(m, k).mean(1)
                out[name] = vals.double().cpu().numpy()
        return out

    spans = list(itertools.pairwise(starts))
    parallel, per_chunk = scoring_split(threads) if dev.type == "cpu" and not compile else (1, threads)
    if len(spans) == 1 and not workers_sleep():
        # one chunk: intra-op threads pay only while OpenMP's idle workers spin; sleeping ones wake up for each
        # of thousands of small operations (640x480: 2 threads 284 ms a pair, 1 thread 164 ms; 1280x1024:
        # 1267 vs 846 ms; spinning, 2 threads: 112 and 487 ms)
        per_chunk = threads
    if parallel > 1 and len(spans) > 1:
        with ThreadPoolExecutor(min(parallel, len(spans)), thread_name_prefix="fusebench-metrics") as pool:
            results = list(pool.map(lambda span: score_chunk(*span, per_chunk), spans))
    else:
        results = [score_chunk(i, end, per_chunk) for i, end in spans]
    return {name: [r[name] for r in results] for name in names}


def _evaluate_list(fused: Any, ir: Any, vi: Any, *, ids: Sequence[Any] | None, **kw: Any) -> pd.DataFrame:
    """``evaluate`` for lists of images (paths, arrays, tensors, PIL) that may differ in size.

    Each element is one image; images of one size are scored together and the rows come back in list order.
    """
    lists = {}
    for nm, x in (("fused", fused), ("ir", ir), ("vi", vi)):
        items = list(x) if isinstance(x, (list, tuple)) else [x]
        lists[nm] = [_read_8bit(i, "grey" if nm == "ir" else "keep") if isinstance(i, (str, os.PathLike))
                     else i for i in items]
    n = len(lists["fused"])
    if len(lists["ir"]) != n or len(lists["vi"]) != n:
        raise ValueError(f"Expected as many `ir` and `vi` images as `fused` images ({n}). "
                         f"Got {len(lists['ir'])} and {len(lists['vi'])}.")
    labels = list(ids) if ids is not None else list(range(n))
    if len(labels) != n:
        raise ValueError(f"Expected one id per image ({n}). Got {len(labels)} ids.")
    single = {nm: [_as_nchw(i, f"{nm}[{j}]") for j, i in enumerate(v)] for nm, v in lists.items()}
    groups: dict[tuple[Any, ...], list[int]] = {}
    for j in range(n):
        key = (*single["fused"][j].shape[1:], single["vi"][j].shape[1], str(single["fused"][j].dtype))
        groups.setdefault(key, []).append(j)
    frames: list[tuple[int, pd.DataFrame]] = []
    for members in groups.values():
        stacked = [torch.cat([single[nm][j] for j in members]) for nm in ("fused", "ir", "vi")]
        df = evaluate(*stacked, ids=[labels[j] for j in members], **kw)
        frames.extend((j, df.iloc[[r]]) for r, j in enumerate(members))
    frames.sort(key=lambda t: t[0])
    out = pd.concat([f for _, f in frames])
    out.attrs = frames[0][1].attrs
    return out


def _read_8bit(path: str | os.PathLike[str], mode: str) -> np.ndarray:
    """Decode with fusebench.images.read_image and return the exact 8-bit grid as uint8 (H, W) or (H, W, 3)."""
    from fusebench.images import read_image

    x = read_image(path, mode=mode)  # type: ignore[arg-type]
    return np.round(x.astype(np.float64) * 255.0).astype(np.uint8)


def evaluate_files(
    triples: Iterable[tuple[Any, str | os.PathLike[str], str | os.PathLike[str], str | os.PathLike[str]]],
    *,
    metrics: Sequence[str] | None = None,
    profile: str | Profile = "fusebench",
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    progress: bool = False,
    compile: bool = False,
    threads: int | None = None,
) -> pd.DataFrame:
    """Score ``(id, fused_path, ir_path, vi_path)`` triples from disk, streaming equal-sized batches.

    At most ``batch_size`` decoded triples are held at once: images are grouped by (height, width, colour),
    a group is scored when it is full, and the largest pending group is flushed whenever the buffer is full
    (so datasets where every image has its own size still stream). Rows come back in input order.
    ``compile`` and ``threads`` are passed to ``evaluate`` (threads=None: the cores usable at each batch).

    Raises:
        fusebench.images.ImageError: a file that cannot be read (the message starts with its path).
        ValueError: a triple whose images differ in size (the message names the files).
    """
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1. Got {batch_size}.")
    p = get_profile(profile)
    names = [get_metric(m).name for m in (metrics if metrics is not None else DEFAULT_METRICS)]
    pending: dict[tuple[int, ...], list[tuple[int, Any, np.ndarray, np.ndarray, np.ndarray]]] = {}
    done: list[tuple[int, pd.DataFrame]] = []
    n_pending = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="pair", desc=f"metrics ({p.name})",
                   total=len(triples) if isinstance(triples, Sized) else None)

    def flush(key: tuple[int, ...]) -> None:
        nonlocal n_pending
        group = pending.pop(key)
        n_pending -= len(group)
        # (N, H, W) grey stacks get their channel axis: a stack of three would read as one (3, H, W) image
        stack = [np.stack([g[i] if g[i].ndim == 3 else g[i][None] for g in group]) for i in (2, 3, 4)]
        df = evaluate(*stack, metrics=names, profile=p, ids=[g[1] for g in group], device=device, compile=compile,
                      threads=threads)
        done.extend((g[0], df.iloc[[j]]) for j, g in enumerate(group))
        if bar is not None:
            bar.update(len(group))

    for pos, (id_, fused_path, ir_path, vi_path) in enumerate(triples):
        f = _read_8bit(fused_path, "keep")
        a = _read_8bit(ir_path, "grey")
        b = _read_8bit(vi_path, "keep")
        if not (f.shape[:2] == a.shape[:2] == b.shape[:2]):
            raise ValueError(
                f"{id_}: images differ in size: {fused_path} {f.shape[:2]}, {ir_path} {a.shape[:2]}, "
                f"{vi_path} {b.shape[:2]} (height, width)."
            )
        key = (*f.shape, *b.shape)
        pending.setdefault(key, []).append((pos, id_, f, a, b))
        n_pending += 1
        if len(pending[key]) >= batch_size:
            flush(key)
        elif n_pending >= batch_size:
            flush(max(pending, key=lambda k: len(pending[k])))
    for key in list(pending):
        flush(key)
    if bar is not None:
        bar.close()
    if not done:
        return pd.DataFrame(columns=names, index=pd.Index([], name="id"))
    done.sort(key=lambda t: t[0])
    out = pd.concat([d for _, d in done])
    out.attrs["profile"] = p.name
    out.attrs["profile_info"] = profile_info(p, names)
    out.attrs["metrics"] = {m: metric_info(m) for m in names}
    return out
