"""MAE weights files: where they are, what they hold, how they load (one reader for train and pretrain-mae).

Formats read by :func:`read_mae_file` (the one reader behind ``fusebench train`` and ``pretrain-mae``):

* MAE's ``misc.save_model`` checkpoints ``{'model', 'optimizer', 'epoch', 'scaler', 'args'}``: ``args`` is
  a pickled ``argparse.Namespace``, the one class allowed besides tensors (``torch.load(weights_only=True)``
  under ``torch.serialization.safe_globals``); MaeFuse's "resume" MAE is such a file;
* the official MAE files (``{'model': ...}``), bare state dicts and safetensors (fusebench's own files);
* fusebench MaeFuse files (``backbone.*``) and official MaeFuse checkpoints (``model1.*``): their MAE part;
* timm ViT state dicts (``timm.create_model("vit_large_patch16_224.mae")``; a ``timm:NAME`` weights name
  fetches one through timm): timm keeps the official names, so only the cls token and the position table
  are dropped, as for the official files.

:func:`mae_state_from_checkpoint` maps a state dict onto
:class:`~fusebench.methods.mae.backbone.MaskedAutoencoder`: cls token and position tables are dropped
(ours are fixed sin-cos, regenerated per grid); everything else must match exactly. Nothing is cut to fit:
a decoder of another depth than the model's is refused naming both depths, and an encoder-only file is
refused where a decoder is needed (fusion decodes with it) unless a decoder file is given; the messages say
how to get one (``fusebench pretrain-mae --decoder-only``, as MaeFuse made its "resume" MAE). Missing,
unexpected and mis-shaped keys are listed.
Hashes: the MAE README gives md5 prefixes for the encoder-only files only; nothing else is invented.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fusebench.files import atomic_write
from fusebench.methods.base import WeightsError, read_state_dict
from fusebench.methods.mae.backbone import MAE_ARCHS, MaskedAutoencoder

_MAE_PAPER = "arXiv:2111.06377"
_MAE_ORIGIN = "https://github.com/facebookresearch/mae"
_MAE_LICENSE = "CC-BY-NC-4.0"
_URL = "https://dl.fbaipublicfiles.com/mae/{kind}/{name}.pth"
_MAEFUSE_ORIGIN = "https://github.com/Henry-Lee-real/MaeFuse"
#: the weights name of MaeFuse's "resume" MAE (Google Drive), the default start of ``train --method maefuse``
RESUME_MAE = "maefuse_resume_mae"
TIMM_PREFIX = "timm:"
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
    gdrive_id: str | None = None  # a public Google Drive file (fetched with download_google_drive)
    filename: str | None = None  # cache file name under $FUSEBENCH_HOME/weights (default: the URL's)
    size: int | None = None  # bytes, when known

    @property
    def source_url(self) -> str | None:
        """Where a person downloads the file."""
        if self.gdrive_id:
            from fusebench.download import gdrive_url

            return gdrive_url(self.gdrive_id)
        return self.url


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
        MaeWeights(
            name=RESUME_MAE,
            arch="large",
            gdrive_id="16YnXfUeqBbSprhWV1OygriAsr2y9cCcf",
            filename=f"{RESUME_MAE}.pth",
            license="not stated in the MaeFuse repository; the encoder derives from MAE (CC-BY-NC-4.0)",
            origin_url=_MAEFUSE_ORIGIN,
            paper="doi:10.1109/TIP.2025.3541562 (MaeFuse); arXiv:2111.06377 (MAE)",
            notes="MaeFuse's 'resume' MAE ('Pre-train Weight for MAE (resume)'): the official MAE ViT-L encoder, "
            "frozen, and a 4-block 512-d decoder retrained on full unmasked 640x640 natural images "
            "(mae_vit_large_patch16_decoder4_640; MAE misc.save_model format, about 1.3 GB). MaeFuse's own "
            "starting point for fusion training; size and hash are not published",
        ),
    )
}


def read_checkpoint(path: Path) -> dict[str, Tensor]:
    """State dict of a safetensors file or torch checkpoint (argparse args allowed, nothing else pickled)."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return read_state_dict(path)


