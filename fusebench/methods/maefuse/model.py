"""MaeFuse (Li, Jiang, Liang, Ma; "MaeFuse: Transferring Omni Features with Pretrained Masked Autoencoders for
Infrared and Visible Image Fusion via Guided Training", IEEE TIP 2025, arXiv 2404.11016) and its baselines.

Official code: github.com/Henry-Lee-real/MaeFuse. Pipeline: both images through one frozen MAE encoder,
the CFM/MFM fusion layer on the tokens (:mod:`.fusion`), the MAE decoder, luma of the decoded RGB.
What differs from the official code: the fusion layer attends over tokens (the paper's design; the
official module attends over the batch), any input size is padded to the patch grid instead of warped to
640x640, and a compact CPU-trainable variant is shipped. Baselines on the same backbone (paper Fig. 1 and
Sec. 4.4): ``mae-mean``, ``mae-crossattn`` and ``maefuse-irguide``. Full account: ``docs/maefuse.md``.

Positions: a fusion layer only ever saw the patch positions of its training (``trained_grid``, recorded in
the variant's cfg and in every weights file fusebench writes). An input whose patch grid exceeds it is fused
in overlapping windows of at most that grid, each with positions from (0, 0), blended with linear ramps
(``large_input="tile"``, default), or resized to fit (``"warp"``), or refused (``"error"``); so no fused
image depends on positions the model never saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fusebench.color import luminance
from fusebench.files import atomic_write, sha256_file
from fusebench.methods.base import (
    FusionMethod,
    WeightsError,
    check_pair_tensors,
    read_state_dict,
    register_method,
)
from fusebench.methods.mae import MAE_ARCHS, MaskedAutoencoder, build_mae, from_mae_output, to_mae_input
from fusebench.methods.mae.checkpoints import RESUME_MAE, load_mae_weights
from fusebench.methods.mae.preprocess import denormalize
from fusebench.methods.maefuse.fusion import FusionLayer, Guide
from fusebench.methods.maefuse.train import GuidedConfig, train_guided
from fusebench.training import autocast

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
PAPER = "doi:10.1109/TIP.2025.3541562 (arXiv 2404.11016)"
#: maefuse-compact's shipped file: its own copy of the MAE it was trained with (fp16; the final mae_compact)
#: + the fusion layer (fp16)
COMPACT_FILE = "maefuse_compact.safetensors"
OFFICIAL_WEIGHTS_URL = "https://drive.google.com/file/d/18N6tn78VztQOvobVWu6J-RJHo3jsBKkk"
#: the patch grid the released MaeFuse was trained and run at (640 x 640 warps, patch 16)
OFFICIAL_GRID = (40, 40)
LARGE_INPUT_MODES = ("tile", "warp", "error")


def _cfg(**kw: Any) -> dict[str, Any]:
    """Family defaults: where the weights come from and how they were made."""
    return {
        "arch": "large", "guide": "cfm", "mfm": "separate", "trained_grid": None, "large_input": "tile",
        "file": None, "backbone": None, "train_backbone": None, "sha256": None,
        "url": None, "license": None, "origin_url": "https://github.com/Henry-Lee-real/MaeFuse",
        "paper": PAPER, "notes": "", **kw,
    }


default_cfgs: dict[str, dict[str, Any]] = {
    "maefuse": _cfg(train_backbone=RESUME_MAE,
                    notes="ViT-L/16. No fusebench-trained weights are published: train with `fusebench train "
                    "--method maefuse` (from MaeFuse's 'resume' MAE by default), or use maefuse-compact."),
    "maefuse-base": _cfg(arch="base", notes="ViT-B/16; train with `fusebench train --method maefuse-base`."),
    "maefuse-compact": _cfg(
        arch="compact", mfm="joint", trained_grid=(40, 40), file=COMPACT_FILE, backbone=COMPACT_FILE,
        train_backbone=COMPACT_FILE, sha256="4814e112c4098771bc80287b1473ccd4ab515942dda938e782ff1b94df8e3329",
        license="MIT", origin_url="fusebench", notes="CPU-scale weights made here: the final mae_compact backbone "
        "(copied in), fusion layer guided-trained on MSRS/LLVIP/RoadScene train pairs with position-shifted crops "
        "and the content alignment loss (about 25 CPU-minutes). Blurry, 16-px grid artefacts; far below the "
        "paper's ViT-L. Recipe and scores: maefuse_compact.json / .md"),
    "maefuse-test": _cfg(arch="test", notes="tiny random model for tests"),
    "mae-mean": _cfg(arch="compact", guide="mean", backbone=COMPACT_FILE,
                     notes="paper Fig. 1(a): mean of the two token maps, decoded; no training"),
    "mae-crossattn": _cfg(arch="compact", mfm="joint", trained_grid=(40, 40),
                          file="maefuse_compact.crossattn.safetensors", backbone=COMPACT_FILE,
                          sha256="097877e1bc37292e3e27f8a6450662e9403f632d484011c9e91e68a2911906d9",
                          train_backbone=COMPACT_FILE, license="MIT", origin_url="fusebench",
                          notes="paper Fig. 1(b): the fusion layer trained directly with the fusion loss, no "
                          "alignment, for as many fusion-loss steps as maefuse-compact; see maefuse_compact.json"),
    "maefuse-irguide": _cfg(arch="compact", guide="ir", mfm="joint", trained_grid=(40, 40), file=COMPACT_FILE,
                            backbone=COMPACT_FILE, train_backbone=COMPACT_FILE,
                            notes="paper Sec. 4.4: infrared tokens replace the CFM output as the MFM guide; "
                            "by default maefuse-compact's weights (trained with the CFM guide); train the MFM "
                            "for the IR guide with `fusebench train --method maefuse-irguide`"),
}


TRAINABLE = ("maefuse", "maefuse-base", "maefuse-compact", "maefuse-test", "mae-crossattn", "maefuse-irguide")


class MaeFuse(FusionMethod):
    """MAE encoder -> fusion layer (or token mean when ``fusion is None``) -> MAE decoder -> luma."""

    trainable = True

    def __init__(self, mae: MaskedAutoencoder, fusion_layer: FusionLayer | None, precision: str = "fp32",
                 **cfg: Any) -> None:
        super().__init__(precision=precision, **cfg)
        self.backbone = mae
        self.fusion = fusion_layer
        self.precision = precision
        self.backbone.requires_grad_(False)

    # -- the pipeline, in pieces the trainer reuses ----------------------------------------------------
    def encode_pair(self, ir: Tensor, vi: Tensor, offset: tuple[int, int] = (0, 0),
                    ) -> tuple[Tensor, Tensor, tuple[int, int], tuple[int, int]]:
        """Both modalities through the encoder in one batch: (phi_v, phi_i, patch grid, image size).

        ``offset`` (rows, cols) shifts the position tables, so a training crop stands in for a patch-grid
        window anywhere in a large image (as in the backbone's pre-training); inference uses (0, 0).
        """
        x, size = to_mae_input(torch.cat([vi, ir]), self.backbone.patch_size)
        p = self.backbone.patch_size
        if offset == (0, 0):
            tokens = self.backbone.encode(x)
        else:
            embedded, _ = self.backbone.embed(x, offset)
            tokens = self.backbone.norm(self.backbone._run(self.backbone.blocks, embedded))
        phi_v, phi_i = tokens.chunk(2)
        return phi_v, phi_i, (x.shape[-2] // p, x.shape[-1] // p), size

    def fuse_tokens(self, phi_v: Tensor, phi_i: Tensor, grid: tuple[int, int], cfm_only: bool = False,
                    offset: tuple[int, int] = (0, 0)) -> Tensor:
        """Phi_F (or Phi_D with ``cfm_only``); the token mean for the ``mae-mean`` baseline."""
        if self.fusion is None:
            return (phi_v + phi_i) / 2
        pos = self.backbone.pos_embed(self.backbone.embed_dim, grid, phi_v.device, offset)[0].to(phi_v.dtype)
        return self.fusion(phi_v, phi_i, pos, cfm_only=cfm_only)

    def decode_luma(self, tokens: Tensor, grid: tuple[int, int], size: tuple[int, int],
                    offset: tuple[int, int] = (0, 0)) -> Tensor:
        """Decoded luma (N, 1, H, W), *not* clamped, so fusion losses get gradients everywhere."""
        decoded = self.backbone.unpatchify(self.backbone.decode_tokens(tokens, grid, offset), grid)
        rgb = denormalize(decoded.float())
        return luminance(rgb[..., : size[0], : size[1]])

    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        check_pair_tensors(ir, vi)
        if vi.shape[1] != 1:
            raise ValueError(f"Expected visible luminance (N, 1, H, W). Got {tuple(vi.shape)}.")
        size = (ir.shape[-2], ir.shape[-1])
        p = self.backbone.patch_size
        grid = (-(-size[0] // p), -(-size[1] // p))
        limit = self.trained_grid
        with torch.no_grad(), autocast(ir.device, self.precision):
            if limit is None or (grid[0] <= limit[0] and grid[1] <= limit[1]):
                return from_mae_output(self._decode(ir, vi).float(), size)
            mode = self.cfg.get("large_input", "tile")
            if mode == "error":
                raise ValueError(
                    f"input of {size[1]}x{size[0]} px is a {grid[0]}x{grid[1]} patch grid, larger than the "
                    f"{limit[0]}x{limit[1]} grid this model was trained on; set large_input='tile' (windows of the "
                    "trained grid, blended) or 'warp' (resize to fit), or train with larger positions"
                )
            if mode == "warp":
                scale = min(limit[0] * p / size[0], limit[1] * p / size[1])
                small = (max(1, int(size[0] * scale)), max(1, int(size[1] * scale)))
                ir_s, vi_s = (F.interpolate(t, size=small, mode="bilinear", align_corners=False, antialias=True)
                              for t in (ir, vi))
                luma = from_mae_output(self._decode(ir_s, vi_s).float(), small)
                return F.interpolate(luma, size=size, mode="bicubic", align_corners=False).clamp(0.0, 1.0)
            return from_mae_output(self._decode_tiled(ir, vi, limit).float(), size)

    @property
    def trained_grid(self) -> tuple[int, int] | None:
        """The largest patch grid (rows, cols) the fusion layer was trained on; None: no limit (no layer)."""
        grid = self.cfg.get("trained_grid")
        if self.fusion is None or grid is None:
            return None
        return int(grid[0]), int(grid[1])

    def _decode(self, ir: Tensor, vi: Tensor) -> Tensor:
        """One pass at positions from (0, 0): the decoded (N, 3, Hp, Wp) image, ImageNet-normalised."""
        phi_v, phi_i, grid, _ = self.encode_pair(ir, vi)
        return self.backbone.decode(self.fuse_tokens(phi_v, phi_i, grid), grid)

    def _decode_tiled(self, ir: Tensor, vi: Tensor, limit: tuple[int, int]) -> Tensor:
        """Overlapping windows of at most ``limit`` patches, each fused alone (positions from (0, 0)), blended
        with linear ramps over the overlaps (none at the image border); the padded, decoded image."""
        p = self.backbone.patch_size
        ir_p, vi_p = _pad_to_patch(ir, p), _pad_to_patch(vi, p)
        grid = (ir_p.shape[-2] // p, ir_p.shape[-1] // p)
        out = ir_p.new_zeros(ir_p.shape[0], 3, *ir_p.shape[-2:])
        weight = ir_p.new_zeros(1, 1, *ir_p.shape[-2:])
        rows, cols = (_tile_starts(g, min(g, t)) for g, t in zip(grid, limit))
        wh, ww = min(grid[0], limit[0]), min(grid[1], limit[1])
        for r in rows:
            for c in cols:
                win = (slice(None), slice(None), slice(r * p, (r + wh) * p), slice(c * p, (c + ww) * p))
                ramp = (_ramp(wh * p, max(1, wh // 4) * p, r > 0, r + wh < grid[0], ir.device)[:, None]
                        * _ramp(ww * p, max(1, ww // 4) * p, c > 0, c + ww < grid[1], ir.device)[None])
                out[win] += self._decode(ir_p[win], vi_p[win]).float() * ramp
                weight[win] += ramp
        return out / weight

    # -- weights: the fusion layer always, backbone parts only when trained ----------------------------
    def trained_state(self, parts: Iterable[str]) -> dict[str, Tensor]:
        """State-dict entries whose key starts with one of ``parts`` (e.g. ``fusion.``, ``backbone.decoder``)."""
        prefixes = tuple(parts)
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}

    def save_weights(self, path: str | Path, parts: Iterable[str] = ("fusion.", "backbone."),
                     meta: dict[str, Any] | None = None) -> None:
        """Save the chosen parts as safetensors; ``meta`` (JSON-able) goes into the file's metadata."""
        from safetensors.torch import save

        tensors = {k: v.detach().contiguous().cpu() for k, v in self.trained_state(parts).items()}
        header = {"method": self.name, "cfg": json.dumps(self.cfg, default=str), **{
            k: json.dumps(v, default=str) for k, v in (meta or {}).items()}}
        with atomic_write(path, "wb") as handle:
            handle.write(save(tensors, metadata=header))

    def load_weights(self, path: str | Path, strict: bool = True) -> None:
        """Load a full or partial file: every ``fusion.*`` key is required, backbone keys are optional.

        Official MaeFuse checkpoints (``model1.*``/``model2.*``) are converted by :func:`checkpoint_filter_fn`.
        """
        path = Path(path)
        state = read_state_dict(path)
        if any(k.startswith(("model1.", "model2.")) for k in state):
            state = checkpoint_filter_fn(state)
        own = self.state_dict()
        self.check_state_fits(state, path, required={k for k in own if k.startswith("fusion.")}, strict=strict)
        self.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


class MaeFuseBaseline(MaeFuse):
    """A variant with nothing of its own to train (``mae-mean``, ``maefuse-irguide``)."""

    trainable = False


def checkpoint_filter_fn(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Official ``ConnectModel_MAE_Fuion`` keys -> fusebench keys.

    ``model1.X`` (the 640 MAE) -> ``backbone.X``; ``model2.X`` (``cross_fusion``) -> ``fusion.X``, whose names
    match. The fixed sin-cos tables (``pos_embed``, ``decoder_pos_embed``, ``model2.pos_embed``) are dropped:
    fusebench regenerates them for each patch grid.
    """
    fixed = ("pos_embed", "decoder_pos_embed")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if rest in fixed or head not in ("model1", "model2"):
            continue
        out[("backbone." if head == "model1" else "fusion.") + rest] = value
    return out


def _weights_path(name: str | None) -> Path | None:
    return WEIGHTS_DIR / name if name else None


def _pad_to_patch(x: Tensor, patch: int) -> Tensor:
    """Bottom/right padding to a multiple of ``patch``, as :func:`to_mae_input` pads (reflect, else replicate)."""
    size = (x.shape[-2], x.shape[-1])
    pad_h, pad_w = -size[0] % patch, -size[1] % patch
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if pad_h < size[0] and pad_w < size[1] else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def _tile_starts(grid: int, window: int) -> list[int]:
    """Window starts (in patches) covering ``grid`` with overlaps of at least a quarter window."""
    if grid <= window:
        return [0]
    stride = max(1, window - max(1, window // 4))
    n = -(-(grid - window) // stride) + 1
    return sorted({round(k * (grid - window) / (n - 1)) for k in range(n)})


def _ramp(length: int, overlap: int, rise: bool, fall: bool, device: torch.device) -> Tensor:
    """1-D blending weight: linear from ~0 to 1 over ``overlap`` px at a side shared with another window."""
    x = torch.arange(length, device=device, dtype=torch.float32) + 0.5
    w = torch.ones(length, device=device)
    if rise:
        w = torch.minimum(w, x / overlap)
    if fall:
        w = torch.minimum(w, (length - x) / overlap)
    return w


def weights_training_cfg(path: str | Path) -> dict[str, Any]:
    """``mfm`` and ``trained_grid`` recorded in a weights file, for building the model that runs it.

    fusebench files carry the model cfg (and the training record) in their safetensors metadata; files
    written before these keys existed were all trained with the joint MFM on crops with positions shifted by
    up to ``max_pos_offset`` patches. Official MaeFuse checkpoints (``model1.*``/``model2.*``) were trained
    at 640 x 640 with the two-attention MFM. Anything else: nothing known, nothing returned.
    """
    path = Path(path)
    out: dict[str, Any] = {}
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "pt") as handle:
                meta = handle.metadata() or {}
        except (SafetensorError, OSError):  # unreadable files get their clear error from read_state_dict
            return out
        cfg = json.loads(meta["cfg"]) if "cfg" in meta else {}
        record = json.loads(meta["training"]) if "training" in meta else {}
        if "mfm" in cfg:
            out["mfm"] = cfg["mfm"]
        elif record:
            out["mfm"] = "joint"
        if cfg.get("trained_grid"):
            out["trained_grid"] = tuple(cfg["trained_grid"])
        elif record:
            out["trained_grid"] = trained_grid_of(record)
    elif path.suffix in (".pth", ".pt") and path.is_file():
        keys = read_state_dict(path).keys()
        if any(k.startswith("model2.") for k in keys):
            out = {"mfm": "separate", "trained_grid": OFFICIAL_GRID}
    return out


def trained_grid_of(record: dict[str, Any], patch: int = 16) -> tuple[int, int]:
    """The patch grid (rows, cols) a training record's batches covered: the warp size, or the crop grid
    shifted by up to ``max_pos_offset`` patches."""
    if record.get("warp_size"):
        side = -(-int(record["warp_size"]) // patch)
        return side, side
    crop = -(-int(record.get("patch_size", 224)) // patch)
    side = max(crop, int(record.get("max_pos_offset", 0) or 0))
    return side, side


def _build(variant: str, precision: str = "fp32", **overrides: Any) -> MaeFuse:
    """The architecture of a variant from ``default_cfgs``, randomly initialised."""
    cfg = {**default_cfgs[variant], **overrides}
    spec = MAE_ARCHS[cfg["arch"]]
    if cfg["large_input"] not in LARGE_INPUT_MODES:
        raise ValueError(f"large_input must be one of {', '.join(LARGE_INPUT_MODES)}, got {cfg['large_input']!r}")
    fusion = None if cfg["guide"] == "mean" else FusionLayer(spec.embed_dim, spec.num_heads, spec.mlp_ratio,
                                                              guide=_guide(cfg["guide"]), mfm=cfg["mfm"])
    cls = MaeFuse if variant in TRAINABLE else MaeFuseBaseline
    return cls(build_mae(cfg["arch"]), fusion, precision=precision, variant=variant, **cfg)


def _load_backbone(model: MaeFuse, name_or_path: str | Path, decoder: str | Path | None = None) -> None:
    """Load MAE weights into ``model.backbone`` with the MAE family's one reader: an MAE weights name (e.g.
    ``maefuse_resume_mae``, downloaded on first use) or ``timm:NAME``, any MAE file (MAE's ``checkpoint-N.pth``
    with pickled args, the official files, safetensors), a MaeFuse file's ``backbone.*`` part, or an official
    MaeFuse checkpoint's ``model1.*`` part. An encoder-only file needs ``decoder`` (a file whose decoder was
    trained for it); a decoder of another depth is refused; the messages say what to do.
    """
    load_mae_weights(model.backbone, name_or_path, decoder=decoder, method=model.cfg.get("variant", "maefuse"))
    files = model.backbone.weights_files
    model.cfg["backbone_sha256"] = sha256_file(files[0]) if files else None
    if decoder is not None:
        model.cfg["decoder_sha256"] = sha256_file(files[-1]) if len(files) > 1 else None


def _create_maefuse(variant: str, *, weights: str | Path | None = None, random_init: bool = False,
                    backbone_weights: str | Path | None = None, precision: str = "fp32",
                    **overrides: Any) -> MaeFuse:
    """Build a variant and load its weights; ``weights`` overrides the shipped fusion weights.

    ``random_init`` skips the shipped/default weights (speed tests); explicit ``weights``/``backbone_weights``
    are still loaded.
    """
    if not (weights or random_init or default_cfgs[variant]["file"] or default_cfgs[variant]["guide"] == "mean"):
        raise WeightsError(_no_weights_message(variant))  # before building a 300M-parameter model
    recorded = weights_training_cfg(weights) if weights else {}
    model = _build(variant, precision=precision, **{**recorded, **overrides})
    cfg = model.cfg
    cfg["random_init"] = random_init
    backbone = backbone_weights or (None if random_init else cfg["backbone"])
    if backbone:
        _load_backbone(model, backbone)
    fusion_path = Path(weights) if weights else None if random_init else _weights_path(cfg["file"])
    if fusion_path is not None:
        digest = sha256_file(fusion_path)
        if not weights and cfg["sha256"] and digest != cfg["sha256"]:
            raise WeightsError(f"{fusion_path}: sha256 differs from the registered {cfg['sha256'][:12]}...; "
                               "the shipped file was changed, reinstall fusebench")
        model.load_weights(fusion_path)
        cfg["weights_sha256"] = digest
        cfg["weights"] = str(fusion_path)
    return model


def create_for_training(variant: str, cfg: GuidedConfig) -> MaeFuse:
    """A variant ready for guided training: pretrained backbone, fresh (or ``init_weights``) fusion layer."""
    defaults = default_cfgs[variant]
    backbone = cfg.backbone_weights or defaults["train_backbone"]
    decoder = getattr(cfg, "decoder_weights", None)
    if not backbone and defaults["arch"] != "test":
        raise WeightsError(
            f"training '{variant}' needs pretrained MAE backbone weights (encoder + decoder): pass --set "
            f"backbone_weights=NAME_OR_PATH (the output of `fusebench pretrain-mae --arch {defaults['arch']}`, "
            "maefuse_resume_mae for ViT-L, or an encoder-only MAE file such as "
            f"mae_pretrain_vit_{defaults['arch']} with --set decoder_weights=FILE)"
        )
    if decoder and not backbone:
        raise WeightsError("decoder_weights is given without backbone_weights: name the encoder's file too")
    model = _build(variant, precision=cfg.precision)
    if backbone:
        _load_backbone(model, backbone, decoder)
    if cfg.init_weights:
        model.load_weights(cfg.init_weights)
    return model


def _guide(name: str) -> Guide:
    if name not in ("cfm", "ir"):
        raise ValueError(f"guide must be 'cfm', 'ir' or 'mean', got {name!r}")
    return name  # type: ignore[return-value]


def _no_weights_message(variant: str) -> str:
    return (
        f"method '{variant}' has no trained fusion weights. Train them with `fusebench train --method {variant} "
        f"--dataset msrs --split train --set backbone_weights=<MAE weights>` and run with --weights "
        f"<run>/{variant}.safetensors; use --set random_init=true for speed tests (the rows are marked as random "
        f"weights); or use 'maefuse' (the released MaeFuse weights, downloaded on first use from "
        f"{OFFICIAL_WEIGHTS_URL}) or the CPU-ready 'maefuse-compact'."
    )


def _trainer(variant: str):
    return partial(train_guided, variant)


# options of fusebench's paper computation that the released computation does not have
_PAPER_ONLY = ("backbone_weights", "large_input", "mfm")


def _create_maefuse_default(*, weights: str | Path | None, random_init: bool, computation: str | None,
                            **options: Any) -> Any:
    """``maefuse``: the released checkpoint run the released way unless ``weights`` (a model trained here) or
    ``random_init`` ask for fusebench's paper computation; ``computation`` (released / paper) overrides.

    The cfg records ``computation`` and ``weights_source`` (released / file / random), and goes into every
    run summary.
    """
    computation = computation or ("paper" if weights or random_init else "released")
    if computation == "released":
        from fusebench.methods.maefuse_official import _create_maefuse_official

        paper_only = sorted(k for k, v in options.items() if k in _PAPER_ONLY and v is not None)
        if paper_only:
            raise ValueError(f"method 'maefuse': --set {paper_only[0]}=... applies to --set computation=paper only")
        options = {k: v for k, v in options.items() if k not in _PAPER_ONLY}
        return _create_maefuse_official(weights=weights, random_init=random_init, variant="maefuse", **options)
    if computation != "paper":
        raise ValueError(f"method 'maefuse': computation must be 'released' or 'paper', got {computation!r}")
    for key in ("warp", "output_format", "progress"):
        if options.pop(key, None) not in (None, 640, "png", True):
            raise ValueError(f"method 'maefuse': --set {key}=... applies to --set computation=released only")
    options = {k: v for k, v in options.items() if v is not None}
    model = _create_maefuse("maefuse", weights=weights, random_init=random_init, **options)
    model.cfg.update(computation="paper", weights_source="file" if weights else "random")
    return model


@register_method("maefuse", description="MaeFuse ViT-L/16: the released weights (downloaded on first use), run "
                 "as the authors' test_fusion.py; --weights runs a model trained here (paper computation)",
                 trainable=True, train=_trainer("maefuse"), paper=PAPER)
def maefuse(weights: str | Path | None = None, random_init: bool = False, computation: str | None = None,
            arch: str = "large", warp: int = 640, precision: str = "fp32", output_format: str = "png",
            backbone_weights: str | Path | None = None, large_input: str | None = None,
            mfm: str | None = None) -> Any:
    return _create_maefuse_default(weights=weights, random_init=random_init, computation=computation, arch=arch,
                                   warp=warp, precision=precision, output_format=output_format,
                                   backbone_weights=backbone_weights, large_input=large_input, mfm=mfm)


@register_method("maefuse-base", description="MaeFuse on a ViT-B/16 MAE", trainable=True,
                 train=_trainer("maefuse-base"), paper=PAPER)
def maefuse_base(**kw: Any) -> MaeFuse:
    return _create_maefuse("maefuse-base", **kw)


@register_method("maefuse-compact", description="MaeFuse with a small ViT trained here; runs on CPU",
                 trainable=True, train=_trainer("maefuse-compact"), paper=PAPER)
def maefuse_compact(**kw: Any) -> MaeFuse:
    return _create_maefuse("maefuse-compact", **kw)


@register_method("maefuse-test", description="tiny random MaeFuse for tests", trainable=True,
                 train=_trainer("maefuse-test"), paper=PAPER)
def maefuse_test(**kw: Any) -> MaeFuse:
    return _create_maefuse("maefuse-test", **{"random_init": True, **kw})


@register_method("mae-mean", description="baseline: mean of the two MAE token maps, decoded (MaeFuse Fig. 1a)",
                 paper=PAPER)
def mae_mean(**kw: Any) -> MaeFuse:
    return _create_maefuse("mae-mean", **kw)


@register_method("mae-crossattn", description="baseline: fusion layer trained without alignment (MaeFuse Fig. 1b)",
                 trainable=True, train=_trainer("mae-crossattn"), paper=PAPER)
def mae_crossattn(**kw: Any) -> MaeFuse:
    return _create_maefuse("mae-crossattn", **kw)


@register_method("maefuse-irguide", description="MaeFuse with infrared tokens in place of the CFM (Sec. 4.4)",
                 trainable=True, train=_trainer("maefuse-irguide"), paper=PAPER)
def maefuse_irguide(**kw: Any) -> MaeFuse:
    return _create_maefuse("maefuse-irguide", **kw)
