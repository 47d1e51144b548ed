"""Training checkpoints written atomically, so an interrupted run resumes from the last complete one."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
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


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 of named tensors (names, dtypes, shapes and bytes, in name order): how a checkpoint refers to
    the frozen weights it does not hold, so that resuming on other frozen weights is refused."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def check_frozen(path: str | Path, state: Mapping[str, Any], frozen_sha256: str) -> None:
    """Refuse to resume when the frozen weights differ from those the checkpoint was trained against."""
    held = state.get("frozen_sha256")
    if held is not None and held != frozen_sha256:
        raise CheckpointError(f"{path}: the frozen weights changed since this checkpoint was written "
                              f"(sha256 {held[:12]}... then, {frozen_sha256[:12]}... now); resume with the same "
                              "backbone, or pick another --out")


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) random states, saved with a checkpoint."""
    out: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: Mapping[str, Any] | None) -> None:
    """Restore what :func:`rng_state` saved (missing parts are left alone)."""
    if not state:
        return
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
