"""The pieces of ``fusebench run``'s pipeline: decoding workers, size-bucketed batches, a background writer.

- :class:`DecodedPairs` decodes (and so validates) pairs in DataLoader workers. Each item holds the float
  images a method fuses and the exact 8-bit grids the metrics score (the same ``round(x * 255)`` of the same
  decode that :func:`fusebench.metrics.evaluate_files` applies to files), so fused images can be scored in
  memory with the numbers that scoring their PNGs would give. A worker's error travels as a value and is
  raised in the main process at that pair's turn, as the sequential loop would raise it.
- :func:`size_batches` groups pairs of one size into batches, keeping dataset order within each size.
- :func:`quantise` is :func:`fusebench.images.to_uint8` on any device (the same float32 operations).
- :class:`InOrderPool` runs the writes (PNG encoding releases the GIL) in background threads and the scoring
  in the processes or threads of :func:`scoring_executor`, and hands back their results in order.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
import tempfile
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from fusebench.datasets.base import Pair, PairDataset, load_pair
from fusebench.malloc import keep_freed_memory
from fusebench.threads import scoring_split, usable_cores


@dataclass
class Decoded:
    """One decoded pair (or the error its decoding raised): float images in [0, 1] and 8-bit grids."""

    index: int
    id: str
    ir: Tensor | None = None  # (1, H, W) float32
    vi: Tensor | None = None  # (1|3, H, W) float32
    ir8: Tensor | None = None  # (1, H, W) uint8, as the metrics read the file
    vi8: Tensor | None = None  # (1|3, H, W) uint8
    error: WorkerError | None = None


def eight_bit(x: Tensor) -> Tensor:
    """The exact 8-bit grid of a decoded image, as ``evaluate_files`` reads files: round(x * 255) in float64."""
    return torch.from_numpy(np.round(x.numpy().astype(np.float64) * 255.0).astype(np.uint8))


@dataclass
class WorkerError:
    """An exception raised while decoding, in a form that survives the trip from a worker process."""

    exc: BaseException | None
    image_error: tuple[str, str] | None = None  # ImageError(path, problem): its constructor takes two args
    text: str = ""

    @classmethod
    def of(cls, exc: BaseException) -> WorkerError:
        from fusebench.images import ImageError

        if isinstance(exc, ImageError):
            return cls(None, (str(exc.path), exc.problem))
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001
            return cls(None, None, f"{type(exc).__name__}: {exc}")
        return cls(exc)

    def exception(self) -> BaseException:
        from fusebench.images import ImageError

        if self.image_error is not None:
            return ImageError(*self.image_error)
        return self.exc if self.exc is not None else RuntimeError(self.text)


def decode(pair: Pair, index: int) -> Decoded:
    try:
        sample = load_pair(pair)
    except Exception as exc:  # noqa: BLE001 - raised in the main process, at this pair's turn
        return Decoded(index, pair.id, error=WorkerError.of(exc))
    return Decoded(index, pair.id, sample.ir, sample.vi, eight_bit(sample.ir), eight_bit(sample.vi))


class DecodedPairs(Dataset[Decoded]):
    """The pairs of ``pairs`` at ``indices`` (dataset positions), decoded on access."""

    def __init__(self, pairs: PairDataset, indices: Sequence[int]) -> None:
        self.pairs, self.indices = pairs.pairs, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> Decoded:
        index = self.indices[k]
        return decode(self.pairs[index], index)


@dataclass
class Group:
    """Decoded pairs of one shape, stacked (the unit a method fuses at once), or one pair's error."""

    items: list[Decoded]
    ir: Tensor | None = None  # (N, 1, H, W)
    vi: Tensor | None = None  # (N, C, H, W)
    ir8: Tensor | None = None
    vi8: Tensor | None = None

    def pin_memory(self) -> Group:  # DataLoader(pin_memory=True) calls this on custom batch types
        if self.ir is None:
            return self
        return Group(self.items, *(t.pin_memory() for t in (self.ir, self.vi, self.ir8, self.vi8)))

    @property
    def ids(self) -> list[str]:
        return [d.id for d in self.items]


def collate(items: list[Decoded]) -> list[Group]:
    """Consecutive runs of equal shapes become one stacked group each; an error is a group of its own."""
    groups: list[Group] = []
    run: list[Decoded] = []

    def close() -> None:
        if run:
            stack = [torch.stack([getattr(d, k) for d in run]) for k in ("ir", "vi", "ir8", "vi8")]
            groups.append(Group(list(run), *stack))
            run.clear()

    for d in items:
        if d.error is not None:
            close()
            groups.append(Group([d]))
            continue
        if run and (d.ir.shape, d.vi.shape) != (run[0].ir.shape, run[0].vi.shape):  # type: ignore[union-attr]
            close()
        run.append(d)
    close()
    # light items for the trip back from a worker: the tensors live in the stacks
    for g in groups:
        if g.ir is not None:
            g.items = [Decoded(d.index, d.id) for d in g.items]
    return groups


