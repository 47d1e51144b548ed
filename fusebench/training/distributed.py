"""Data-parallel training with PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

``torchrun --nproc_per_node N [--nnodes M ...] -m fusebench train ...`` starts N processes per node with
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the environment; :func:`init_distributed` joins them (``env://``,
NCCL on CUDA, gloo on CPU). Every rank builds the same model from the same seed, DDP averages the
gradients, and each rank takes its share of every global batch (``StepBatchSampler``), so N processes
train the weights one process would with the same global batch. Rank 0 alone writes files.

Two pieces keep that equivalence where a loss or layer looks at the whole batch: :func:`batch_mean`
(a differentiable all-reduce of a batch statistic before a non-linear function of it, e.g. the normaliser
of MaeFuse's content alignment loss) and :class:`DistBatchNorm2d` (BatchNorm over the global batch; torch's
SyncBatchNorm runs on GPUs only). Random draws per sample (MAE masks) follow the batches: every rank draws
those of the whole global batch from (seed, step) and keeps its share's rows.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a distributed run."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched() -> bool:
    """True when started by torchrun (or another launcher) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group when launched with WORLD_SIZE > 1; returns this rank's device."""
    if not launched():
        return device
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://", timeout=timedelta(minutes=30))
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def wrap(module: nn.Module, device: torch.device, *, find_unused: bool = True) -> nn.Module:
    """``module`` in DistributedDataParallel when distributed (its trainable parameters, as they are now),
    else ``module`` itself."""
    if world()[1] == 1:
        return module
    if not any(p.requires_grad for p in module.parameters()):
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused,
                                               broadcast_buffers=False)


def batch_mean(value: Tensor) -> Tensor:
    """The mean of ``value`` over the ranks (each holding its share's mean), differentiable; itself when
    not distributed. With equal shares this is the global batch's mean, as one process computes it."""
    _, size = world()
    if size == 1:
        return value
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(value, op=dist.ReduceOp.SUM) / size


class DistBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the global batch of a distributed run (any backend,
    CPU included); plain BatchNorm2d otherwise. Same parameters and buffers, so checkpoints move freely."""

    def forward(self, x: Tensor) -> Tensor:
        _, size = world()
        if not self.training or size == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        count = x.shape[0] * x.shape[2] * x.shape[3] * size
        mean = all_reduce(x.sum(dim=(0, 2, 3)), op=dist.ReduceOp.SUM) / count
        centred = x - mean[None, :, None, None]
        var = all_reduce(centred.pow(2).sum(dim=(0, 2, 3)), op=dist.ReduceOp.SUM) / count
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * count / max(1, count - 1), alpha=m)
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out
