"""`FusionMethod`: the one interface every fusion method implements, and the method registry.

A method fuses a batch of infrared and visible-luminance images, both (N, 1, H, W) float in [0, 1],
into a fused luminance image of the same size. Colour is handled here, once: the visible RGB image is
converted to YCbCr (BT.601), its Y is fused, its CbCr is put back. Methods that need a different
colour pipeline (the official MaeFuse inference) override :meth:`FusionMethod.fuse_images`.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fusebench.color import luminance, replace_luminance
from fusebench.files import atomic_write
from fusebench.registry import Registry

METHODS: Registry[FusionMethod] = Registry("method", entry_point_group="fusebench.methods")


def register_method(name: str, **meta: Any):
    """Register a method factory. Metadata: ``description``, ``trainable``, ``paper``, ``train`` (callable)."""
    meta.setdefault("trainable", False)
    return METHODS.register(name, **meta)


def create_method(name: str, **overrides: Any) -> FusionMethod:
    """Build a registered method; ``None`` overrides are ignored."""
    method = METHODS.create(name, **overrides)
    method.name = name
    return method


def list_methods(pattern: str = "*", exclude: tuple[str, ...] = ()) -> list[str]:
    """Registered method names matching an fnmatch pattern."""
    return METHODS.list(pattern, exclude)


class WeightsError(ValueError):
    """A checkpoint or weights file that does not fit the method; the message names the file."""


class FusionMethod(nn.Module):
    """Base class of all fusion methods (an ``nn.Module`` so weights, devices and dtypes work as usual)."""

    #: whether the method has parameters that must be trained before it is useful
    trainable: ClassVar[bool] = False
    #: device types the method can run on
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def __init__(self, **cfg: Any) -> None:
        super().__init__()
        self.name = type(self).__name__.lower()
        self.cfg: dict[str, Any] = dict(cfg)

    @abstractmethod
    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        """Fuse (N, 1, H, W) infrared and visible luminance in [0, 1] into (N, 1, H, W) in [0, 1]."""

    def fuse_batch(self, ir: Tensor, vi: Tensor, ids: Sequence[str] | None = None) -> Tensor:
        """:meth:`fuse` with its contract checked; methods that need the pair ids (``folder``) override this."""
        out = self.fuse(ir, vi)
        return self.check_output(out, ir, ids)

    def fuse_images(self, ir: Tensor, vi: Tensor, ids: Sequence[str] | None = None) -> Tensor:
        """Fuse infrared (N, 1, H, W) with a grey or RGB visible image (N, 1|3, H, W); output has vi's channels."""
        check_pair_tensors(ir, vi)
        fused_y = self.fuse_batch(ir, luminance(vi), ids)
        return replace_luminance(vi, fused_y)

    def forward(self, ir: Tensor, vi: Tensor) -> Tensor:
        return self.fuse(ir, vi)

    def check_output(self, out: Tensor, ir: Tensor, ids: Sequence[str] | None = None) -> Tensor:
        """Same size as the input, finite, clamped to [0, 1]; a clear error otherwise."""
        where = f" for pairs {list(ids)}" if ids else ""
        if out.shape != ir.shape:
            raise RuntimeError(
                f"method '{self.name}' returned shape {tuple(out.shape)}{where}, expected {tuple(ir.shape)}"
            )
        if not torch.isfinite(out).all():
            raise RuntimeError(f"method '{self.name}' produced NaN or inf values{where}")
        return out.clamp(0.0, 1.0)

    # -- weights -------------------------------------------------------------------------------------------
    def save_weights(self, path: str | Path) -> None:
        """Save the state dict as safetensors with the method's name and config in the metadata."""
        from safetensors.torch import save

        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        meta = {"method": self.name, "cfg": json.dumps(self.cfg, default=str)}
        with atomic_write(path, "wb") as handle:
            handle.write(save(tensors, metadata=meta))

    def load_weights(self, path: str | Path, strict: bool = True) -> None:
        """Load safetensors (or a torch checkpoint holding a state dict); mismatches list the keys."""
        path = Path(path)
        state = read_state_dict(path)
        self.check_state_fits(state, path, strict=strict)
        self.load_state_dict(state, strict=strict)

    def check_state_fits(
        self, state: dict[str, Tensor], path: Path, *, required: set[str] | None = None, strict: bool = True
    ) -> None:
        """Raise a WeightsError naming the file and the missing, unexpected and mis-shaped keys.

        ``required`` (default: every key of the model) is what the file must hold, for methods whose
        files carry only some of their parameters.
        """
        own = self.state_dict()
        missing = sorted((set(own) if required is None else required) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if not wrong and not (strict and (missing or unexpected)):
            return
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        if wrong:
            k = wrong[0]
            parts.append(f"shape mismatch for {len(wrong)} keys, e.g. {k}: file {tuple(state[k].shape)} vs "
                         f"model {tuple(own[k].shape)}")
        raise WeightsError(f"{path}: weights do not fit method '{self.name}': " + "; ".join(parts))


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read a safetensors file or a torch checkpoint (``state_dict``/``model`` key or a bare dict)."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read weights, the file is truncated or not a checkpoint ({exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return obj


def check_pair_tensors(ir: Tensor, vi: Tensor) -> None:
    """Validate a batch of pairs: (N, 1, H, W) infrared, (N, 1|3, H, W) visible, finite, in [0, 1]."""
    if not isinstance(ir, Tensor) or not isinstance(vi, Tensor):
        raise TypeError(f"Expected `ir` and `vi` to be torch tensors. Got {type(ir).__name__} and {type(vi).__name__}.")
    if ir.ndim != 4 or ir.shape[1] != 1:
        raise ValueError(f"Expected `ir` of shape (N, 1, H, W). Got {tuple(ir.shape)}.")
    if vi.ndim != 4 or vi.shape[1] not in (1, 3):
        raise ValueError(f"Expected `vi` of shape (N, 1 or 3, H, W). Got {tuple(vi.shape)}.")
    if ir.shape[0] != vi.shape[0] or ir.shape[-2:] != vi.shape[-2:]:
        raise ValueError(
            f"Expected `ir` and `vi` to have the same batch size, height and width. "
            f"Got ir: {tuple(ir.shape)} and vi: {tuple(vi.shape)}."
        )
    for name, x in (("ir", ir), ("vi", vi)):
        if not torch.isfinite(x).all():
            raise ValueError(f"`{name}` contains NaN or inf values.")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"Expected `{name}` in [0, 1]. Got values in [{x.min().item():.4g}, {x.max().item():.4g}].")
