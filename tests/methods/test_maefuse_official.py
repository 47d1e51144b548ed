"""maefuse-official against a literal re-implementation of the released test_fusion.py + cross_fusion.

The literal version runs one pair at a time (B=1, as ``test_fusion.py``) through ``nn.MultiheadAttention``
with the official batch-first tensors and ``batch_first=False``, and does the pre/post-processing step by step
on uint8 HWC arrays. The ViT encoder/decoder are checked against a literal forward in test_mae_backbone.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fusebench.methods import create_method, list_methods
from fusebench.methods.base import WeightsError
from fusebench.methods.mae import build_mae, sincos_pos_embed
from fusebench.methods.maefuse_official import MaeFuseOfficial

WARP = 64  # 4x4 patch grid at "test" size (the release: 640, 40x40)
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


class LiteralCrossFusion(nn.Module):
    """``fusion.cross_fusion`` at MaeFuse HEAD, line by line."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.cross_model = nn.MultiheadAttention(dim, heads)
        self.merge_model = nn.MultiheadAttention(dim, heads)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.gelu, self.ln = nn.GELU(), nn.LayerNorm(dim)

    def forward(self, vi: torch.Tensor, ir: torch.Tensor, pos_embed: torch.Tensor) -> torch.Tensor:
        vi = vi + pos_embed
        ir = ir + pos_embed
        vi_pattern, _ = self.cross_model(ir, vi, vi)
        ir_pattern, _ = self.cross_model(vi, ir, ir)
        pattern = vi_pattern + ir_pattern
        vi_final, _ = self.merge_model(pattern, vi, vi)
        ir_final, _ = self.merge_model(pattern, ir, ir)
        fusion = vi_final + ir_final
        return self.ln(fusion + self.fc2(self.gelu(self.fc1(fusion))))


