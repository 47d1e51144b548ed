"""MaeFuse exactly as the released code runs it (``test_fusion.py`` + ``final_new_60.pth``).

Paper: Li, Jiang, Liang, Ma, Nie, "MaeFuse: Transferring Omni Features With Pretrained Masked Autoencoders
for Infrared and Visible Image Fusion via Guided Training", IEEE TIP 34 (2025) 1340-1353 (arXiv 2404.11016).
Official code: github.com/Henry-Lee-real/MaeFuse (HEAD 08e14e8); facts in reference/maefuse-official.md.

What the released code computes, and therefore what this module computes:

* ``nn.MultiheadAttention`` with ``batch_first=False`` is fed (B, L, D) tensors, so its "sequence" is the
  batch. At B=1 (the official test) every softmax has one key: the CFM has no effect and each MFM call is
  ``out_proj(v_proj(x))`` per token. This module evaluates that closed form, which is exact and
  batch-independent (any batch size gives the B=1 result). CFM weights are loaded only for strict loading:
  ``x = Enc(img) + P;  f = A(x_vi) + A(x_ir);  out = LN_1e-5(f + fc2(GELU(fc1(f))))``.
* Pre/post-processing (``test_fusion.py``): visible Y (uint8) x3 and IR as RGB, bilinear warp to 640x640 (the
  ``INTER_CUBIC`` there is a positional-argument bug), ImageNet normalisation, decoder output truncated (not
  rounded) to uint8, OpenCV RGB2GRAY of it, CrCb from the 640-warped visible YCrCb, YCrCb -> RGB, bicubic back
  to the original size, uint8. OpenCV's resizes are emulated with torch (same kernels, half-pixel centres);
  they may differ from OpenCV's fixed-point arithmetic by 1 grey level.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusebench.methods.base import FusionMethod, WeightsError, check_pair_tensors, register_method
from fusebench.methods.mae.backbone import MaskedAutoencoder, build_mae
from fusebench.methods.mae.checkpoints import mae_state_from_checkpoint, read_checkpoint
from fusebench.methods.mae.preprocess import normalize
from fusebench.training import autocast

_PAPER = "Li et al., IEEE TIP 34 (2025) 1340-1353; arXiv:2404.11016"

default_cfgs: dict[str, dict[str, Any]] = {
    "maefuse_vitl.official": {
        "file": "final_new_60.pth",
        "url": "https://drive.google.com/file/d/18N6tn78VztQOvobVWu6J-RJHo3jsBKkk",
        "sha256": None,  # not published; the file is ~1.35 GB (fp32 estimate)
        "license": "not stated in the MaeFuse repository; the encoder derives from MAE (CC-BY-NC-4.0)",
        "origin_url": "https://github.com/Henry-Lee-real/MaeFuse",
        "paper": _PAPER,
        "notes": "Google-Drive 'Test Weight'; ckpt['model'] with model1.* (MAE at 640, 4-block decoder) and "
        "model2.* (cross_model, merge_model, fc1, fc2, ln, pos_embed). Download it by hand (Google "
        "Drive needs a browser) and pass weights=<path>, or put it in $FUSEBENCH_HOME/weights/.",
    }
}

# OpenCV's 8-bit YCrCb (cvtColor BGR2YCrCb / YCrCb2BGR), not the JPEG matrix of fusebench.color.
_LUMA = (0.299, 0.587, 0.114)


def _u8(x: Tensor) -> Tensor:
    """Round and saturate to 0..255, as OpenCV stores every 8-bit intermediate."""
    return x.round().clamp(0, 255)


def _luma255(rgb: Tensor) -> Tensor:
    r, g, b = rgb.unbind(1)
    return _u8(_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b)[:, None]


def _resize(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    return _u8(F.interpolate(x, size=size, mode=mode, align_corners=False))


class OfficialFusion(nn.Module):
    """The released ``cross_fusion`` parameters (official names), evaluated through the B=1 closed form."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.cross_model = nn.MultiheadAttention(dim, num_heads)  # the CFM: no effect at B=1, kept to load
        self.merge_model = nn.MultiheadAttention(dim, num_heads)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.ln = nn.LayerNorm(dim)  # default eps 1e-5, as released

    def merge_value(self, x: Tensor) -> Tensor:
        """``merge_model`` with one key: ``out_proj(x W_v^T + b_v)`` for every token."""
        dim = x.shape[-1]
        w_v, b_v = self.merge_model.in_proj_weight[2 * dim :], self.merge_model.in_proj_bias[2 * dim :]
        return self.merge_model.out_proj(F.linear(x, w_v, b_v))

    def forward(self, vi: Tensor, ir: Tensor, pos: Tensor) -> Tensor:
        """(N, L, D) encoder tokens of both modalities -> (N, L, D) fused tokens."""
        fused = self.merge_value(vi + pos) + self.merge_value(ir + pos)
        return self.ln(fused + self.fc2(F.gelu(self.fc1(fused))))


