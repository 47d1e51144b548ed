"""`ZooMethod`: a published network run the way its official test script runs it, on its official weights.

A network module supplies the official model (official parameter names, so the official file loads with
``strict=True``) and :meth:`ZooMethod.fuse_uint8`, the official script's computation from what its readers
return to the uint8 image its writer receives. This class supplies the rest once: reading the pair with the
script's own readers (:meth:`fuse_files`, exact; the runner uses it), the tensor interface every
``FusionMethod`` has (:meth:`fuse`, from decoded images), and fetching the official weights on first use.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from fusebench.methods.base import FusionMethod, WeightsError, check_pair_tensors, register_method
from fusebench.methods.zoo._io import Reader, read_array, read_file
from fusebench.pretrained import PretrainedCfg, resolve_weights


class ZooMethod(FusionMethod):
    """Base of the published networks; subclasses set the readers and implement :meth:`fuse_uint8`."""

    trainable = False
    #: the official script's readers for the infrared and the visible file
    ir_reader: ClassVar[Reader] = "pil_L"
    vi_reader: ClassVar[Reader] = "pil_L"
    #: channels of the official output (SeAFusion writes RGB)
    out_channels: ClassVar[int] = 1

    @property
    def device(self) -> torch.device:
        """Where the parameters are (inputs are created there)."""
        return next(self.parameters()).device

    @abstractmethod
    def fuse_uint8(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """The official computation for one pair, from the readers' arrays to the written uint8 image."""

    # -- the exact path: files -> official output -----------------------------------------------------------
    def fuse_files(self, ir_path: str | Path, vi_path: str | Path) -> np.ndarray:
        """The official output for one pair of files: uint8 (H, W), or (H, W, 3) RGB for colour outputs."""
        ir, vi = read_file(ir_path, self.ir_reader), read_file(vi_path, self.vi_reader)
        if ir.shape[:2] != vi.shape[:2]:
            raise ValueError(f"{ir_path} is {ir.shape[1]}x{ir.shape[0]} (WxH) but {vi_path} is "
                             f"{vi.shape[1]}x{vi.shape[0]}; a pair must have one size")
        with torch.inference_mode():
            return self.fuse_uint8(ir, vi)

    # -- the FusionMethod interface: decoded tensors -> the same computation -----------------------------------
    def fuse_images(self, ir: Tensor, vi: Tensor, ids: Sequence[str] | None = None) -> Tensor:
        """Decoded ir (N, 1, H, W) and vi (N, 1|3, H, W) in [0, 1] -> official outputs (N, C, H, W) in [0, 1]."""
        check_pair_tensors(ir, vi)
        outs = []
        for i in range(ir.shape[0]):
            ir_u8, vi_u8 = _to_uint8(ir[i]), _to_uint8(vi[i])
            with torch.inference_mode():
                out = self.fuse_uint8(read_array(ir_u8, self.ir_reader), read_array(vi_u8, self.vi_reader))
            outs.append(torch.from_numpy(np.ascontiguousarray(out)).float().div(255))
        return torch.stack([o[None] if o.ndim == 2 else o.permute(2, 0, 1) for o in outs]).to(ir.device)

    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        """Grey-in, grey-out form: the official output's luminance."""
        out = self.fuse_images(ir, vi)
        if out.shape[1] == 3:
            from fusebench.color import luminance

            out = luminance(out)
        return out