def make_release_like_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """final_new_60.pth look-alike, test size: {'model': model1.* (MAE, no cls/mask) + model2.* (fusion)}."""
    mae = build_mae("test")
    with torch.no_grad():
        mae.decoder_pred.bias.normal_(0, 1.5)  # spread the output so clipping and truncation matter
    grid = (WARP // 16, WARP // 16)
    model1 = {k: v for k, v in mae.state_dict().items() if k != "mask_token"}
    model1["pos_embed"] = sincos_pos_embed(mae.embed_dim, grid)[None]
    model1["decoder_pos_embed"] = sincos_pos_embed(mae.decoder_embed_dim, grid)[None]
    fusion = LiteralCrossFusion(mae.embed_dim, 2)
    for p in fusion.parameters():
        nn.init.normal_(p, std=0.2)
    model2 = dict(fusion.state_dict())
    model2["pos_embed"] = model1["pos_embed"].clone()
    state = {**{f"model1.{k}": v for k, v in model1.items()}, **{f"model2.{k}": v for k, v in model2.items()}}
    torch.save({"model": state}, path)
    return state


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    path = tmp_path_factory.mktemp("maefuse") / "final_new_60.pth"
    return path, make_release_like_checkpoint(path)


def _official_method(path: Path) -> MaeFuseOfficial:
    return create_method("maefuse-official", arch="test", weights=path, warp=WARP)


def _literal_fusion(state: dict[str, torch.Tensor]) -> LiteralCrossFusion:
    fusion = LiteralCrossFusion(32, 2)
    fusion.load_state_dict(
        {k[7:]: v for k, v in state.items() if k.startswith("model2.") and k != "model2.pos_embed"}
    )
    return fusion.eval()


def _resize_u8(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """cv2.resize stand-in on uint8 HWC: (h, w) target, result rounded and saturated to uint8."""
    t = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]
    out = F.interpolate(t, size=size, mode=mode, align_corners=False)[0].permute(1, 2, 0).numpy()
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def literal_test_fusion(
    model: MaeFuseOfficial, fusion: LiteralCrossFusion, pos: torch.Tensor, vi_rgb: np.ndarray, ir: np.ndarray
) -> np.ndarray:
    """test_fusion.py for one pair: vi (H, W, 3) RGB uint8, ir (H, W) uint8 -> fused (H, W, 3) RGB uint8."""
    vi = vi_rgb.astype(np.float64)
    y = np.clip(np.round(vi @ [0.299, 0.587, 0.114]), 0, 255)  # BGR2YCrCb, channel 0
    cr = np.clip(np.round((vi[..., 0] - y) * 0.713 + 128), 0, 255)
    cb = np.clip(np.round((vi[..., 2] - y) * 0.564 + 128), 0, 255)
    ycrcb = np.stack([y, cr, cb], -1).astype(np.uint8)
    img_vi = np.repeat(y[..., None], 3, -1).astype(np.uint8)  # GRAY2BGR -> BGR2RGB
    img_ir = np.repeat(ir[..., None], 3, -1)  # cv2.imread of a grey file is 3 equal channels
    h, w = ir.shape
    img_vi, img_ir = (
        _resize_u8(img_vi, (WARP, WARP), "bilinear"),
        _resize_u8(img_ir, (WARP, WARP), "bilinear"),
    )

    def tensor(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((img / 255 - MEAN) / STD).transpose(2, 0, 1)[None]).float()

    with torch.no_grad():
        lat_vi, lat_ir = model.mae.encode(tensor(img_vi)), model.mae.encode(tensor(img_ir))
        fused = fusion(lat_vi, lat_ir, pos)  # (1, L, D): the MHAs see L as their batch, 1 as the sequence
        pred = (
            model.mae.decode(fused, (WARP // 16, WARP // 16))[0].permute(1, 2, 0).numpy().astype(np.float64)
        )
    pred = np.clip((pred * STD + MEAN) * 255, 0, 255).astype(int).astype(np.uint8)  # truncation
    gray = np.clip(np.round(pred.astype(np.float64) @ [0.299, 0.587, 0.114]), 0, 255)  # RGB2GRAY
    ycrcb = _resize_u8(ycrcb, (WARP, WARP), "bilinear").astype(np.float64)
    cr, cb = ycrcb[..., 1] - 128, ycrcb[..., 2] - 128
    rgb = np.stack([gray + 1.403 * cr, gray - 0.714 * cr - 0.344 * cb, gray + 1.773 * cb], -1)  # YCrCb2BGR
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    return _resize_u8(rgb, (h, w), "bicubic")


def _pairs(n: int, h: int = 37, w: int = 53) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), rng.integers(0, 256, (n, h, w), dtype=np.uint8)


def test_registered_and_not_trainable() -> None:
    assert "maefuse-official" in list_methods()
    assert MaeFuseOfficial.trainable is False


def test_closed_form_equals_batch_axis_attention_at_b1(release: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, state = release
    model, literal = _official_method(path), _literal_fusion(state)
    vi, ir = torch.randn(1, 16, 32), torch.randn(1, 16, 32)
    pos = state["model2.pos_embed"]
    with torch.no_grad():
        torch.testing.assert_close(model.fusion(vi, ir, pos[0]), literal(vi, ir, pos), atol=1e-5, rtol=1e-5)


def test_matches_literal_official_pipeline(release: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, state = release
    model, literal = _official_method(path), _literal_fusion(state)
    vis, irs = _pairs(2)
    expected = np.stack(
        [
            literal_test_fusion(model, literal, state["model2.pos_embed"], v, i)
            for v, i in zip(vis, irs, strict=True)
        ]
    )
    vi_t = torch.from_numpy(vis).permute(0, 3, 1, 2).float() / 255
    ir_t = torch.from_numpy(irs)[:, None].float() / 255
    with torch.no_grad():
        ours = model.fuse_images(ir_t, vi_t)  # both pairs in one batch: the closed form is batch-independent
    ours_u8 = np.round(ours.permute(0, 2, 3, 1).numpy() * 255).astype(int)
    diff = np.abs(ours_u8 - expected.astype(int))
    # float summation order (closed form vs MHA) can flip a truncation at a grey level; bicubic then spreads
    # that level to a few neighbours (its kernel overshoots): a handful of pixels, at most 2 levels off
    assert diff.max() <= 2 and (diff > 0).mean() < 0.005
    assert expected.std() > 20  # the synthetic weights give a non-trivial image


def test_grey_visible_gives_grey_output_equal_to_fuse(release: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, state = release
    model = _official_method(path)
    vis, irs = _pairs(1)
    grey = torch.from_numpy(vis[..., 0])[:, None].float() / 255
    ir_t = torch.from_numpy(irs)[:, None].float() / 255
    with torch.no_grad():
        out = model.fuse_images(ir_t, grey)
        expected = literal_test_fusion(
            model,
            _literal_fusion(state),
            state["model2.pos_embed"],
            np.repeat(vis[0, ..., :1], 3, -1),
            irs[0],
        )
        torch.testing.assert_close(model.fuse_batch(ir_t, grey), out)
    assert out.shape == (1, 1, 37, 53)
    assert np.abs(np.round(out[0, 0].numpy() * 255) - expected[..., 0]).max() <= 1


def test_cfm_has_no_effect_and_batches_do_not_mix(release: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, state = release
    model = _official_method(path)
    vis, irs = _pairs(2)
    vi_t = torch.from_numpy(vis).permute(0, 3, 1, 2).float() / 255
    ir_t = torch.from_numpy(irs)[:, None].float() / 255
    with torch.no_grad():
        both = model.fuse_images(ir_t, vi_t)
        one = model.fuse_images(ir_t[1:], vi_t[1:])
        for p in model.fusion.cross_model.parameters():
            p.normal_()
        randomised_cfm = model.fuse_images(ir_t, vi_t)
    torch.testing.assert_close(both[1:], one)
    torch.testing.assert_close(randomised_cfm, both)
    # what the official module does with B=2 (training): positions mix across the batch
    literal, pos = _literal_fusion(state), state["model2.pos_embed"]
    tokens = torch.randn(2, 16, 32), torch.randn(2, 16, 32)
    with torch.no_grad():
        assert (literal(*tokens, pos)[1] - literal(tokens[0][1:], tokens[1][1:], pos)[0]).abs().max() > 1e-3


def test_load_errors_name_file_and_keys(
    tmp_path: Path, release: tuple[Path, dict[str, torch.Tensor]]
) -> None:
    _, state = release
    broken = {k: v for k, v in state.items() if not k.startswith("model2.fc1.")}
    broken["model3.extra"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save({"model": broken}, path)
    with pytest.raises(
        WeightsError,
        match=r"broken.pth: not a MaeFuse checkpoint for this size: unexpected keys "
        r"\['model3.extra'\]; missing keys \['model2.fc1.bias', 'model2.fc1.weight'\]",
    ):
        _official_method(path)
    torch.save({"model": {k: v for k, v in state.items() if k != "model1.norm.weight"}}, path)
    with pytest.raises(
        WeightsError, match=r"\(model1.\*\): does not fit this MAE.*missing keys \['norm.weight'\]"
    ):
        _official_method(path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(release[0].read_bytes()[:1000])
    with pytest.raises(WeightsError, match=r"truncated.pth: cannot read weights"):
        _official_method(truncated)


def test_missing_default_weights_say_where_to_put_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path))
    with pytest.raises(
        WeightsError,
        match=r"final_new_60.pth: the released MaeFuse weights are not there.*"
        r"drive.google.com",
    ):
        create_method("maefuse-official", arch="test")


def test_runs_on_cuda(cuda: torch.device, release: tuple[Path, dict[str, torch.Tensor]]) -> None:
    model = _official_method(release[0])
    vis, irs = _pairs(1)
    vi_t = torch.from_numpy(vis).permute(0, 3, 1, 2).float() / 255
    ir_t = torch.from_numpy(irs)[:, None].float() / 255
    with torch.no_grad():
        cpu = model.fuse_images(ir_t, vi_t)
        gpu = model.to(cuda).fuse_images(ir_t.to(cuda), vi_t.to(cuda)).cpu()
    assert (cpu - gpu).abs().max() <= 1 / 255 + 1e-6