@dataclass
class MaeFile:
    """One MAE weights source, read once: its state dict in the official names and where it came from."""

    state: dict[str, Tensor]
    source: str
    path: Path | None = None
    cfg: MaeWeights | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def decoder_depth(self) -> int:
        """Number of decoder blocks in the file (0: an encoder-only file)."""
        return len({i for k in self.state if (i := _decoder_index(k)) is not None})

    @property
    def has_decoder(self) -> bool:
        return any(k.startswith("decoder_") for k in self.state)

    @property
    def has_encoder(self) -> bool:
        return any(is_encoder_key(k) for k in self.state)


def mae_part(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str | None]:
    """The MAE inside a state dict and what it was: a MaeFuse file's ``backbone.*``, an official MaeFuse
    checkpoint's ``model1.*``, or (None) the state itself. timm ViTs keep the official MAE names; a timm
    model made with a classifier (``head.*``, ``fc_norm.*``) is not an MAE and fails on those keys."""
    for prefix, what in (("model1.", "official MaeFuse checkpoint (model1.*)"), ("backbone.", "MaeFuse file")):
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, what
    return dict(state), None


def read_mae_file(source: str | Path | Mapping[str, Tensor] | MaeFile, progress: bool = True) -> MaeFile:
    """Read MAE weights from a registered name, a ``timm:NAME``, a file, or a state dict (see module doc).

    Raises:
        WeightsError: unknown name, missing, truncated or unreadable file.
        fusebench.download.DownloadError: a registered file is not cached and cannot be fetched (the
            message names the URL and the cache path to put the file at).
    """
    if isinstance(source, MaeFile):
        return source
    if isinstance(source, Mapping):
        return MaeFile(mae_part(source)[0], "state dict")
    if str(source).startswith(TIMM_PREFIX):
        return _read_timm(str(source)[len(TIMM_PREFIX):])
    path, cfg = resolve_weights(source, progress=progress)
    state, what = mae_part(read_checkpoint(path))
    name = f"{cfg.name} ({path})" if cfg is not None else f"{path} ({what})" if what else str(path)
    return MaeFile(state, name, path, cfg)


def _read_timm(name: str) -> MaeFile:
    """A timm ViT's weights (downloaded by timm into its cache), e.g. ``vit_large_patch16_224.mae``."""
    import timm

    try:
        model = timm.create_model(name, pretrained=True, num_classes=0)
    except Exception as exc:  # unknown name, no network, missing hub package: timm's message says which
        raise WeightsError(f"timm could not provide {name!r}: {exc}") from exc
    return MaeFile(mae_part(model.state_dict())[0], f"timm {name}")


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
    """A local path (or a file shipped in ``fusebench/weights``) as is; a registered name -> its packaged
    file or its cached download in ``$FUSEBENCH_HOME/weights`` (fetched on first use)."""
    if str(name_or_path) not in DEFAULT_CFGS:
        path = Path(name_or_path)
        if path.name == str(name_or_path) and (WEIGHTS_DIR / path.name).is_file():
            path = WEIGHTS_DIR / path.name  # a bare file name of fusebench's shipped weights
        if not path.is_file():
            raise WeightsError(
                f"{path}: weights file not found, and not a known MAE weights name "
                f"({', '.join(DEFAULT_CFGS)}, or {TIMM_PREFIX}<timm model name>)"
            )
        return path, None
    cfg = DEFAULT_CFGS[str(name_or_path)]
    if cfg.file is not None:
        return WEIGHTS_DIR / cfg.file, cfg
    from fusebench.download import download_file, download_google_drive, fusebench_home

    dest = fusebench_home() / "weights" / (cfg.filename or Path(str(cfg.url)).name)
    if cfg.gdrive_id:
        return download_google_drive(cfg.gdrive_id, dest, size=cfg.size, sha256=cfg.sha256, progress=progress), cfg
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


