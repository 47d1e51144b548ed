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
  to the original size, uint8. Every 8-bit step is OpenCV's own call (``opencv-python-headless``, which the
  official code uses), on uint8 arrays, one pair at a time; only the network runs in torch. Measured against
  an independent re-implementation of test_fusion.py (tests/methods/test_maefuse_official.py): >= 99.9 % of
  output values equal, the rest 1 grey level (float rounding flipping a truncation).
* The stored position tables are checked against the regenerated sin-cos ones at load.
* Output: PNG by default; ``output_format="input"`` names the output after the visible file's extension and
  :meth:`MaeFuseOfficial.write_output` saves it with ``cv2.imwrite``, as test_fusion.py does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusebench.methods.base import FusionMethod, WeightsError, check_pair_tensors, register_method
from fusebench.methods.mae.backbone import MaskedAutoencoder, build_mae, sincos_pos_embed
from fusebench.methods.mae.checkpoints import mae_state_from_checkpoint, read_checkpoint
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
        "model2.* (cross_model, merge_model, fc1, fc2, ln, pos_embed). "
        "Downloaded on first use into $FUSEBENCH_HOME/weights/maefuse/; or pass --weights PATH.",
    }
}

_MEAN, _STD = np.array((0.485, 0.456, 0.406)), np.array((0.229, 0.224, 0.225))


