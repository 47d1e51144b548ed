"""MaeFuse (Li, Jiang, Liang, Ma; "MaeFuse: Transferring Omni Features with Pretrained Masked Autoencoders for
Infrared and Visible Image Fusion via Guided Training", IEEE TIP 2025, arXiv 2404.11016) and its baselines.

Official code: github.com/Henry-Lee-real/MaeFuse. Pipeline: both images through one frozen MAE encoder,
the CFM/MFM fusion layer on the tokens (:mod:`.fusion`), the MAE decoder, luma of the decoded RGB.
What differs from the official code: the fusion layer attends over tokens (the paper's design; the
official module attends over the batch), any input size is padded to the patch grid instead of warped to
640x640, and a compact CPU-trainable variant is shipped. Baselines on the same backbone (paper Fig. 1 and
Sec. 4.4): ``mae-mean``, ``mae-crossattn`` and ``maefuse-irguide``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

import torch
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
from fusebench.methods.mae.checkpoints import load_mae_weights, mae_state_from_checkpoint, resolve_weights
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


def _cfg(**kw: Any) -> dict[str, Any]:
    """Family defaults: where the weights come from and how they were made."""
    return {
        "arch": "large", "guide": "cfm", "file": None, "backbone": None, "train_backbone": None, "sha256": None,
        "url": None, "license": None, "origin_url": "https://github.com/Henry-Lee-real/MaeFuse",
        "paper": PAPER, "notes": "", **kw,
    }


default_cfgs: dict[str, dict[str, Any]] = {
    "maefuse": _cfg(notes="ViT-L/16. No fusebench-trained weights are published: train with `fusebench train "
                    "--method maefuse` from the MAE ViT-L backbone, or use maefuse-compact."),
    "maefuse-base": _cfg(arch="base", notes="ViT-B/16; train with `fusebench train --method maefuse-base`."),
    "maefuse-compact": _cfg(
        arch="compact", file=COMPACT_FILE, backbone=COMPACT_FILE, train_backbone=COMPACT_FILE,
        sha256="4814e112c4098771bc80287b1473ccd4ab515942dda938e782ff1b94df8e3329",
        license="MIT", origin_url="fusebench", notes="CPU-scale weights made here: the final mae_compact backbone "
        "(copied in), fusion layer guided-trained on MSRS/LLVIP/RoadScene train pairs with position-shifted crops "
        "and the content alignment loss (about 25 CPU-minutes). Blurry, 16-px grid artefacts; far below the "
        "paper's ViT-L. Recipe and scores: maefuse_compact.json / .md"),
    "maefuse-test": _cfg(arch="test", notes="tiny random model for tests"),
    "mae-mean": _cfg(arch="compact", guide="mean", backbone=COMPACT_FILE,
                     notes="paper Fig. 1(a): mean of the two token maps, decoded; no training"),
    "mae-crossattn": _cfg(arch="compact", file="maefuse_compact.crossattn.safetensors", backbone=COMPACT_FILE,
                          sha256="097877e1bc37292e3e27f8a6450662e9403f632d484011c9e91e68a2911906d9",
                          train_backbone=COMPACT_FILE, license="MIT", origin_url="fusebench",
                          notes="paper Fig. 1(b): the fusion layer trained directly with the fusion loss, no "
                          "alignment, for as many fusion-loss steps as maefuse-compact; see maefuse_compact.json"),
    "maefuse-irguide": _cfg(arch="compact", guide="ir", file=COMPACT_FILE, backbone=COMPACT_FILE,
                            notes="paper Sec. 4.4: infrared tokens replace the CFM output as the MFM guide; "
                            "maefuse-compact's weights"),
}


TRAINABLE = ("maefuse", "maefuse-base", "maefuse-compact", "maefuse-test", "mae-crossattn")


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
        with torch.no_grad(), autocast(ir.device, self.precision):
            phi_v, phi_i, grid, size = self.encode_pair(ir, vi)
            decoded = self.backbone.decode(self.fuse_tokens(phi_v, phi_i, grid), grid)
        return from_mae_output(decoded.float(), size)

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


def _build(variant: str, precision: str = "fp32", **overrides: Any) -> MaeFuse:
    """The architecture of a variant from ``default_cfgs``, randomly initialised."""
    cfg = {**default_cfgs[variant], **overrides}
    spec = MAE_ARCHS[cfg["arch"]]
    fusion = None if cfg["guide"] == "mean" else FusionLayer(spec.embed_dim, spec.num_heads, spec.mlp_ratio,
                                                              guide=_guide(cfg["guide"]))
    cls = MaeFuse if variant in TRAINABLE else MaeFuseBaseline
    return cls(build_mae(cfg["arch"]), fusion, precision=precision, variant=variant, **cfg)


def _load_backbone(model: MaeFuse, name_or_path: str | Path) -> None:
    """Load MAE weights into ``model.backbone``: a MaeFuse file's ``backbone.*`` part, an official MaeFuse
    checkpoint's ``model1.*`` part, or anything the MAE family's loader takes (an MAE weights name or file).
    """
    shipped = WEIGHTS_DIR / str(name_or_path)
    path = shipped if shipped.is_file() else Path(name_or_path)
    state = read_state_dict(path) if path.suffix in (".safetensors", ".pth", ".pt") and path.is_file() else {}
    if any(k.startswith(("backbone.", "model1.")) for k in state):
        if any(k.startswith("model1.") for k in state):
            state = checkpoint_filter_fn(state)
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        model.backbone.load_state_dict(mae_state_from_checkpoint(state, model.backbone, source=str(path)),
                                       strict=False)
    else:
        load_mae_weights(model.backbone, path if path.is_file() else name_or_path, progress=False)
        path, _ = resolve_weights(path if path.is_file() else name_or_path, progress=False)
    model.cfg["backbone_sha256"] = sha256_file(path)


def _create_maefuse(variant: str, *, weights: str | Path | None = None, random_init: bool = False,
                    backbone_weights: str | Path | None = None, precision: str = "fp32",
                    **overrides: Any) -> MaeFuse:
    """Build a variant and load its weights; ``weights`` overrides the shipped fusion weights.

    ``random_init`` skips the shipped/default weights (speed tests); explicit ``weights``/``backbone_weights``
    are still loaded.
    """
    if not (weights or random_init or default_cfgs[variant]["file"] or default_cfgs[variant]["guide"] == "mean"):
        raise WeightsError(_no_weights_message(variant))  # before building a 300M-parameter model
    model = _build(variant, precision=precision, **overrides)
    cfg = model.cfg
    cfg["random_init"] = random_init
    backbone = backbone_weights or (None if random_init else cfg["backbone"])
    if backbone:
        _load_backbone(model, backbone)
    fusion_path = Path(weights) if weights else None if random_init else _weights_path(cfg["file"])
    if fusion_path is not None:
        if not weights and cfg["sha256"] and sha256_file(fusion_path) != cfg["sha256"]:
            raise WeightsError(f"{fusion_path}: sha256 differs from the registered {cfg['sha256'][:12]}...; "
                               "the shipped file was changed, reinstall fusebench")
        model.load_weights(fusion_path)
        cfg["weights_sha256"] = sha256_file(fusion_path)
        cfg["weights"] = str(fusion_path)
    return model


def create_for_training(variant: str, cfg: GuidedConfig) -> MaeFuse:
    """A variant ready for guided training: pretrained backbone, fresh (or ``init_weights``) fusion layer."""
    defaults = default_cfgs[variant]
    backbone = cfg.backbone_weights or defaults["train_backbone"]
    if not backbone and defaults["arch"] != "test":
        raise WeightsError(
            f"training '{variant}' needs pretrained MAE backbone weights: pass --set backbone_weights=NAME_OR_PATH "
            f"(an official MAE {defaults['arch']} file or name such as mae_visualize_vit_{defaults['arch']}, the "
            "official MaeFuse 'resume' MAE, or the output of `fusebench pretrain-mae`)"
        )
    model = _build(variant, precision=cfg.precision)
    if backbone:
        _load_backbone(model, backbone)
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
        f"--dataset msrs --split train --set backbone_weights=<MAE weights>` and pass "
        f"weights=<run>/{variant}.safetensors; use random_init=True for speed tests; use 'maefuse-official' for "
        f"the released MaeFuse weights ({OFFICIAL_WEIGHTS_URL}), or the CPU-ready 'maefuse-compact'."
    )


def _trainer(variant: str):
    return partial(train_guided, variant)


@register_method("maefuse", description="MaeFuse, ViT-L/16 MAE + CFM/MFM fusion layer (guided training)",
                 trainable=True, train=_trainer("maefuse"), paper=PAPER)
def maefuse(**kw: Any) -> MaeFuse:
    return _create_maefuse("maefuse", **kw)


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
                 paper=PAPER)
def maefuse_irguide(**kw: Any) -> MaeFuse:
    return _create_maefuse("maefuse-irguide", **kw)