class MaeFuseOfficial(FusionMethod):
    """The released MaeFuse inference; :meth:`fuse_images` follows the official colour pipeline."""

    trainable = False

    def __init__(
        self, mae: MaskedAutoencoder, num_heads: int, warp: int = 640, precision: str = "fp32", **cfg: Any
    ) -> None:
        super().__init__(warp=warp, precision=precision, **cfg)
        self.mae = mae
        self.fusion = OfficialFusion(mae.embed_dim, num_heads)
        self.warp, self.precision = warp, precision

    # -- weights ---------------------------------------------------------------------------------------------
    def load_weights(self, path: str | Path, strict: bool = True) -> None:
        """Load the released ``final_new_60.pth`` (``model1.*``/``model2.*``) or a fusebench safetensors."""
        path = Path(path)
        state = read_checkpoint(path)
        if not any(k.startswith(("model1.", "model2.")) for k in state):
            super().load_weights(path, strict=strict)
            return
        other = sorted(k for k in state if not k.startswith(("model1.", "model2.")))
        mae = {k[len("model1.") :]: v for k, v in state.items() if k.startswith("model1.")}
        fusion = {
            k[len("model2.") :]: v
            for k, v in state.items()
            if k.startswith("model2.") and k != "model2.pos_embed"
        }
        own = self.fusion.state_dict()
        problems = [f"unexpected keys {other[:8]}"] if other else []
        if missing := sorted(set(own) - set(fusion)):
            problems.append(f"missing keys {['model2.' + k for k in missing][:8]}")
        if unexpected := sorted(set(fusion) - set(own)):
            problems.append(f"unexpected keys {['model2.' + k for k in unexpected][:8]}")
        if wrong := sorted(k for k in set(own) & set(fusion) if own[k].shape != fusion[k].shape):
            problems.append(
                "shape mismatch: "
                + ", ".join(
                    f"model2.{k}: file {tuple(fusion[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in wrong[:4]
                )
            )
        if problems:
            raise WeightsError(f"{path}: not a MaeFuse checkpoint for this size: " + "; ".join(problems))
        self.mae.load_state_dict(
            mae_state_from_checkpoint(mae, self.mae, source=f"{path} (model1.*)"), strict=False
        )
        self.fusion.load_state_dict(fusion)

    # -- the official computation ----------------------------------------------------------------------------
    def fused_rgb640(self, vi_y: Tensor, ir_rgb: Tensor) -> Tensor:
        """Warped uint8-valued (N, 3, S, S) inputs in 0..255 -> truncated uint8-valued decoder RGB."""
        p = self.mae.patch_size
        grid = (self.warp // p, self.warp // p)
        with autocast(vi_y.device, self.precision):
            tokens_vi = self.mae.encode(normalize(vi_y / 255))
            tokens_ir = self.mae.encode(normalize(ir_rgb / 255))
            pos = self.mae.pos_embed(self.mae.embed_dim, grid, vi_y.device)
            fused = self.fusion(tokens_vi.float(), tokens_ir.float(), pos)
            pred = self.mae.decode(fused, grid).float()
        mean = torch.tensor((0.485, 0.456, 0.406), device=pred.device).view(1, 3, 1, 1)
        std = torch.tensor((0.229, 0.224, 0.225), device=pred.device).view(1, 3, 1, 1)
        return ((pred * std + mean) * 255).clamp(0, 255).trunc()

    def official(self, ir: Tensor, vi: Tensor) -> Tensor:
        """ir (N, 1, H, W), vi (N, 1|3, H, W) in [0, 1] -> official saved output (N, 3, H, W) in [0, 1]."""
        size, warp = (ir.shape[-2], ir.shape[-1]), (self.warp, self.warp)
        vi255, ir255 = _u8(vi * 255), _u8(ir * 255).expand(-1, 3, -1, -1)
        if vi.shape[1] == 3:
            y = _luma255(vi255)
            cr, cb = _u8((vi255[:, :1] - y) * 0.713 + 128), _u8((vi255[:, 2:] - y) * 0.564 + 128)
        else:
            y, cr, cb = vi255, torch.full_like(vi255, 128), torch.full_like(vi255, 128)
        pred = self.fused_rgb640(
            _resize(y.expand(-1, 3, -1, -1), warp, "bilinear"), _resize(ir255, warp, "bilinear")
        )
        ycrcb = _resize(torch.cat([y, cr, cb], 1), warp, "bilinear")
        gray, cr, cb = _luma255(pred), ycrcb[:, 1:2] - 128, ycrcb[:, 2:3] - 128
        rgb = _u8(torch.cat([gray + 1.403 * cr, gray - 0.714 * cr - 0.344 * cb, gray + 1.773 * cb], 1))
        return _resize(rgb, size, "bicubic") / 255

    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        """Grey visible through the official pipeline; the three equal output channels -> one."""
        return self.official(ir, vi)[:, :1]

    def fuse_images(self, ir: Tensor, vi: Tensor, ids: Sequence[str] | None = None) -> Tensor:
        """The official colour pipeline (CrCb warped twice); grey visible images give grey output."""
        check_pair_tensors(ir, vi)
        out = self.official(ir, vi)
        if not torch.isfinite(out).all():
            raise RuntimeError(f"method '{self.name}' produced NaN or inf values")
        return out if vi.shape[1] == 3 else out[:, :1]


def _default_weights() -> Path:
    from fusebench.download import fusebench_home

    path = fusebench_home() / "weights" / default_cfgs["maefuse_vitl.official"]["file"]
    if not path.is_file():
        cfg = default_cfgs["maefuse_vitl.official"]
        raise WeightsError(
            f"{path}: the released MaeFuse weights are not there. Download {cfg['file']} from "
            f"{cfg['url']} (a browser is needed) and save it there, or pass weights=<path>."
        )
    return path


def _create_maefuse_official(
    arch: str = "large",
    weights: str | Path | None = None,
    random_init: bool = False,
    warp: int = 640,
    precision: str = "fp32",
    num_heads: int | None = None,
) -> MaeFuseOfficial:
    """Build the official MaeFuse; ``random_init`` (tests, speed) skips loading, ``arch`` shrinks it."""
    mae = build_mae(arch)
    heads = num_heads or mae.blocks[0].attn.num_heads
    model = MaeFuseOfficial(
        mae,
        heads,
        warp=warp,
        precision=precision,
        arch=arch,
        weights=str(weights) if weights else None,
        pretrained_cfg="maefuse_vitl.official",
    )
    if not random_init:
        model.load_weights(weights or _default_weights())
    return model.eval()


@register_method(
    "maefuse-official",
    description="MaeFuse, released weights and inference code reproduced exactly",
    trainable=False,
    paper=_PAPER,
)
def maefuse_official(**kw: Any) -> MaeFuseOfficial:
    return _create_maefuse_official(**kw)
