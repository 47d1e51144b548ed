"""Device choice, mixed precision and seeding, decided once for every trainer."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import numpy as np
import torch


def resolve_device(device: str | None) -> torch.device:
    """``None``/"auto" -> CUDA when available else CPU; asking for CUDA without one is an error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no CUDA device is available")
    return dev


def autocast(device: torch.device, precision: str = "bf16") -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on CUDA (no loss scaler needed); fp32 elsewhere or when ``precision="fp32"``."""
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be 'bf16' or 'fp32', got {precision!r}")
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def setup_device(device: torch.device) -> None:
    """TF32 matmuls and convolutions on CUDA (Ampere and later; fp32 storage, ~10-bit mantissa products)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def adam(params: Any, device: torch.device, *, decoupled: bool = True, **kwargs: Any) -> torch.optim.Optimizer:
    """AdamW (``decoupled``) or Adam; the fused CUDA kernel (one launch per step) when on CUDA."""
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    if device.type == "cuda":
        kwargs["fused"] = True
    return cls(params, **kwargs)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
