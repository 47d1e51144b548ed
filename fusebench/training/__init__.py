"""Pieces every trainable method shares: patches and warped pairs, checkpoints that resume, loss history, precision."""

from fusebench.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fusebench.training.history import LossHistory, plot_history
from fusebench.training.patches import PatchDataset, WarpDataset
from fusebench.training.precision import autocast, resolve_device, seed_everything

__all__ = [
    "CheckpointError",
    "LossHistory",
    "PatchDataset",
    "WarpDataset",
    "autocast",
    "load_checkpoint",
    "plot_history",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
]
