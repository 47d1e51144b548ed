"""The FusionMethod contract: colour handled once, same-size finite output, weights that load strictly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fusebench.color import rgb_to_ycbcr
from fusebench.methods import FusionMethod, WeightsError, create_method, list_methods
from fusebench.methods.base import check_pair_tensors


class Scaled(FusionMethod):
    trainable = True

    def __init__(self) -> None:
        super().__init__(width=2)
        self.conv = nn.Conv2d(2, 1, 1)

    def fuse(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(torch.cat([ir, vi], 1)))


def test_pixel_baselines_values() -> None:
    ir = torch.tensor([[[[0.2, 0.9], [0.5, 0.0]]]])
    vi = torch.tensor([[[[0.6, 0.1], [0.5, 1.0]]]])
    torch.testing.assert_close(create_method("mean").fuse_batch(ir, vi), torch.tensor([[[[0.4, 0.5], [0.5, 0.5]]]]))
    torch.testing.assert_close(create_method("max").fuse_batch(ir, vi), torch.tensor([[[[0.6, 0.9], [0.5, 1.0]]]]))
    assert {"mean", "max", "folder"} <= set(list_methods())


def test_colour_is_restored_from_visible_chroma() -> None:
    ir = torch.rand(1, 1, 6, 5, dtype=torch.float64)
    vi = torch.rand(1, 3, 6, 5, dtype=torch.float64) * 0.6 + 0.2
    fused = create_method("max").fuse_images(ir, vi)
    ycc, vi_ycc = rgb_to_ycbcr(fused), rgb_to_ycbcr(vi)
    inside = (fused > 1e-6).all(1, keepdim=True) & (fused < 1 - 1e-6).all(1, keepdim=True)  # not out of gamut
    assert inside.sum() >= 10
    torch.testing.assert_close(ycc[:, :1][inside], torch.maximum(ir, vi_ycc[:, :1])[inside], atol=1e-6, rtol=0)
    torch.testing.assert_close(ycc[:, 1:][inside.expand(-1, 2, -1, -1)],
                               vi_ycc[:, 1:][inside.expand(-1, 2, -1, -1)], atol=1e-6, rtol=0)
    grey = create_method("mean").fuse_images(ir, vi[:, :1])
    assert grey.shape == (1, 1, 6, 5)


def test_bad_inputs_are_rejected_with_clear_messages() -> None:
    with pytest.raises(ValueError, match=r"same batch size, height and width\. Got ir: \(1, 1, 4, 4\) and vi: \(1, 3, 4, 5\)"):
        check_pair_tensors(torch.zeros(1, 1, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="`vi` contains NaN"):
        check_pair_tensors(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), float("nan")))
    with pytest.raises(ValueError, match=r"Expected `ir` in \[0, 1\]"):
        check_pair_tensors(torch.full((1, 1, 2, 2), 255.0), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"Expected `ir` of shape \(N, 1, H, W\)"):
        check_pair_tensors(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(TypeError, match="torch tensors"):
        check_pair_tensors(np.zeros((1, 1, 2, 2)), torch.zeros(1, 1, 2, 2))  # type: ignore[arg-type]


def test_method_output_contract_is_enforced() -> None:
    class Broken(FusionMethod):
        def fuse(self, ir, vi):
            return ir[..., :-1] * float("nan")

    with pytest.raises(RuntimeError, match=r"returned shape \(1, 1, 4, 3\) for pairs \['p1'\], expected \(1, 1, 4, 4\)"):
        Broken().fuse_batch(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), ids=["p1"])

    class Nan(FusionMethod):
        def fuse(self, ir, vi):
            return ir * float("nan")

    with pytest.raises(RuntimeError, match="produced NaN or inf values"):
        Nan().fuse_batch(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def test_weights_round_trip_and_mismatch_errors(tmp_path) -> None:
    model = Scaled()
    model.save_weights(tmp_path / "w.safetensors")
    other = Scaled()
    other.load_weights(tmp_path / "w.safetensors")
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        torch.testing.assert_close(a, b)

    torch.save({"model": {"conv.weight": torch.zeros(1, 3, 1, 1)}}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"bad\.pth: weights do not fit.*missing keys \['conv\.bias'\].*shape mismatch"):
        Scaled().load_weights(tmp_path / "bad.pth")
    (tmp_path / "trunc.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes()[:20])
    with pytest.raises(WeightsError, match=r"trunc\.safetensors: cannot read weights"):
        Scaled().load_weights(tmp_path / "trunc.safetensors")
    with pytest.raises(WeightsError, match="weights file not found"):
        Scaled().load_weights(tmp_path / "none.safetensors")


def test_folder_passes_images_through_by_id(tmp_path) -> None:
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (4, 5), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "a.png")
    Image.fromarray(grey).save(tmp_path / "b.bmp")
    method = create_method("folder", path=tmp_path)
    ir, vi = torch.zeros(1, 1, 4, 5), torch.zeros(1, 3, 4, 5)
    out = method.fuse_images(ir, vi, ids=["a"])
    np.testing.assert_array_equal(np.round(out[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8), colour)
    out = method.fuse_images(ir, vi, ids=["b"])
    assert out.shape == (1, 1, 4, 5)
    with pytest.raises(ValueError, match=r"no fused image for pair 'c'"):
        method.fuse_images(ir, vi, ids=["c"])
    with pytest.raises(ValueError, match=r"a\.png: size 5x4 differs from the source pair \(6x4\)"):
        method.fuse_images(torch.zeros(1, 1, 4, 6), torch.zeros(1, 3, 4, 6), ids=["a"])
    with pytest.raises(TypeError, match="needs one pair id"):
        method.fuse_batch(ir, vi[:, :1])