def _to_uint8(x: Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> uint8 (H, W) or (H, W, 3)."""
    arr = np.rint(x.detach().float().cpu().numpy() * 255).clip(0, 255).astype(np.uint8)
    return arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)


def read_checkpoint(path: Path) -> Any:
    """An official checkpoint file as ``torch.load`` gives it (on CPU, tensors only); errors name the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means the same thing to the user
        raise WeightsError(f"{path}: cannot read the checkpoint, the file is truncated or not one ({exc})") from exc


def load_official(path: Path, *, key: str | None = None, strip_prefix: str = "",
                  checkpoint: Any = None) -> dict[str, Tensor]:
    """A state dict from an official checkpoint file (``checkpoint``: its :func:`read_checkpoint` when read
    already, so a file holding several sub-networks is read once).

    ``key`` picks a sub-dict (``'weight'``, ``'DIDF_Encoder'``, ...); ``strip_prefix`` removes e.g. the
    ``module.`` of DataParallel. Errors name the file.
    """
    obj = read_checkpoint(path) if checkpoint is None else checkpoint
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            found = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
            raise WeightsError(f"{path}: expected a checkpoint with the key {key!r}; found {found}")
        obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    n = len(strip_prefix)
    return {(k[n:] if strip_prefix and k.startswith(strip_prefix) else k): v for k, v in obj.items()}


def load_strict(
    model: ZooMethod, part: str, state: dict[str, Tensor], path: Path, *, tolerate_missing: tuple[str, ...] = ()
) -> None:
    """Load ``state`` (official keys of the sub-network ``model.<part>``) into it with ``strict=True``.

    A checkpoint that does not fit raises :class:`WeightsError` naming the file and the missing, unexpected and
    mis-shaped keys (as ``<part>.<key>``) before anything is loaded. Keys ending in one of ``tolerate_missing``
    may be absent (``num_batches_tracked`` of checkpoints older than PyTorch 0.4.1).
    """
    module = model.get_submodule(part)
    own = {f"{part}.{k}" for k in module.state_dict()}
    required = {k for k in own if not k.endswith(tolerate_missing)} if tolerate_missing else own
    model.check_state_fits({f"{part}.{k}": v for k, v in state.items()}, path, required=required)
    module.load_state_dict(state, strict=True)


def official_loader(
    *parts: str, key: str | None = None, strip_prefix: str = "", tolerate_missing: tuple[str, ...] = ()
) -> Callable[[ZooMethod, list[Path]], None]:
    """The ``load`` of :func:`build_zoo` when weights file ``i`` is the state dict of ``model.<parts[i]>``.

    ``key``/``strip_prefix`` as in :func:`load_official`, ``tolerate_missing`` as in :func:`load_strict`.
    """

    def load(model: ZooMethod, paths: list[Path]) -> None:
        for part, path in zip(parts, paths, strict=True):
            state = load_official(path, key=key, strip_prefix=strip_prefix)
            load_strict(model, part, state, path, tolerate_missing=tolerate_missing)

    return load


def register_zoo(
    name: str, *, model: type[ZooMethod], pretrained: PretrainedCfg, description: str
) -> Callable[[Callable[..., ZooMethod]], Callable[..., ZooMethod]]:
    """Register a zoo network's builder; its metadata carries the pretrained config (listed by the CLI) and
    the class it builds, whose keyword parameters are the method's options besides ``weights`` and
    ``random_init`` (so ``fusebench info`` lists them and a misspelt ``--set`` fails)."""
    return register_method(
        name, description=description, trainable=False, paper=pretrained.paper, pretrained=pretrained,
        license=pretrained.license, model=model,
    )


def build_zoo(
    cls: Callable[..., ZooMethod],
    name: str,
    pretrained: PretrainedCfg,
    load: Callable[[ZooMethod, list[Path]], None],
    *,
    weights: str | Path | None = None,
    random_init: bool = False,
    **options: Any,
) -> ZooMethod:
    """Build ``cls(**options)``, then load its official weights (given, cached, or downloaded now).

    ``load(model, paths)`` loads the files strictly; ``random_init`` skips it (tests, speed runs).
    """
    model = cls(**options)
    model.cfg.update(options, weights=str(weights) if weights else None, pretrained=name)
    if not random_init:
        paths = resolve_weights(name, pretrained, weights)
        load(model, paths)
        model.cfg["weights_files"] = [str(p) for p in paths]
    else:
        model.cfg["random_init"] = True
    return model.eval()