def size_batches(pairs: PairDataset, indices: Sequence[int], batch_size: int) -> list[list[int]]:
    """Positions into ``indices`` grouped into batches of up to ``batch_size`` pairs of one size (header sizes).

    Dataset order is kept within each size; a batch is emitted when full, the rest in order of their first
    pair. ``batch_size`` 1 gives the dataset order itself (no header is read).
    """
    if batch_size <= 1:
        return [[k] for k in range(len(indices))]
    from fusebench.images import image_size

    open_batches: dict[Any, list[int]] = {}
    out: list[tuple[int, list[int]]] = []
    for k, index in enumerate(indices):
        pair = pairs.pairs[index]
        try:
            key: Any = (image_size(pair.ir), image_size(pair.vi))
        except Exception:  # noqa: BLE001 - unreadable: a batch of its own, the decoder reports it
            key = ("unreadable", k)
        batch = open_batches.setdefault(key, [])
        batch.append(k)
        if len(batch) >= batch_size:
            out.append((batch[0], open_batches.pop(key)))
    out.extend((b[0], b) for b in open_batches.values())
    out.sort(key=lambda t: t[0])
    return [b for _, b in out]


def default_workers(cores: int | None = None) -> int:
    """DataLoader workers: one per core (default: those free now), less the main process, at most 8 (0: decode
    in-process)."""
    return max(0, min(8, (usable_cores() if cores is None else cores) - 1))


def loader(pairs: PairDataset, indices: Sequence[int], *, batch_size: int = 1, workers: int | None = None,
           pin_memory: bool = False) -> Iterator[Group]:
    """Groups of decoded pairs in batch order (each batch split into groups of one shape); ``workers``
    default: :func:`default_workers`."""
    workers = default_workers() if workers is None else workers
    batches = size_batches(pairs, indices, batch_size)
    data = DataLoader(DecodedPairs(pairs, indices), batch_sampler=batches, num_workers=workers,
                      collate_fn=collate, pin_memory=pin_memory,
                      prefetch_factor=2 if workers else None, persistent_workers=False)
    for groups in data:
        yield from groups


def quantise(fused: Tensor) -> Tensor:
    """(N, C, H, W) in [0, 1] -> uint8 on the same device, exactly as :func:`fusebench.images.to_uint8`
    (float32, clip, x255, round half to even); NaN or inf raise ValueError."""
    x = fused.detach().float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("image contains NaN or inf values")
    return torch.round(x.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def to_hwc(image: Tensor) -> np.ndarray:
    """(C, H, W) uint8 tensor -> (H, W) or (H, W, 3) numpy, as written."""
    arr = image.cpu().numpy()
    return arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0))


def write_with(write: Callable[[str | os.PathLike[str], np.ndarray], None], path: Path, image: np.ndarray) -> None:
    """``write(tmp, image)`` beside ``path`` (same extension, for encoders that choose by it), then rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        write(tmp, image)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class InOrderPool:
    """Runs tasks in ``pool`` (threads or processes); ``on_done(tag, result)`` runs in the caller's thread for
    each finished task, in submission order.

    At most ``limit`` tasks are pending (then :meth:`submit` waits for the oldest). :meth:`drain` waits for
    every pending task, so an interrupted run keeps each pair fused before the interruption.
    """

    def __init__(self, on_done: Callable[[Any, Any], None], pool: Executor, limit: int = 8) -> None:
        self.pool = pool
        self.pending: deque[tuple[Any, Future[Any]]] = deque()
        self.on_done, self.limit = on_done, max(1, limit)

    def submit(self, tag: Any, fn: Callable[..., Any], *args: Any) -> None:
        self.pending.append((tag, self.pool.submit(fn, *args)))
        while self.pending and (len(self.pending) > self.limit or self.pending[0][1].done()):
            self._pop()

    def _pop(self) -> None:
        tag, future = self.pending.popleft()
        try:
            result = future.result()  # a task's error is raised here
        except BrokenProcessPool as exc:
            raise RuntimeError("a worker process ended unexpectedly (killed, or out of memory?); the pairs "
                               "fused so far are kept, run the command again to resume") from exc
        self.on_done(tag, result)

    def drain(self) -> None:
        """Wait for every pending task (the first error is raised after all have finished)."""
        error: BaseException | None = None
        while self.pending:
            try:
                self._pop()
            except BaseException as exc:  # noqa: BLE001 - keep waiting for the others, then raise
                error = error or exc
        if error is not None:
            raise error

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def scoring_executor(cores: int) -> tuple[Executor, int, int]:
    """(pool, workers, torch threads for each) to score batches on ``cores`` CPU cores.

    On Linux the workers are processes forked now, before any other thread of the pipeline starts (they
    inherit the imported metrics, so they start in milliseconds), one per core up to 16 (~300 MB each at
    1280x1024) with one torch thread each: threads in one process contend for the GIL between torch's
    operations (2 threads: 113 ms a 640x480 pair, 2 processes: 93 ms, 1 alone: 163 ms), and intra-op threads
    lose when OpenMP's idle workers sleep, as the CLI sets them to. Elsewhere (no safe ``fork``) they are
    threads, as :func:`fusebench.threads.scoring_split` divides the cores.
    """
    if sys.platform != "linux":
        parallel, threads = scoring_split(cores)
        return ThreadPoolExecutor(parallel, thread_name_prefix="fusebench-scorer"), parallel, threads
    parallel = max(1, min(cores, 16))
    pool = ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("fork"),
                               initializer=_scoring_process)
    with warnings.catch_warnings():  # Python >= 3.12 warns about fork() beside torch's idle OpenMP threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pool.submit(int).result()  # fork every worker now: with the "fork" context they all start at once
    return pool, parallel, 1


def _scoring_process() -> None:
    """A scoring process: one torch thread; Ctrl-C is the main process's to handle (it stops the run and
    waits for the batches already handed out), so a worker does not die mid-batch with a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    keep_freed_memory()  # the metrics allocate the same image-sized temporaries for every pair
