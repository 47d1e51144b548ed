"""Training checkpoints written atomically, so an interrupted run resumes from the last complete one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fusebench.files import atomic_write


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message names the file."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` through a temporary file and a rename: never a half-written checkpoint."""
    with atomic_write(path, "wb") as handle:
        torch.save(state, handle)


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a checkpoint on CPU; a truncated file or missing ``required`` keys raise CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint, the file is truncated or corrupt ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(state).__name__}")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a fusebench training checkpoint, missing {missing}")
    return state
