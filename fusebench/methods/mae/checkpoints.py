"""Official MAE checkpoints (and fusebench's own MAE files): where they are, what they hold, how to load them.

The official files (``facebookresearch/mae``, CC-BY-NC 4.0) store ``ckpt["model"]`` with a cls token,
224-px position tables and an 8-block decoder. :func:`mae_state_from_checkpoint` maps them onto
:class:`~fusebench.methods.mae.backbone.MaskedAutoencoder`: cls token and position tables are dropped
(ours are fixed sin-cos, regenerated per grid), decoder blocks beyond the model's depth are dropped (MaeFuse
keeps 0-3), everything else must match exactly; missing, unexpected and mis-shaped keys are listed.
Hashes: the MAE README gives md5 prefixes for the encoder-only files only; nothing else is invented.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fusebench.files import atomic_write
from fusebench.methods.base import WeightsError, read_state_dict
from fusebench.methods.mae.backbone import MaskedAutoencoder

_MAE_PAPER = "arXiv:2111.06377"
_MAE_ORIGIN = "https://github.com/facebookresearch/mae"
_MAE_LICENSE = "CC-BY-NC-4.0"
_URL = "https://dl.fbaipublicfiles.com/mae/{kind}/{name}.pth"
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"

# Keys a converted file may lack: the mask token only matters for masked pre-training (MaeFuse files lack it).
_OPTIONAL = ("mask_token",)
# Official keys with no counterpart here: cls token and the fixed position tables (regenerated per grid).
_DROPPED = ("cls_token", "pos_embed", "decoder_pos_embed")


@dataclass(frozen=True)
class MaeWeights:
    """One weights file: source, integrity, provenance, and whether it has a (pixel-space) decoder."""

    name: str
    arch: str
    url: str | None = None
    file: str | None = None
    md5_prefix: str | None = None
    sha256: str | None = None
    license: str = _MAE_LICENSE
    origin_url: str = _MAE_ORIGIN
    paper: str = _MAE_PAPER
    has_decoder: bool = True
    notes: str = ""


def _official(kind: str, size: str, suffix: str = "", **kw: Any) -> MaeWeights:
    name = f"mae_{kind}_vit_{size}{suffix}"
    return MaeWeights(name=name, arch=size, url=_URL.format(kind=kind, name=name), **kw)


DEFAULT_CFGS: dict[str, MaeWeights] = {
    cfg.name: cfg
    for cfg in (
        _official(
            "pretrain",
            "base",
            md5_prefix="8cad7c",
            has_decoder=False,
            notes="encoder only; trained with norm_pix_loss",
        ),
        _official(
            "pretrain",
            "large",
            md5_prefix="b8b06e",
            has_decoder=False,
            notes="encoder only; trained with norm_pix_loss",
        ),
        _official(
            "pretrain",
            "huge",
            md5_prefix="9bdbb0",
            has_decoder=False,
            notes="encoder only; trained with norm_pix_loss",
        ),
        *(
            _official(
                "pretrain",
                s,
                "_full",
                notes="encoder + 8-block decoder predicting per-patch normalised "
                "pixels (norm_pix_loss, mae#8); md5 not published",
            )
            for s in ("base", "large", "huge")
        ),
        *(
            _official(
                "visualize",
                s,
                notes="encoder + 8-block decoder predicting pixels (no norm_pix) for "
                "visualisation (mae#3); md5 not published",
            )
            for s in ("base", "large", "huge")
        ),
        _official(
            "visualize",
            "large",
            "_ganloss",
            notes="as mae_visualize_vit_large, plus a GAN loss; md5 not published",
        ),
        MaeWeights(
            name="mae_compact",
            arch="compact",
            file="mae_compact.safetensors",
            license="research use only: trained on data with non-commercial terms (LLVIP) and research-only sets",
            origin_url="fusebench",
            paper=_MAE_PAPER,
            notes="fusebench's compact MAE pre-trained on CPU; recipe in mae_compact.json",
        ),
    )
}


def read_checkpoint(path: Path) -> dict[str, Tensor]:
    """State dict of a safetensors file or torch checkpoint (argparse args allowed, nothing else pickled)."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return read_state_dict(path)


def _check_md5(path: Path, prefix: str) -> None:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    if not digest.hexdigest().startswith(prefix):
        path.unlink()
        raise WeightsError(
            f"{path}: md5 {digest.hexdigest()} does not start with the published {prefix}; "
            "the download was corrupt and has been deleted, run again"
        )


def resolve_weights(name_or_path: str | Path, progress: bool = True) -> tuple[Path, MaeWeights | None]:
    """A local path as is; a registered name -> its packaged file or its cached download."""
    if str(name_or_path) not in DEFAULT_CFGS:
        path = Path(name_or_path)
        if not path.is_file():
            raise WeightsError(
                f"{path}: weights file not found, and not a known MAE weights name "
                f"({', '.join(DEFAULT_CFGS)})"
            )
        return path, None
    cfg = DEFAULT_CFGS[str(name_or_path)]
    if cfg.file is not None:
        return WEIGHTS_DIR / cfg.file, cfg
    from fusebench.download import download_file, fusebench_home

    dest = fusebench_home() / "weights" / Path(str(cfg.url)).name
    fresh = not dest.is_file()
    download_file(str(cfg.url), dest, sha256=cfg.sha256, progress=progress)
    if fresh and cfg.md5_prefix:
        _check_md5(dest, cfg.md5_prefix)
    return dest, cfg


