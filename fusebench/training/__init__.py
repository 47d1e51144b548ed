"""Pieces every trainable method shares: patches and warped pairs, the input pipeline, checkpoints that
resume, loss history, precision, and data-parallel training."""

from fusebench.training.checkpoint import (
    CheckpointError,
    check_frozen,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    tensors_sha256,
)
from fusebench.training.history import LossHistory, plot_history
from fusebench.training.patches import PatchDataset, WarpDataset
from fusebench.training.pipeline import LossLog, StepBatchSampler, default_workers, make_loader
from fusebench.training.precision import adam, autocast, resolve_device, seed_everything, setup_device

__all__ = [
    "CheckpointError",
    "LossHistory",
    "LossLog",
    "PatchDataset",
    "StepBatchSampler",
    "WarpDataset",
    "adam",
    "autocast",
    "check_frozen",
    "default_workers",
    "load_checkpoint",
    "make_loader",
    "plot_history",
    "resolve_device",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "setup_device",
    "tensors_sha256",
]
