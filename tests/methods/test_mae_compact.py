"""The shipped compact MAE: small fp16 file, a sidecar that matches it, real reconstructions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from fusebench.files import sha256_file
from fusebench.images import read_image
from fusebench.methods.mae import build_mae, from_mae_output, to_mae_input
from fusebench.methods.mae.checkpoints import WEIGHTS_DIR, load_mae_weights

FILE = WEIGHTS_DIR / "mae_compact.safetensors"


def test_file_is_small_fp16_and_loads_into_fp32() -> None:
    assert FILE.stat().st_size < 8_000_000
    with safe_open(str(FILE), "pt") as handle:
        assert {handle.get_slice(k).get_dtype() for k in handle.keys()} == {"F16"}  # noqa: SIM118 - safe_open is not a dict
    model = load_mae_weights(build_mae("compact"), "mae_compact")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.pretrained_cfg.name == "mae_compact"


def test_sidecar_describes_this_file() -> None:
    recipe = json.loads(FILE.with_suffix(".json").read_text())
    assert recipe["sha256"] == sha256_file(FILE)
    phase = recipe.get("phase2_decoder_only", recipe)
    config = phase["config"]
    assert config["arch"] == "compact" and config["crop"] > 0 and config["lr"] > 0 and config["data"]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / F.mse_loss(a, b)))


def test_reconstructs_unseen_tno_images_better_than_patch_means(shared_data: Path) -> None:
    """TNO was not trained on; the decoder must beat each 16x16 patch replaced by its mean (native size)."""
    model = load_mae_weights(build_mae("compact").eval(), "mae_compact")
    for path in sorted((shared_data / "tno" / "ir").glob("*.png"))[:2]:
        x = torch.from_numpy(read_image(path, mode="grey"))[None, None]
        inp, size = to_mae_input(x, model.patch_size)
        with torch.no_grad():
            recon = from_mae_output(model(inp), size)
        h, w = size[0] // 16 * 16, size[1] // 16 * 16
        crop = x[..., :h, :w]
        block_means = F.interpolate(F.avg_pool2d(crop, 16), scale_factor=16, mode="nearest")
        assert recon.shape == x.shape
        assert _psnr(recon[..., :h, :w], crop) > _psnr(block_means, crop), path.name


@pytest.mark.parametrize("size", [(37, 53), (200, 130)])
def test_odd_sizes_keep_their_shape(size: tuple[int, int]) -> None:
    model = load_mae_weights(build_mae("compact").eval(), "mae_compact")
    x = torch.rand(1, 1, *size)
    inp, orig = to_mae_input(x, model.patch_size)
    with torch.no_grad():
        assert from_mae_output(model(inp), orig).shape == x.shape
