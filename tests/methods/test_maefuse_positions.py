"""No fused image depends on positions the fusion layer never saw: the trained grid is recorded with the
weights, and larger inputs are tiled (default), warped, or refused. Plus what older files and the shipped
maefuse-compact record (joint MFM, 40x40 grid) and that compact still gives its previous output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fusebench.datasets.base import PairDataset, pairs_from_folders
from fusebench.images import write_png
from fusebench.methods import create_method
from fusebench.methods.maefuse.model import MaeFuse, trained_grid_of, weights_training_cfg
from fusebench.methods.maefuse.train import train_guided

CPU = torch.device("cpu")


def _pair(h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)


def _model(grid: tuple[int, int] | None, large_input: str = "tile") -> MaeFuse:
    """The same random tiny model every time, with ``grid`` as its trained grid."""
    torch.manual_seed(0)
    model = create_method("maefuse-test", large_input=large_input).eval()
    model.cfg["trained_grid"] = grid
    return model


class _Positions:
    """Records every (grid, offset) the position tables are asked for (encoder, fusion layer, decoder)."""

    def __init__(self, model: MaeFuse, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[tuple[int, int], tuple[int, int]]] = []
        real = model.backbone.pos_embed

        def spy(dim, grid, device, offset=(0, 0)):
            self.calls.append((tuple(grid), tuple(offset)))
            return real(dim, grid, device, offset)

        monkeypatch.setattr(model.backbone, "pos_embed", spy)

    def max_position(self) -> tuple[int, int]:
        return (max(g[0] + o[0] for g, o in self.calls), max(g[1] + o[1] for g, o in self.calls))


def test_inputs_within_the_trained_grid_run_in_one_pass() -> None:
    ir, vi = _pair(37, 53)  # grid 3x4
    torch.testing.assert_close(_model((3, 4)).fuse(ir, vi), _model(None).fuse(ir, vi), atol=0, rtol=0)


def test_larger_inputs_are_tiled_to_the_trained_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model((3, 4))
    spy = _Positions(model, monkeypatch)
    ir, vi = _pair(90, 150)  # grid 6x10: over the trained 3x4
    out = model.fuse(ir, vi)
    assert out.shape == ir.shape and 0 <= out.min() and out.max() <= 1
    assert spy.calls and spy.max_position() <= (3, 4)
    assert all(offset == (0, 0) for _, offset in spy.calls)
    # the top-left corner lies in the first window only (outside every overlap): it is that window fused alone
    alone = _model(None).fuse(ir[..., :48, :64], vi[..., :48, :64])
    torch.testing.assert_close(out[..., :32, :48], alone[..., :32, :48], atol=1e-6, rtol=1e-5)
    # and nothing of the untiled computation (which uses positions up to 6x10) leaks in
    assert not torch.allclose(out, _model(None).fuse(ir, vi), atol=1e-3)


def test_tiles_blend_without_seams() -> None:
    """A constant scene fused in tiles stays as flat as fused in one pass (no window edges show)."""
    model = _model((2, 2))
    ir = torch.full((1, 1, 64, 96), 0.6)
    vi = torch.full((1, 1, 64, 96), 0.3)
    tiled, whole = model.fuse(ir, vi), _model(None).fuse(ir, vi)
    assert tiled.std() <= whole.std() * 1.5 + 1e-3


def test_larger_inputs_can_be_warped_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    ir, vi = _pair(90, 150)
    warp = _model((3, 4), "warp")
    spy = _Positions(warp, monkeypatch)
    out = warp.fuse(ir, vi)
    assert out.shape == ir.shape and spy.max_position() <= (3, 4)
    with pytest.raises(ValueError, match=r"6x10 patch grid, larger than the 3x4 grid.*large_input='tile'"):
        _model((3, 4), "error").fuse(ir, vi)
    with pytest.raises(ValueError, match="large_input must be one of tile, warp, error"):
        create_method("maefuse-test", large_input="crop")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> PairDataset:
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for k in range(2):
        write_png(root / "ir" / f"{k}.png", rng.random((40, 48)).astype(np.float32))
        write_png(root / "vi" / f"{k}.png", rng.random((40, 48)).astype(np.float32))
    return PairDataset("synthetic", pairs_from_folders(root / "ir", root / "vi"), split="train")


def test_the_trained_grid_is_stored_in_the_weights_and_enforced(pairs: PairDataset, tmp_path: Path) -> None:
    overrides = {"cfm_align_steps": 1, "cfm_fusion_steps": 1, "mfm_align_steps": 1, "mfm_fusion_steps": 1,
                 "max_pos_offset": 5, "patch_size": 32}
    weights = train_guided("maefuse-test", pairs, tmp_path, device=CPU, overrides=overrides, seed=0, progress=False)
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as handle:
        cfg = json.loads(handle.metadata()["cfg"])
    assert cfg["trained_grid"] == [5, 5] and cfg["mfm"] == "separate" and cfg["recipe"] == "fusebench"
    model = create_method("maefuse-test", weights=weights, large_input="error")
    assert model.trained_grid == (5, 5)
    model.fuse(*_pair(80, 80))  # 5x5: fine
    with pytest.raises(ValueError, match="larger than the 5x5 grid"):
        model.fuse(*_pair(80, 96))


def test_older_and_official_files_get_what_they_were_trained_with(tmp_path: Path) -> None:
    """Files written before ``mfm``/``trained_grid`` existed were all trained with the joint MFM on shifted
    crops; official checkpoints at 640x640 with two attentions."""
    model = create_method("maefuse-test")
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k.startswith("fusion.")}
    record = {"patch_size": 128, "max_pos_offset": 40}
    save_file(state, str(tmp_path / "old.safetensors"), metadata={"training": json.dumps(record), "cfg": "{}"})
    assert weights_training_cfg(tmp_path / "old.safetensors") == {"mfm": "joint", "trained_grid": (40, 40)}
    assert create_method("maefuse-test", weights=tmp_path / "old.safetensors").fusion.mfm_mode == "joint"
    official = {f"model2.{k[len('fusion.'):]}": v for k, v in state.items()}
    official |= {f"model1.{k}": v for k, v in model.backbone.state_dict().items()}
    torch.save({"model": official}, tmp_path / "final_new_60.pth")
    assert weights_training_cfg(tmp_path / "final_new_60.pth") == {"mfm": "separate", "trained_grid": (40, 40)}
    save_file(state, str(tmp_path / "bare.safetensors"))
    assert weights_training_cfg(tmp_path / "bare.safetensors") == {}
    assert trained_grid_of({"warp_size": 640}) == (40, 40)
    assert trained_grid_of({"patch_size": 224, "max_pos_offset": 0}) == (14, 14)


def test_shipped_compact_keeps_its_joint_mfm_and_previous_output() -> None:
    """maefuse-compact was trained with the joint MFM on crops shifted by up to 40 patches: its cfg says so
    and, within that grid, it gives exactly the output it gave before the MFM form became a setting."""
    model = create_method("maefuse-compact").eval()
    assert model.cfg["mfm"] == "joint" and model.fusion.mfm_mode == "joint" and model.trained_grid == (40, 40)
    g = torch.Generator().manual_seed(5)
    ir, vi = torch.rand(2, 1, 1, 96, 160, generator=g).unbind(0)
    out = model.fuse(ir, vi).double()
    # recorded with the code before this change (one softmax over both modalities)
    assert out.mean().item() == pytest.approx(0.45061709446211656, abs=1e-6)
    assert out.std().item() == pytest.approx(0.03600624151491483, abs=1e-6)
    expected = [0.4612050950527191, 0.4249846637248993, 0.46902793645858765, 0.48042887449264526,
                0.4611024558544159]
    got = [out[0, 0, a, b].item() for a, b in [(0, 0), (10, 10), (50, 120), (95, 159), (33, 77)]]
    assert got == pytest.approx(expected, abs=1e-5)
    for name in ("mae-crossattn", "maefuse-irguide"):
        assert create_method(name, random_init=True).cfg["mfm"] == "joint"