def _decoder_index(key: str) -> int | None:
    match = re.match(r"decoder_blocks\.(\d+)\.", key)
    return int(match.group(1)) if match else None


def is_encoder_key(key: str) -> bool:
    """Encoder parameters: patch embedding, blocks and the final norm (what MaeFuse freezes)."""
    return key.startswith(("patch_embed.", "blocks.", "norm."))


def mae_state_from_checkpoint(
    state: dict[str, Tensor],
    model: MaskedAutoencoder,
    *,
    source: str = "checkpoint",
    encoder_only: bool = False,
) -> dict[str, Tensor]:
    """Map an official-layout MAE state dict onto ``model``'s keys, or raise WeightsError listing problems.

    Drops ``cls_token`` and the position tables, decoder blocks at or past the model's decoder depth and,
    with ``encoder_only``, all decoder keys. The rest must match ``model`` key for key and shape for shape.
    """
    depth = len(model.decoder_blocks)
    kept = {
        k: v
        for k, v in state.items()
        if k not in _DROPPED
        and not ((i := _decoder_index(k)) is not None and i >= depth)
        and not (encoder_only and not is_encoder_key(k))
    }
    own = model.state_dict()
    needed = [k for k in own if k not in _OPTIONAL and (is_encoder_key(k) or not encoder_only)]
    missing = sorted(k for k in needed if k not in kept)
    unexpected = sorted(set(kept) - set(own))
    # patch_embed first: its shape alone tells which size the file is
    wrong = sorted(
        (k for k in set(kept) & set(own) if kept[k].shape != own[k].shape),
        key=lambda k: (not k.startswith("patch_embed"), k),
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            hint = (
                " (the file has no decoder: load it with encoder_only=True)"
                if all(not is_encoder_key(k) for k in missing)
                else ""
            )
            parts.append(f"missing keys {_listed(missing)}{hint}")
        if unexpected:
            parts.append(f"unexpected keys {_listed(unexpected)}")
        if wrong:
            parts.append(
                f"shape mismatch for {len(wrong)} keys: "
                + ", ".join(
                    f"{k}: file {tuple(kept[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:4]
                )
            )
        raise WeightsError(
            f"{source}: does not fit this MAE (embed_dim {model.embed_dim}, "
            f"{len(model.blocks)} blocks, decoder {depth} blocks): " + "; ".join(parts)
        )
    return kept


def _listed(keys: list[str]) -> str:
    return f"{keys[:8]}{f' ... ({len(keys)} in all)' if len(keys) > 8 else ''}"


def load_mae_weights(
    model: MaskedAutoencoder,
    name_or_path: str | Path,
    *,
    encoder_only: bool | None = None,
    progress: bool = True,
) -> MaskedAutoencoder:
    """Load official MAE weights (by name, downloaded once into ``$FUSEBENCH_HOME/weights``) or a local file.

    Args:
        model: the MAE to fill (its size must match the file's).
        name_or_path: a key of ``DEFAULT_CFGS`` (e.g. ``"mae_visualize_vit_large"``, ``"mae_compact"``), or a
            path to a ``.pth`` (``ckpt["model"]`` or a bare state dict) or ``.safetensors`` file.
        encoder_only: load only the encoder; default: True for the encoder-only files, else False.
        progress: download progress bar.

    Raises:
        WeightsError: unreadable/truncated file, wrong md5, or keys/shapes that do not fit (all listed).
        fusebench.download.DownloadError: the file is not cached and cannot be fetched.
    """
    path, cfg = resolve_weights(name_or_path, progress=progress)
    if encoder_only is None:
        encoder_only = cfg is not None and not cfg.has_decoder
    state = mae_state_from_checkpoint(
        read_checkpoint(path), model, source=str(path), encoder_only=encoder_only
    )
    model.load_state_dict(state, strict=False)
    model.pretrained_cfg = cfg
    return model


def save_mae(
    model: MaskedAutoencoder, path: str | Path, *, half: bool = False, meta: dict[str, Any] | None = None
) -> Path:
    """Write the MAE's state dict as safetensors (fp16 with ``half``), atomically, with JSON metadata."""
    from safetensors.torch import save

    dtype = torch.float16 if half else None
    tensors = {
        k: v.detach().to(dtype=dtype or v.dtype).contiguous().cpu() for k, v in model.state_dict().items()
    }
    with atomic_write(path, "wb") as handle:
        handle.write(save(tensors, metadata={"fusebench": json.dumps(meta or {}, default=str)}))
    return Path(path)