def arch_of(model: MaskedAutoencoder) -> str:
    """The ``MAE_ARCHS`` name of a model's encoder size (for commands in messages); "large" if none fits."""
    for name, spec in MAE_ARCHS.items():
        if (spec.embed_dim, spec.depth, spec.patch_size) == (model.embed_dim, len(model.blocks), model.patch_size):
            return name
    return "large"


def _big(arch: str) -> str:
    """Settings of the ViT sizes that need a GPU, as MaeFuse trained (640 px crops)."""
    return "" if arch in ("compact", "test") else " --crop 640 --set grad_checkpointing=true --device cuda"


def no_decoder_message(source: str, model: MaskedAutoencoder, method: str = "maefuse") -> str:
    """Why an encoder-only file cannot be used where the decoder matters, and the two ways forward."""
    arch, depth = arch_of(model), len(model.decoder_blocks)
    name = Path(source.split(" (")[0]).stem or "enc"
    return (
        f"{source}: holds an MAE encoder only (no decoder), but {method} decodes the fused tokens with the MAE "
        f"decoder ({depth} blocks): a random decoder would make noise. Either give a decoder trained for this "
        f"encoder:\n  fusebench train --method {method} ... --set backbone_weights={source.split(' (')[0]} "
        f"--set decoder_weights=<file with a {depth}-block decoder>\nor train one first on the frozen encoder "
        f"(full unmasked images, as MaeFuse made its 'resume' MAE):\n  fusebench pretrain-mae --arch {arch} "
        f"--init {source.split(' (')[0]} --decoder-only{_big(arch)} --data <image folder> "
        f"--out runs/mae/{name}_dec{depth}\n"
        f"  fusebench train --method {method} ... --set backbone_weights=runs/mae/{name}_dec{depth}/mae.safetensors"
        + (f"\n(or start from {RESUME_MAE}, MaeFuse's own encoder + 4-block decoder)" if arch == "large" else "")
    )


def depth_message(source: str, file_depth: int, model: MaskedAutoencoder, method: str = "maefuse") -> str:
    """Why a decoder of another depth is refused (never truncated), and what to do instead."""
    arch, depth = arch_of(model), len(model.decoder_blocks)
    path = source.split(" (")[0]
    return (
        f"{source}: its decoder has {file_depth} blocks, this {method} model's decoder has {depth}; a decoder is "
        f"not cut or padded to fit (its blocks were trained as a whole, never {min(depth, file_depth)} alone). "
        f"Train a {depth}-block decoder on the file's frozen encoder first:\n  fusebench pretrain-mae --arch "
        f"{arch} --init {path} --decoder-only{_big(arch)} --data <image folder> --out runs/mae/dec{depth}\nthen use "
        f"--set backbone_weights=runs/mae/dec{depth}/mae.safetensors"
        + (f" (or start from {RESUME_MAE}, MaeFuse's own encoder + 4-block decoder)" if arch == "large" else "")
    )


def mae_state_from_checkpoint(
    state: dict[str, Tensor],
    model: MaskedAutoencoder,
    *,
    source: str = "checkpoint",
    encoder_only: bool = False,
    decoder_only: bool = False,
    method: str = "maefuse",
) -> dict[str, Tensor]:
    """Map an official-layout MAE state dict onto ``model``'s keys, or raise WeightsError saying why not.

    Drops ``cls_token`` and the position tables and, with ``encoder_only`` (``decoder_only``), all decoder
    (encoder) keys. A file without a decoder, or with a decoder of another depth than the model's, is
    refused when the decoder is wanted (see :func:`no_decoder_message`, :func:`depth_message`). The rest
    must match ``model`` key for key and shape for shape; problems are listed.
    """
    depth = len(model.decoder_blocks)
    own = model.state_dict()
    encoder_fits = all(v.shape == own[k].shape for k, v in state.items() if is_encoder_key(k) and k in own)
    if not encoder_only and encoder_fits:  # (an encoder of another size: the listed shapes say it best)
        file = MaeFile(state, source)
        if not file.has_decoder and file.has_encoder:
            raise WeightsError(no_decoder_message(source, model, method))
        if file.decoder_depth and file.decoder_depth != depth:
            raise WeightsError(depth_message(source, file.decoder_depth, model, method))

    def wanted(key: str) -> bool:
        return not (encoder_only and not is_encoder_key(key)) and not (decoder_only and is_encoder_key(key))

    kept = {k: v for k, v in state.items() if k not in _DROPPED and wanted(k)}
    needed = [k for k in own if k not in _OPTIONAL and wanted(k)]
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
            parts.append(f"missing keys {_listed(missing)}")
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


