"""maefuse-official against an independent re-implementation of the released test_fusion.py.

The reference below is written from the official code as described in reference/maefuse-official.md (sections
1.2, 1.4-1.6), sharing nothing with fusebench: the MAE with timm's ``Block`` and a conv patch embedding, MAE's
own numpy ``get_2d_sincos_pos_embed``, ``cross_fusion`` with two ``nn.MultiheadAttention(batch_first=False)``
fed (1, L, D) tensors, and test_fusion.py's OpenCV calls literally (including its ``cv2.resize(img, (640, 640),
cv2.INTER_CUBIC)``, where INTER_CUBIC lands in ``dst``). The synthetic checkpoint is that reference's own
``state_dict`` in the released container (``{'model': {model1.*, model2.*}}``), loaded back with
``strict=True``; tiny widths (the "test" arch: embed 32, 2 blocks, 2 heads, decoder 32/2) at the real warp 640.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from timm.models.vision_transformer import Block
from torch import nn

from fusebench.methods import create_method, list_methods
from fusebench.methods.base import WeightsError
from fusebench.methods.maefuse_official import (
    MaeFuseOfficial,
    infrared_input,
    recombine,
    released_weights_path,
    to_network,
    truncate,
    visible_inputs,
    warp,
)

WARP, PATCH = 640, 16
DIM, DEPTH, HEADS, DEC_DIM, DEC_DEPTH, DEC_HEADS = 32, 2, 2, 32, 2, 2  # fusebench's "test" arch


# -- the independent reference ---------------------------------------------------------------------------------
def get_1d_sincos_pos_embed_from_grid(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int) -> np.ndarray:
    """MAE's util/pos_embed.py, without the cls row (as MaeFuse's models_mae.py calls it)."""
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


class PatchEmbed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, DIM, PATCH, PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class RefMAE(nn.Module):
    """MaeFuse's MaskedAutoencoderViT (no cls, no mask token) at 640, forward_encoder + forward_decoder."""

    def __init__(self) -> None:
        super().__init__()
        side = WARP // PATCH
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.patch_embed = PatchEmbed()
        self.pos_embed = nn.Parameter(torch.from_numpy(get_2d_sincos_pos_embed(DIM, side)).float()[None],
                                      requires_grad=False)
        self.blocks = nn.ModuleList(Block(DIM, HEADS, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(DEPTH))
        self.norm = norm(DIM)
        self.decoder_embed = nn.Linear(DIM, DEC_DIM)
        self.decoder_pos_embed = nn.Parameter(
            torch.from_numpy(get_2d_sincos_pos_embed(DEC_DIM, side)).float()[None], requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            Block(DEC_DIM, DEC_HEADS, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(DEC_DEPTH))
        self.decoder_norm = norm(DEC_DIM)
        self.decoder_pred = nn.Linear(DEC_DIM, PATCH**2 * 3)

    def forward_encoder(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward_decoder(self, x: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(x) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p, h = PATCH, int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], h, h, p, p, 3)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], 3, h * p, h * p)


