"""The MaeFuse method: any size in, same size out; batch independence; weights files; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fusebench.methods import WeightsError, create_method
from fusebench.methods.maefuse.model import MaeFuse, checkpoint_filter_fn


@pytest.fixture(scope="module")
def model() -> MaeFuse:
    return create_method("maefuse-test").eval()


def _pair(n: int = 2, h: int = 37, w: int = 53) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n * h * w)
    return torch.rand(n, 1, h, w, generator=g), torch.rand(n, 1, h, w, generator=g)


@pytest.mark.parametrize("size", [(37, 53), (16, 16), (5, 70), (33, 17)])
def test_any_size_returns_the_input_size(model: MaeFuse, size: tuple[int, int]) -> None:
    ir, vi = _pair(1, *size)
    out = model.fuse_batch(ir, vi)
    assert out.shape == ir.shape
    assert 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("name", ["maefuse-test", "mae-mean", "maefuse-irguide"])
def test_variants_run_with_random_weights(name: str) -> None:
    method = create_method(name, random_init=True)
    ir, vi = _pair(1, 20, 30)
    assert method.fuse_batch(ir, vi).shape == (1, 1, 20, 30)


def test_mae_mean_decodes_the_mean_of_the_token_maps() -> None:
    method = create_method("mae-mean", random_init=True)
    ir, vi = _pair(1, 32, 48)
    bb = method.backbone
    with torch.no_grad():
        x = torch.cat([vi, ir]).expand(-1, 3, -1, -1)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        tokens = bb.encode((x - mean) / std)
        rgb = bb.decode((tokens[:1] + tokens[1:]) / 2, (2, 3)) * std + mean
        expected = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).clamp(0, 1)[:, None]
    torch.testing.assert_close(method.fuse(ir, vi), expected, atol=1e-5, rtol=1e-5)


def test_output_of_a_pair_does_not_depend_on_its_batch_mates(model: MaeFuse) -> None:
    ir, vi = _pair(3)
    batched = model.fuse(ir, vi)
    ir2, vi2 = ir.clone(), vi.clone()
    ir2[1:], vi2[1:] = 1 - ir2[1:], vi2[1:].flip(-1)
    torch.testing.assert_close(model.fuse(ir2, vi2)[:1], batched[:1], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(model.fuse(ir[:1], vi[:1]), batched[:1], atol=1e-6, rtol=1e-5)


def test_colour_visible_images_keep_their_chroma(model: MaeFuse) -> None:
    ir, _ = _pair(1, 24, 24)
    vi = torch.rand(1, 3, 24, 24)
    assert model.fuse_images(ir, vi).shape == (1, 3, 24, 24)


def test_bad_inputs_give_clear_errors(model: MaeFuse) -> None:
    ir, vi = _pair(1, 16, 16)
    with pytest.raises(ValueError, match=r"same batch size, height and width. Got ir: \(1, 1, 16, 16\) and vi"):
        model.fuse(ir, vi[..., :15])
    with pytest.raises(ValueError, match=r"Expected `ir` in \[0, 1\]"):
        model.fuse(ir * 3, vi)
    with pytest.raises(ValueError, match="Expected visible luminance"):
        model.fuse(ir, vi.expand(-1, 3, -1, -1))
    with pytest.raises(TypeError, match="torch tensors"):
        model.fuse(ir.numpy(), vi)  # type: ignore[arg-type]


def test_a_variant_without_weights_says_how_to_get_them() -> None:
    """(``maefuse`` itself defaults to the released checkpoint; ``maefuse-base`` has no published weights.)"""
    with pytest.raises(WeightsError, match=r"no trained fusion weights. Train them with `fusebench train --method "
                       r"maefuse-base.*--weights.*random_init=true"):
        create_method("maefuse-base")


def test_fusion_weights_round_trip(model: MaeFuse, tmp_path: Path) -> None:
    path = tmp_path / "fusion.safetensors"
    model.save_weights(path, parts=("fusion.",))
    assert set(load_file(str(path))) == {k for k in model.state_dict() if k.startswith("fusion.")}
    fresh = create_method("maefuse-test")
    fresh.backbone.load_state_dict(model.backbone.state_dict())
    fresh.load_weights(path)
    ir, vi = _pair(1)
    torch.testing.assert_close(fresh.fuse(ir, vi), model.fuse(ir, vi), atol=0, rtol=0)


def test_bad_weights_files_list_the_keys(model: MaeFuse, tmp_path: Path) -> None:
    state = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("fusion.")}
    missing = dict(state)
    del missing["fusion.ln.weight"]
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(WeightsError, match=r"missing keys \['fusion.ln.weight'\]"):
        create_method("maefuse-test", weights=tmp_path / "missing.safetensors")
    wrong = {**state, "fusion.fc1.weight": torch.zeros(3, 3)}
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(WeightsError, match=r"shape mismatch .* fusion.fc1.weight: file \(3, 3\)"):
        create_method("maefuse-test", weights=tmp_path / "wrong.safetensors")
    extra = {**state, "fusion.bogus": torch.zeros(1)}
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(WeightsError, match=r"unexpected keys \['fusion.bogus'\]"):
        create_method("maefuse-test", weights=tmp_path / "extra.safetensors")
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "extra.safetensors").read_bytes()[:100])
    with pytest.raises(WeightsError, match="truncated or not a checkpoint"):
        create_method("maefuse-test", weights=tmp_path / "cut.safetensors")


def _official_layout(model: MaeFuse) -> dict[str, torch.Tensor]:
    """A state dict laid out like the released ``ConnectModel_MAE_Fuion`` (reference 1.4, 1.8)."""
    out = {f"model1.{k}": v for k, v in model.backbone.state_dict().items() if k != "mask_token"}
    out |= {f"model2.{k}": v for k, v in model.fusion.state_dict().items()}
    grid = torch.zeros(1, 4, model.backbone.embed_dim)
    out |= {"model1.pos_embed": grid, "model1.decoder_pos_embed": grid[..., :32], "model2.pos_embed": grid}
    return out


def test_official_checkpoint_keys_map_onto_fusebench(model: MaeFuse, tmp_path: Path) -> None:
    official = _official_layout(model)
    mapped = checkpoint_filter_fn(official)
    assert mapped["fusion.cross_model.in_proj_weight"] is official["model2.cross_model.in_proj_weight"]
    assert mapped["backbone.blocks.0.attn.qkv.weight"] is official["model1.blocks.0.attn.qkv.weight"]
    assert not {"backbone.pos_embed", "backbone.decoder_pos_embed", "fusion.pos_embed"} & set(mapped)
    torch.save({"model": official}, tmp_path / "final_new_60.pth")
    fresh = create_method("maefuse-test", weights=tmp_path / "final_new_60.pth")
    ir, vi = _pair(1)
    torch.testing.assert_close(fresh.fuse(ir, vi), model.fuse(ir, vi), atol=0, rtol=0)
    bare = create_method("maefuse-test", backbone_weights=tmp_path / "final_new_60.pth", random_init=True)
    assert bare.cfg["random_init"]


def test_cuda_bf16_output_is_close_to_fp32(cuda: torch.device) -> None:
    fp32 = create_method("maefuse-test").to(cuda).eval()
    bf16 = create_method("maefuse-test", precision="bf16").to(cuda).eval()
    bf16.load_state_dict(fp32.state_dict())
    ir, vi = (t.to(cuda) for t in _pair(2, 64, 80))
    mse = ((fp32.fuse(ir, vi) - bf16.fuse(ir, vi)) ** 2).mean().item()
    assert 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item() > 30.0