def _same_encoder(encoder: MaeFile, decoder: MaeFile) -> None:
    """A separate decoder must come with (or without) the very encoder it was trained for."""
    for key, theirs in decoder.state.items():
        ours = encoder.state.get(key)
        if not is_encoder_key(key) or ours is None:
            continue
        low = theirs.dtype if theirs.element_size() <= ours.element_size() else ours.dtype
        if ours.shape != theirs.shape or not torch.equal(ours.to(low), theirs.to(low)):
            raise WeightsError(
                f"{decoder.source}: its decoder was trained on another encoder than {encoder.source} ({key} "
                "differs); use the decoder file's own encoder (--set backbone_weights=<that file>), or train a "
                "decoder for this encoder with `fusebench pretrain-mae --init <encoder> --decoder-only`"
            )


def load_mae_file(
    model: MaskedAutoencoder,
    file: MaeFile,
    *,
    encoder_only: bool = False,
    decoder: MaeFile | None = None,
    method: str = "maefuse",
) -> MaskedAutoencoder:
    """Fill ``model`` from a read file (see :func:`load_mae_weights`)."""
    if decoder is not None and not encoder_only:
        _same_encoder(file, decoder)
        dec = MaeFile({k: v for k, v in decoder.state.items() if not is_encoder_key(k)}, decoder.source)
        if not dec.has_decoder:
            raise WeightsError(f"{decoder.source}: given as the decoder, but it holds no MAE decoder")
        state = mae_state_from_checkpoint(file.state, model, source=file.source, encoder_only=True)
        state |= mae_state_from_checkpoint(dec.state, model, source=dec.source, decoder_only=True, method=method)
    else:
        state = mae_state_from_checkpoint(
            file.state, model, source=file.source, encoder_only=encoder_only, method=method
        )
    model.load_state_dict(state, strict=False)
    model.pretrained_cfg = file.cfg
    model.weights_files = [f.path for f in (file, decoder) if f is not None and f.path is not None]
    return model


def load_mae_weights(
    model: MaskedAutoencoder,
    name_or_path: str | Path | Mapping[str, Tensor],
    *,
    encoder_only: bool = False,
    decoder: str | Path | Mapping[str, Tensor] | None = None,
    method: str = "maefuse",
    progress: bool = True,
) -> MaskedAutoencoder:
    """Load MAE weights (by name, downloaded once into ``$FUSEBENCH_HOME/weights``), a file or a state dict.

    Args:
        model: the MAE to fill (its size must match the file's).
        name_or_path: a key of ``DEFAULT_CFGS`` (e.g. ``"maefuse_resume_mae"``, ``"mae_compact"``), a
            ``timm:NAME`` (e.g. ``"timm:vit_large_patch16_224.mae"``), a ``.pth``/``.pt`` (any format of
            :func:`read_mae_file`) or ``.safetensors`` file, or a state dict.
        encoder_only: load only the encoder (the decoder keeps its values).
        decoder: take the decoder from this source instead (for an encoder-only ``name_or_path``); its own
            encoder keys, if any, must equal the encoder's.
        method: the fusion method named in the commands of refusal messages.
        progress: download progress bar.

    Raises:
        WeightsError: unreadable/truncated file, wrong md5, no decoder or a decoder of another depth while
            the decoder is wanted, or keys/shapes that do not fit (all listed).
        fusebench.download.DownloadError: the file is not cached and cannot be fetched.
    """
    file = read_mae_file(name_or_path, progress=progress)
    extra = read_mae_file(decoder, progress=progress) if decoder is not None else None
    return load_mae_file(model, file, encoder_only=encoder_only, decoder=extra, method=method)


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
