"""The training input pipeline: per-step batches of sample keys, decoded lazily in DataLoader workers.

A batch is a pure function of (seed, step): step ``s`` takes slice ``s % per_epoch`` of a seeded permutation
of epoch ``s // per_epoch``, and every sample is a pure function of its key ``(epoch, index)``. So the
sequence of samples does not depend on the number of workers, a run resumed at step ``s`` continues the
same sequence, and ``world`` ranks that each take their share ``[rank::world]`` of every global batch (the
split of torch's ``DistributedSampler``) together see exactly the batch a single process would see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

#: a sample key: (epoch, index in the epoch's dataset)
Key = tuple[int, int]


class StepBatchSampler:
    """Yields, for steps ``start``, ``start + 1``, ... (until ``stop``), this rank's list of sample keys.

    ``epoch_seed(epoch)`` seeds the permutation of that epoch (each trainer keeps its historical formula,
    so the batches are those of the pre-pipeline loop). ``batch_size`` is the global batch; it must be a
    multiple of ``world``. Torch's ``DistributedSampler`` splits an epoch the same way (``[rank::world]``)
    but cannot start in the middle of an epoch; this sampler can, which resuming needs.
    """

    def __init__(self, n: int, batch_size: int, epoch_seed: Callable[[int], int], *, start: int = 0,
                 stop: int | None = None, rank: int = 0, world: int = 1) -> None:
        if n < 1:
            raise ValueError("no samples to train on")
        if batch_size % world:
            raise ValueError(f"the global batch_size {batch_size} must be a multiple of the {world} processes")
        self.n, self.batch_size, self.epoch_seed = n, batch_size, epoch_seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self.per_epoch = max(1, n // batch_size)

    def global_batch(self, step: int) -> list[Key]:
        """The keys of batch ``step`` across all ranks."""
        epoch, index = divmod(step, self.per_epoch)
        order = self._order(epoch)
        return [(epoch, int(i)) for i in order[index * self.batch_size:(index + 1) * self.batch_size]]

    def _order(self, epoch: int) -> torch.Tensor:
        cached = getattr(self, "_cached", None)
        if cached is None or cached[0] != epoch:
            gen = torch.Generator().manual_seed(self.epoch_seed(epoch))
            self._cached = (epoch, torch.randperm(self.n, generator=gen))
        return self._cached[1]

    def __iter__(self) -> Iterator[list[Key]]:
        step = self.start
        while self.stop is None or step < self.stop:
            yield self.global_batch(step)[self.rank::self.world]
            step += 1


def default_workers() -> int:
    """DataLoader workers per process: its share of the usable cores (torchrun's local processes share
    them) minus the one its training loop runs on, at most 4 (0: decode in the main process)."""
    from fusebench.threads import local_processes, usable_cores

    return max(0, min(4, usable_cores() // local_processes() - 1))


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers decode and crop; the training loop owns the cores


def make_loader(dataset: Dataset[Any], sampler: StepBatchSampler, *, workers: int | None = None,
                device: torch.device | None = None) -> DataLoader[Any]:
    """A DataLoader over ``sampler``'s batches: ``workers`` processes (None: :func:`default_workers`),
    pinned memory on CUDA (copy with ``non_blocking=True``), two batches prefetched per worker."""
    workers = default_workers() if workers is None else workers
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers,  # type: ignore[arg-type]
                      pin_memory=device is not None and device.type == "cuda",
                      worker_init_fn=_worker_init if workers else None,
                      prefetch_factor=2 if workers else None, persistent_workers=False)


class LossLog:
    """Holds the last step's loss tensors without reading them; :meth:`values` syncs once (at log steps)."""

    def __init__(self) -> None:
        self.last: dict[str, torch.Tensor] = {}

    def keep(self, losses: dict[str, torch.Tensor]) -> None:
        self.last = {k: v.detach() for k, v in losses.items()}

    def values(self) -> dict[str, float]:
        if not self.last:
            return {}
        names = list(self.last)
        numbers = torch.stack([self.last[k].float().reshape(()) for k in names]).cpu().tolist()
        return dict(zip(names, numbers))