# -- the 8-bit steps of test_fusion.py, with OpenCV itself (uint8 HWC arrays, OpenCV channel orders) -----------
def visible_inputs(vi_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.imread(vi)`` (BGR) -> (Y replicated to 3 channels, as RGB; the full YCrCb image)."""
    ycrcb = cv2.cvtColor(vi_bgr, cv2.COLOR_BGR2YCrCb)
    y3 = cv2.cvtColor(cv2.cvtColor(np.ascontiguousarray(ycrcb[:, :, 0]), cv2.COLOR_GRAY2BGR), cv2.COLOR_BGR2RGB)
    return y3, ycrcb


def infrared_input(ir_bgr: np.ndarray) -> np.ndarray:
    """``cv2.imread(ir)`` (always 3-channel BGR) -> RGB; a colour-coded IR image stays colour, as released."""
    return cv2.cvtColor(ir_bgr, cv2.COLOR_BGR2RGB)


def warp(img: np.ndarray, size: int) -> np.ndarray:
    """The resize to size x size: ``cv2.resize(img, (640, 640), cv2.INTER_CUBIC)`` in test_fusion.py passes
    INTER_CUBIC as ``dst``, so OpenCV's default bilinear (INTER_LINEAR) is what runs."""
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


def to_network(img: np.ndarray) -> Tensor:
    """uint8 RGB (H, W, 3) -> ImageNet-normalised float32 (1, 3, H, W), in test_fusion.py's order (float64)."""
    return torch.from_numpy(((img / 255 - _MEAN) / _STD).transpose(2, 0, 1)[None].copy()).float()


def truncate(pred: Tensor) -> np.ndarray:
    """Decoder output (1, 3, H, W), normalised -> uint8 RGB (H, W, 3): ``clip((x*std + mean)*255, 0, 255)
    .int()`` (truncation, not rounding), then ``cv2.convertScaleAbs``."""
    mean = torch.tensor(_MEAN, dtype=torch.float32, device=pred.device)
    std = torch.tensor(_STD, dtype=torch.float32, device=pred.device)
    hwc = pred[0].permute(1, 2, 0).float()
    values = torch.clip((hwc * std + mean) * 255, 0, 255).int()
    return cv2.convertScaleAbs(values.cpu().numpy())


def recombine(pred_rgb: np.ndarray, ycrcb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Luma of the decoded RGB (RGB2GRAY) into the warped visible YCrCb, YCrCb2BGR, bicubic back to
    ``size`` = (h, w): the saved BGR image."""
    gray = cv2.cvtColor(pred_rgb, cv2.COLOR_RGB2GRAY)
    ycrcb = warp(ycrcb, pred_rgb.shape[0]).copy()
    ycrcb[:, :, 0] = gray
    bgr = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)
    return cv2.resize(bgr, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


def _to_u8(x: Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> uint8 (H, W, C), exact for images decoded from 8-bit files."""
    return (x.detach().float() * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


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
        self,
        mae: MaskedAutoencoder,
        num_heads: int,
        warp: int = 640,
        precision: str = "fp32",
        output_format: str = "png",
        **cfg: Any,
    ) -> None:
        if output_format not in ("png", "input"):
            raise ValueError(f"output_format must be 'png' or 'input' (the visible file's), got {output_format!r}")
        if warp % mae.patch_size:
            raise ValueError(f"warp must be a multiple of the patch size {mae.patch_size}, got {warp}")
        super().__init__(warp=warp, precision=precision, output_format=output_format, **cfg)
        self.mae = mae
        self.fusion = OfficialFusion(mae.embed_dim, num_heads)
        self.warp, self.precision, self.output_format = warp, precision, output_format

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
        self.check_position_tables(state, path)
        self.mae.load_state_dict(
            mae_state_from_checkpoint(mae, self.mae, source=f"{path} (model1.*)"), strict=False
        )
        self.fusion.load_state_dict(fusion)

    def check_position_tables(self, state: dict[str, Tensor], path: Path) -> None:
        """The file's fixed sin-cos tables must be the ones regenerated for the warp's patch grid.

        fusebench never uses the stored tables (it regenerates them); a file whose tables differ was made for
        another grid or another layout, and would not compute what its authors' code computed.
        """
        side = self.warp // self.mae.patch_size
        tables = {
            "model1.pos_embed": self.mae.embed_dim,
            "model1.decoder_pos_embed": self.mae.decoder_embed_dim,
            "model2.pos_embed": self.mae.embed_dim,
        }
        for key, dim in tables.items():
            if key not in state:
                continue
            stored, expected = state[key].float().cpu(), sincos_pos_embed(dim, (side, side))[None]
            if stored.shape != expected.shape:
                tokens = stored.shape[-2] if stored.dim() >= 2 else 0
                grid = round(tokens**0.5)
                made_for = (
                    f" (made for a {grid}x{grid} grid: --set warp={grid * self.mae.patch_size})"
                    if grid * grid == tokens and stored.shape[-1] == dim
                    else ""
                )
                raise WeightsError(
                    f"{path}: {key} has shape {tuple(stored.shape)}, but this model warps to {self.warp}x"
                    f"{self.warp} ({side}x{side} patches, width {dim}) and needs {tuple(expected.shape)}{made_for}"
                )
            if not torch.allclose(stored, expected, atol=1e-5, rtol=0):
                diff = (stored - expected).abs().max().item()
                raise WeightsError(
                    f"{path}: {key} is not the fixed 2-D sin-cos table of a {side}x{side} grid (max difference "
                    f"{diff:.3g}); the file was not made by the released MaeFuse code"
                )

    # -- the official computation ----------------------------------------------------------------------------
    def decoded(self, vi: Tensor, ir: Tensor) -> Tensor:
        """Normalised warped inputs (N, 3, S, S) -> normalised decoder output (N, 3, S, S), float32."""
        p = self.mae.patch_size
        grid = (vi.shape[-2] // p, vi.shape[-1] // p)
        with autocast(vi.device, self.precision):
            tokens_vi, tokens_ir = self.mae.encode(vi), self.mae.encode(ir)
            pos = self.mae.pos_embed(self.mae.embed_dim, grid, vi.device)
            fused = self.fusion(tokens_vi.float(), tokens_ir.float(), pos)
            return self.mae.decode(fused, grid).float()

    @torch.inference_mode()
    def official_bgr(self, ir_bgr: np.ndarray, vi_bgr: np.ndarray) -> np.ndarray:
        """test_fusion.py for one pair of ``cv2.imread`` images (uint8 BGR (H, W, 3)) -> the saved BGR image."""
        if ir_bgr.shape[:2] != vi_bgr.shape[:2]:
            raise ValueError(f"infrared is {ir_bgr.shape[1]}x{ir_bgr.shape[0]} (WxH) but visible is "
                             f"{vi_bgr.shape[1]}x{vi_bgr.shape[0]}; a pair must have one size")
        device = next(self.mae.parameters()).device
        y3, ycrcb = visible_inputs(vi_bgr)
        ir_rgb = infrared_input(ir_bgr)
        vi_in, ir_in = to_network(warp(y3, self.warp)), to_network(warp(ir_rgb, self.warp))
        pred = truncate(self.decoded(vi_in.to(device), ir_in.to(device)))
        return recombine(pred, ycrcb, vi_bgr.shape[:2])

    @torch.inference_mode()
    def official(self, ir: Tensor, vi: Tensor) -> Tensor:
        """ir (N, 1, H, W), vi (N, 1|3, H, W) in [0, 1] -> official saved output (N, 3, H, W) RGB in [0, 1].

        Each pair runs alone (B=1), as in test_fusion.py; the 8-bit steps are OpenCV's own.
        """
        check_pair_tensors(ir, vi)
        outs = []
        for ir_one, vi_one in zip(ir, vi, strict=True):
            vi_u8 = _to_u8(vi_one)
            vi_bgr = cv2.cvtColor(vi_u8, cv2.COLOR_RGB2BGR) if vi_u8.shape[2] == 3 else np.repeat(vi_u8, 3, 2)
            bgr = self.official_bgr(np.repeat(_to_u8(ir_one), 3, 2), vi_bgr)
            outs.append(torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1))
        return torch.stack(outs).to(ir.device, torch.float32) / 255

    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        """Grey visible through the official pipeline; the three equal output channels -> one."""
        return self.official(ir, vi)[:, :1]

    def fuse_images(self, ir: Tensor, vi: Tensor, ids: Sequence[str] | None = None) -> Tensor:
        """The official colour pipeline (CrCb warped twice); grey visible images give grey output."""
        out = self.official(ir, vi)
        return out if vi.shape[1] == 3 else out[:, :1]

    def fuse_files(self, ir_path: str | Path, vi_path: str | Path) -> np.ndarray:
        """The official output for one pair of files, read with ``cv2.imread`` as test_fusion.py does: uint8
        RGB (H, W, 3), or (H, W) when its three channels are equal (a grey visible image)."""
        images = []
        for path in (ir_path, vi_path):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{path}: OpenCV cannot read it")
            images.append(image)
        rgb = cv2.cvtColor(self.official_bgr(*images), cv2.COLOR_BGR2RGB)
        grey = (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()
        return np.ascontiguousarray(rgb[..., 0]) if grey else rgb

    # -- saving as test_fusion.py does (opt-in: the runner saves PNG) ------------------------------------------
    def output_path(self, fused_dir: str | Path, pair_id: str, vi_path: str | Path) -> Path:
        """Where the output goes: ``<id>.png``, or with ``output_format="input"`` the visible file's extension
        (test_fusion.py's ``cv2.imwrite(output/name+ext)``; JPEG inputs then give lossy JPEG outputs)."""
        ext = Path(vi_path).suffix if self.output_format == "input" else ".png"
        return Path(fused_dir) / f"{pair_id}{ext}"

    @staticmethod
    def write_output(path: str | Path, image: np.ndarray) -> None:
        """Save a uint8 RGB (or grey) output with ``cv2.imwrite`` (OpenCV's default encoder settings)."""
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
        if not cv2.imwrite(str(path), bgr):
            raise OSError(f"{path}: OpenCV could not write it")


RELEASED_ID = "18N6tn78VztQOvobVWu6J-RJHo3jsBKkk"  # Google Drive id of final_new_60.pth


def released_weights_path() -> Path:
    """Where the released checkpoint lives in the cache: ``$FUSEBENCH_HOME/weights/maefuse/final_new_60.pth``."""
    from fusebench.pretrained import weights_dir

    return weights_dir("maefuse") / default_cfgs["maefuse_vitl.official"]["file"]


def released_weights(progress: bool = True) -> Path:
    """The released ``final_new_60.pth``, downloaded from Google Drive into the cache on first use.

    Raises:
        WeightsError: offline (``FUSEBENCH_OFFLINE=1``) or Drive unreachable/refusing; the message gives the
            Drive URL, the exact cache path to save the file at, and ``--weights PATH``.
    """
    from fusebench.download import DownloadError, download_google_drive

    path = released_weights_path()
    if path.is_file():
        return path
    try:
        return download_google_drive(RELEASED_ID, path, progress=progress)
    except DownloadError as exc:
        raise WeightsError(
            f"the released MaeFuse weights (final_new_60.pth, about 1.35 GB) are not in the cache and could not "
            f"be downloaded: {exc}\nOr pass a copy with --weights PATH."
        ) from None


def _create_maefuse_official(
    arch: str = "large",
    weights: str | Path | None = None,
    random_init: bool = False,
    warp: int = 640,
    precision: str = "fp32",
    num_heads: int | None = None,
    output_format: str = "png",
    progress: bool = True,
    **cfg: Any,
) -> MaeFuseOfficial:
    """Build the official MaeFuse; ``random_init`` (tests, speed) skips loading, ``arch`` shrinks it.

    Without ``weights`` the released checkpoint is used (downloaded on first use). ``cfg`` records which
    weights (``weights_source``: released / file / random) and which computation (``computation``).
    """
    # the weights first: a missing checkpoint fails before a 300M-parameter model is built
    path = None if random_init and not weights else Path(weights) if weights else released_weights(progress)
    mae = build_mae(arch)
    heads = num_heads or mae.blocks[0].attn.num_heads
    source = "random" if path is None else "file" if weights else "released"
    model = MaeFuseOfficial(
        mae,
        heads,
        warp=warp,
        precision=precision,
        output_format=output_format,
        arch=arch,
        weights=str(path) if path else None,
        weights_source=source,
        computation="released",
        random_init=path is None,
        pretrained_cfg="maefuse_vitl.official",
        **cfg,
    )
    if path is not None:
        model.load_weights(path)
    return model.eval()


@register_method(
    "maefuse-official",
    description="MaeFuse, released weights and inference code reproduced exactly",
    trainable=False,
    paper=_PAPER,
)
def maefuse_official(**kw: Any) -> MaeFuseOfficial:
    return _create_maefuse_official(**kw)