class RefCrossFusion(nn.Module):
    """``fusion.cross_fusion`` at MaeFuse HEAD, line by line (``batch_first=False`` MHAs)."""

    def __init__(self) -> None:
        super().__init__()
        self.cross_model = nn.MultiheadAttention(DIM, HEADS)
        self.merge_model = nn.MultiheadAttention(DIM, HEADS)
        self.fc1, self.fc2 = nn.Linear(DIM, 4 * DIM), nn.Linear(4 * DIM, DIM)
        self.gelu, self.ln = nn.GELU(), nn.LayerNorm(DIM)
        self.pos_embed = nn.Parameter(
            torch.from_numpy(get_2d_sincos_pos_embed(DIM, WARP // PATCH)).float()[None], requires_grad=False)

    def forward(self, vi: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        vi = vi + self.pos_embed
        ir = ir + self.pos_embed
        vi_pattern, _ = self.cross_model(ir, vi, vi)
        ir_pattern, _ = self.cross_model(vi, ir, ir)
        pattern = vi_pattern + ir_pattern
        vi_final, _ = self.merge_model(pattern, vi, vi)
        ir_final, _ = self.merge_model(pattern, ir, ir)
        fusion = vi_final + ir_final
        return self.ln(fusion + self.fc2(self.gelu(self.fc1(fusion))))


class RefConnect(nn.Module):
    """``connect_net.ConnectModel_MAE_Fuion`` in mode 'eval'."""

    def __init__(self) -> None:
        super().__init__()
        self.model1, self.model2 = RefMAE(), RefCrossFusion()

    def forward(self, vi: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        fusion = self.model2(self.model1.forward_encoder(vi), self.model1.forward_encoder(ir))
        return self.model1.forward_decoder(fusion)


def reference_test_fusion(model: RefConnect, vi_path: Path, ir_path: Path) -> np.ndarray:
    """test_fusion.py for one pair of files -> the BGR image it writes."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    img_vi = cv2.imread(str(vi_path))
    ycrcb = cv2.cvtColor(img_vi, cv2.COLOR_BGR2YCrCb)
    y = ycrcb[:, :, 0]
    img_vi = cv2.cvtColor(cv2.cvtColor(y, cv2.COLOR_GRAY2BGR), cv2.COLOR_BGR2RGB)
    img_ir = cv2.cvtColor(cv2.imread(str(ir_path)), cv2.COLOR_BGR2RGB)
    h, w = img_vi.shape[:2]
    img_vi = cv2.resize(img_vi, (WARP, WARP), cv2.INTER_CUBIC)  # sic: INTER_CUBIC is the dst argument
    img_ir = cv2.resize(img_ir, (WARP, WARP), cv2.INTER_CUBIC)
    vi = torch.from_numpy(((img_vi / 255 - mean) / std).transpose(2, 0, 1)).float()[None]
    ir = torch.from_numpy(((img_ir / 255 - mean) / std).transpose(2, 0, 1)).float()[None]
    with torch.no_grad():
        pred = model.model1.unpatchify(model(vi, ir))[0].permute(1, 2, 0)
    pred = torch.clip((pred * torch.tensor(std) + torch.tensor(mean)) * 255, 0, 255).int()
    pred = cv2.convertScaleAbs(pred.numpy())
    y = cv2.cvtColor(pred, cv2.COLOR_RGB2GRAY)
    ycrcb = cv2.resize(ycrcb, (WARP, WARP), cv2.INTER_CUBIC)
    ycrcb[:, :, 0] = y
    out = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)


def make_released_checkpoint(path: Path, seed: int = 0) -> tuple[RefConnect, dict[str, torch.Tensor]]:
    """final_new_60.pth look-alike: the reference's state_dict as {'model': ...}, weights spread enough that
    the decoder output covers 0..255 with clipping, truncation and the CFM/MFM all exercised."""
    torch.manual_seed(seed)
    ref = RefConnect()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "pos_embed" in name:
                continue
            if name.startswith("model2."):
                nn.init.normal_(p, std=0.2)
            elif p.dim() == 1:
                p.normal_(0, 0.1 if "norm" not in name else 0.05).add_(1.0 if name.endswith("norm.weight") else 0)
        ref.model1.decoder_pred.bias.normal_(0, 1.0)
        ref.model1.decoder_pred.weight.mul_(3)
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    torch.save({"model": state}, path)
    check = RefConnect()
    check.load_state_dict(torch.load(path, weights_only=True)["model"], strict=True)  # the released format
    return check.eval(), state


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RefConnect, dict[str, torch.Tensor]]:
    path = tmp_path_factory.mktemp("maefuse") / "final_new_60.pth"
    ref, state = make_released_checkpoint(path)
    return path, ref, state


def _method(path: Path, **kw: object) -> MaeFuseOfficial:
    return create_method("maefuse-official", arch="test", weights=path, **kw)


def _image_files(folder: Path) -> list[tuple[Path, Path]]:
    """Three pairs as files: colour visible + grey IR of odd sizes (noise over gradients), one grey visible."""
    rng = np.random.default_rng(1)
    pairs = []
    for i, (h, w, colour) in enumerate([(150, 211, True), (97, 123, True), (120, 160, False)]):
        yy, xx = np.mgrid[0:h, 0:w]
        base = (127 + 100 * np.sin(xx / 9.0 + i) * np.cos(yy / 13.0))[..., None]
        vi = np.clip(base + rng.normal(0, 30, (h, w, 3 if colour else 1)), 0, 255).astype(np.uint8)
        ir = np.clip(255 - base[..., 0] + rng.normal(0, 40, (h, w)), 0, 255).astype(np.uint8)
        vi_path, ir_path = folder / "vi" / f"{i:02d}.png", folder / "ir" / f"{i:02d}.png"
        vi_path.parent.mkdir(exist_ok=True)
        ir_path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(vi_path), vi if colour else vi[..., 0])
        cv2.imwrite(str(ir_path), ir)
        pairs.append((ir_path, vi_path))
    return pairs


# -- each 8-bit step against OpenCV ----------------------------------------------------------------------------
RNG = np.random.default_rng(0)
BGR = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)


def test_warp_is_the_bilinear_that_the_official_call_runs() -> None:
    official_call = cv2.resize(BGR, (WARP, WARP), cv2.INTER_CUBIC)  # test_fusion.py's positional bug
    np.testing.assert_array_equal(warp(BGR, WARP), official_call)
    np.testing.assert_array_equal(warp(BGR, WARP), cv2.resize(BGR, (WARP, WARP), interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(warp(BGR, WARP), cv2.resize(BGR, (WARP, WARP), interpolation=cv2.INTER_CUBIC))


def test_colour_conversions_are_opencvs() -> None:
    y3, ycrcb = visible_inputs(BGR)
    expected_ycrcb = cv2.cvtColor(BGR, cv2.COLOR_BGR2YCrCb)
    np.testing.assert_array_equal(ycrcb, expected_ycrcb)
    y = expected_ycrcb[:, :, 0]
    np.testing.assert_array_equal(y3, cv2.cvtColor(cv2.cvtColor(y, cv2.COLOR_GRAY2BGR), cv2.COLOR_BGR2RGB))
    assert y3.dtype == np.uint8 and (y3 == y[..., None]).all()
    np.testing.assert_array_equal(infrared_input(BGR), cv2.cvtColor(BGR, cv2.COLOR_BGR2RGB))


def test_network_input_is_test_fusion_normalisation() -> None:
    rgb = BGR[..., ::-1]
    expected = (rgb / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    got = to_network(rgb)
    assert got.dtype == torch.float32 and got.shape == (1, 3, 37, 53)
    np.testing.assert_array_equal(got[0].numpy(), expected.transpose(2, 0, 1).astype(np.float32))


def test_truncation_then_convert_scale_abs() -> None:
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    # values that land just below/above integers, below 0 and above 255
    pixel = np.array([-3.0, -0.2, 0.0, 0.999, 1.0, 17.5, 17.9999, 128.01, 254.99, 255.0, 255.5, 400.0])
    target = np.repeat(pixel[:, None], 3, 1)[None]  # (1, 12, 3)
    pred = torch.from_numpy(((target / 255 - mean) / std).astype(np.float32)).permute(2, 0, 1)[None]
    got = truncate(pred)
    values = (pred[0].permute(1, 2, 0).numpy() * std.astype(np.float32) + mean.astype(np.float32)) * 255
    expected = cv2.convertScaleAbs(np.clip(values, 0, 255).astype(np.int32))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    assert list(got[0, [0, 5, 9, 11], 0]) == [0, 17, 255, 255]  # truncated, not rounded


def test_recombine_and_resize_back_are_opencvs() -> None:
    pred = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ycrcb = cv2.cvtColor(BGR, cv2.COLOR_BGR2YCrCb)
    got = recombine(pred, ycrcb, (37, 53))
    warped = cv2.resize(ycrcb, (64, 64), interpolation=cv2.INTER_LINEAR)
    warped[:, :, 0] = cv2.cvtColor(pred, cv2.COLOR_RGB2GRAY)
    expected = cv2.resize(cv2.cvtColor(warped, cv2.COLOR_YCrCb2BGR), (53, 37), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(got, expected)
    assert got.shape == (37, 53, 3) and got.dtype == np.uint8


# -- end to end: fusebench vs the reference on the same released-format checkpoint --------------------------
def test_matches_reference_test_fusion(release: tuple[Path, RefConnect, dict], tmp_path: Path) -> None:
    path, ref, _ = release
    model = _method(path)
    assert model.cfg["weights_source"] == "file" and model.cfg["computation"] == "released"
    ours, theirs = [], []
    for ir_path, vi_path in _image_files(tmp_path):
        expected = reference_test_fusion(ref, vi_path, ir_path)
        got = model.fuse_files(ir_path, vi_path)  # what `fusebench run` calls
        got_rgb = np.repeat(got[..., None], 3, 2) if got.ndim == 2 else got
        ours.append(got_rgb.reshape(-1).astype(int))
        theirs.append(cv2.cvtColor(expected, cv2.COLOR_BGR2RGB).reshape(-1).astype(int))
    diff = np.abs(np.concatenate(ours) - np.concatenate(theirs))
    equal = (diff == 0).mean()
    print(f"released computation vs reference: {equal:.5%} of {diff.size} values equal, max diff {diff.max()}")
    assert equal >= 0.999 and diff.max() <= 1
    assert np.concatenate(theirs).std() > 20  # a non-trivial image, not a saturated one


def test_tensor_path_equals_file_path(release: tuple[Path, RefConnect, dict], tmp_path: Path) -> None:
    path, _, _ = release
    model = _method(path)
    (ir_path, vi_path), _, (grey_ir, grey_vi) = _image_files(tmp_path)
    vi = torch.from_numpy(cv2.cvtColor(cv2.imread(str(vi_path)), cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None] / 255
    ir = torch.from_numpy(cv2.imread(str(ir_path), cv2.IMREAD_GRAYSCALE))[None, None] / 255
    out = model.fuse_images(ir, vi)
    np.testing.assert_array_equal(np.round(out[0].permute(1, 2, 0).numpy() * 255), model.fuse_files(ir_path, vi_path))
    vi_g = torch.from_numpy(cv2.imread(str(grey_vi), cv2.IMREAD_GRAYSCALE))[None, None] / 255
    ir_g = torch.from_numpy(cv2.imread(str(grey_ir), cv2.IMREAD_GRAYSCALE))[None, None] / 255
    grey = model.fuse_images(ir_g, vi_g)
    assert grey.shape == (1, 1, 120, 160)
    np.testing.assert_array_equal(np.round(grey[0, 0].numpy() * 255), model.fuse_files(grey_ir, grey_vi))
    torch.testing.assert_close(model.fuse(ir_g, vi_g), grey)


def test_official_runs_without_autograd(release: tuple[Path, RefConnect, dict]) -> None:
    model = _method(release[0])
    seen = []
    decoded = model.decoded
    model.decoded = lambda *a: (seen.append(torch.is_inference_mode_enabled()), decoded(*a))[1]  # type: ignore
    out = model.official(torch.rand(1, 1, 20, 30), torch.rand(1, 3, 20, 30))
    assert seen == [True] and not out.requires_grad


def test_closed_form_equals_batch_axis_attention_at_b1(release: tuple[Path, RefConnect, dict]) -> None:
    path, ref, _ = release
    model = _method(path)
    vi, ir = torch.randn(1, 1600, DIM), torch.randn(1, 1600, DIM)
    with torch.no_grad():
        torch.testing.assert_close(model.fusion(vi, ir, ref.model2.pos_embed[0]), ref.model2(vi, ir),
                                   atol=1e-5, rtol=1e-5)
        for p in model.fusion.cross_model.parameters():  # the CFM has no effect at B=1
            p.normal_()
        torch.testing.assert_close(model.fusion(vi, ir, ref.model2.pos_embed[0]), ref.model2(vi, ir),
                                   atol=1e-5, rtol=1e-5)
        # what the official module does with B=2 (training): positions mix across the batch
        two = torch.randn(2, 1600, DIM), torch.randn(2, 1600, DIM)
        assert (ref.model2(*two)[1] - ref.model2(two[0][1:], two[1][1:])[0]).abs().max() > 1e-3


def test_position_tables_are_checked_at_load(release: tuple[Path, RefConnect, dict], tmp_path: Path) -> None:
    _, _, state = release
    bad = dict(state)
    bad["model1.decoder_pos_embed"] = state["model1.decoder_pos_embed"] + 0.01
    path = tmp_path / "shifted.pth"
    torch.save({"model": bad}, path)
    with pytest.raises(WeightsError, match=r"shifted.pth: model1.decoder_pos_embed is not the fixed 2-D sin-cos "
                                           r"table of a 40x40 grid"):
        _method(path)
    with pytest.raises(WeightsError, match=r"final_new_60.pth: model1.pos_embed has shape \(1, 1600, 32\), but this "
                                           r"model warps to 64x64 .*--set warp=640"):
        _method(release[0], warp=64)


def test_load_errors_name_file_and_keys(tmp_path: Path, release: tuple[Path, RefConnect, dict]) -> None:
    _, _, state = release
    broken = {k: v for k, v in state.items() if not k.startswith("model2.fc1.")}
    broken["model3.extra"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save({"model": broken}, path)
    with pytest.raises(
        WeightsError,
        match=r"broken.pth: not a MaeFuse checkpoint for this size: unexpected keys "
        r"\['model3.extra'\]; missing keys \['model2.fc1.bias', 'model2.fc1.weight'\]",
    ):
        _method(path)
    torch.save({"model": {k: v for k, v in state.items() if k != "model1.norm.weight"}}, path)
    with pytest.raises(WeightsError, match=r"\(model1.\*\): does not fit this MAE.*missing keys \['norm.weight'\]"):
        _method(path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(release[0].read_bytes()[:1000])
    with pytest.raises(WeightsError, match=r"truncated.pth: cannot read weights"):
        _method(truncated)


def test_output_format_png_by_default_or_the_inputs(release: tuple[Path, RefConnect, dict], tmp_path: Path) -> None:
    assert _method(release[0]).output_path(tmp_path, "a", "x/vi/a.jpg") == tmp_path / "a.png"
    model = _method(release[0], output_format="input")
    assert model.cfg["output_format"] == "input"
    out = model.output_path(tmp_path, "a", "x/vi/a.jpg")
    assert out == tmp_path / "a.jpg"
    image = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    model.write_output(out, image)
    np.testing.assert_array_equal(cv2.imread(str(out)), cv2.imdecode(cv2.imencode(".jpg", image[..., ::-1])[1], 1))
    with pytest.raises(ValueError, match="output_format must be 'png' or 'input'"):
        _method(release[0], output_format="jpg")


def test_released_weights_come_from_the_cache(
    release: tuple[Path, RefConnect, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("FUSEBENCH_OFFLINE", "1")
    cached = released_weights_path()
    assert cached == tmp_path / "weights" / "maefuse" / "final_new_60.pth"
    with pytest.raises(WeightsError, match=r"drive.google.com/file/d/18N6tn78VztQOvobVWu6J-RJHo3jsBKkk") as info:
        create_method("maefuse-official", arch="test")
    assert str(cached) in str(info.value) and "--weights PATH" in str(info.value)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(release[0].read_bytes())
    model = create_method("maefuse-official", arch="test")
    assert model.cfg["weights_source"] == "released" and model.cfg["weights"] == str(cached)


def test_registered_and_not_trainable() -> None:
    assert "maefuse-official" in list_methods()
    assert MaeFuseOfficial.trainable is False


def test_runs_on_cuda(cuda: torch.device, release: tuple[Path, RefConnect, dict]) -> None:
    model = _method(release[0])
    vi, ir = torch.rand(1, 3, 37, 53), torch.rand(1, 1, 37, 53)
    cpu = model.fuse_images(ir, vi)
    gpu = model.to(cuda).fuse_images(ir.to(cuda), vi.to(cuda)).cpu()
    assert (cpu - gpu).abs().max() <= 1 / 255 + 1e-6
