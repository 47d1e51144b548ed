"""Guided training at a tiny size: each stage does its job, locking freezes, runs resume exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import fusebench.methods.maefuse.train as guided
from fusebench.datasets.base import PairDataset, pairs_from_folders
from fusebench.images import write_png
from fusebench.methods import create_method
from fusebench.methods.maefuse.train import (
    GuidedConfig,
    set_trainable,
    stage_parameters,
    stage_step,
    train_guided,
)
from fusebench.training import CheckpointError

CPU = torch.device("cpu")
TINY = {"cfm_align_steps": 2, "cfm_fusion_steps": 2, "mfm_align_steps": 2, "mfm_fusion_steps": 2,
        "batch_size": 2, "patch_size": 32, "patches_per_image": 2, "checkpoint_every": 2, "log_every": 1}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> PairDataset:
    """Three 40x48 synthetic pairs: a warm blob in IR, texture and edges in the visible image."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:48]
    for k in range(3):
        cy, cx = rng.integers(8, 32), rng.integers(8, 40)
        ir = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 40.0) * 0.8 + 0.1
        vi = 0.5 + 0.3 * np.sin(xx / (2 + k)) * (yy > 20) + 0.05 * rng.standard_normal((40, 48))
        write_png(root / "ir" / f"{k}.png", np.clip(ir, 0, 1).astype(np.float32))
        write_png(root / "vi" / f"{k}.png", np.clip(vi, 0, 1).astype(np.float32))
    return PairDataset("synthetic", pairs_from_folders(root / "ir", root / "vi"), split="train")


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    smooth = torch.nn.functional.interpolate(torch.rand(4, 1, 4, 4, generator=g), size=(32, 32), mode="bilinear")
    return smooth[:2], smooth[2:]


def _run_stage(stage: str, steps: int, lr: float = 2e-3) -> list[float]:
    model = create_method("maefuse-test")
    cfg = GuidedConfig.from_overrides({}, {"lr": lr})
    params = stage_parameters(model, stage)
    set_trainable(model, params)
    optimizer = guided._optimizer(params, cfg)
    ir, vi = _batch()
    losses = []
    for _ in range(steps):
        loss = stage_step(model, stage, ir, vi, cfg)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_alignment_stage_drives_the_latent_mse_down() -> None:
    losses = _run_stage("cfm_align", 12)
    assert losses[-1] < 0.5 * losses[0]


def test_fusion_stage_lowers_the_fusion_loss() -> None:
    losses = _run_stage("mfm_fusion", 16)
    assert losses[-1] < 0.95 * losses[0]


def test_hierarchical_locking_freezes_the_cfm() -> None:
    model = create_method("maefuse-test")
    cfg = GuidedConfig.from_overrides({}, {"lr": 1e-2})
    cfm_before = {k: v.clone() for k, v in model.fusion.cross_model.state_dict().items()}
    mfm_before = model.fusion.merge_model.in_proj_weight.detach().clone()
    params = stage_parameters(model, "mfm_fusion")
    set_trainable(model, params)
    optimizer = guided._optimizer(params, cfg)
    ir, vi = _batch()
    for _ in range(3):
        optimizer.zero_grad()
        stage_step(model, "mfm_fusion", ir, vi, cfg)["loss"].backward()
        optimizer.step()
    assert not any(p.requires_grad for p in model.fusion.cross_model.parameters())
    assert all(p.grad is None for p in model.fusion.cross_model.parameters())
    assert not any(p.requires_grad for p in model.backbone.parameters())
    for k, v in model.fusion.cross_model.state_dict().items():
        assert torch.equal(v, cfm_before[k]), k
    assert not torch.equal(model.fusion.merge_model.in_proj_weight, mfm_before)


def test_each_stage_trains_exactly_its_parameter_set() -> None:
    model = create_method("maefuse-test")
    fusion = {id(p) for p in model.fusion.parameters()}
    cfm = {id(p) for p in model.fusion.cross_model.parameters()}
    assert {id(p) for p in stage_parameters(model, "cfm_align")} == cfm
    assert {id(p) for p in stage_parameters(model, "mfm_fusion")} == fusion - cfm
    assert {id(p) for p in stage_parameters(model, "direct_fusion")} == fusion
    decoder = {id(p) for n, p in model.backbone.named_parameters() if n.startswith("decoder")}
    assert {id(p) for p in stage_parameters(model, "decoder")} == (fusion - cfm) | decoder


def test_direct_fusion_gives_every_fusion_parameter_a_gradient() -> None:
    model = create_method("maefuse-test")
    cfg = GuidedConfig()
    set_trainable(model, stage_parameters(model, "direct_fusion"))
    stage_step(model, "direct_fusion", *_batch(), cfg)["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.fusion.parameters())


def test_run_folder_records_everything(pairs: PairDataset, tmp_path: Path) -> None:
    weights = train_guided("maefuse-test", pairs, tmp_path, device=CPU, overrides={**TINY, "loss": "official"},
                           seed=3, progress=False)
    assert weights == tmp_path / "maefuse-test.safetensors"
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["seed"] == 3 and config["loss"] == "official" and config["mfm_fusion_steps"] == 2
    assert "torch" in config["versions"]
    rows = (tmp_path / "losses.csv").read_text().splitlines()
    assert len(rows) == 1 + 8 and rows[1].startswith("1,cfm_align")
    assert (tmp_path / "losses.png").stat().st_size > 0
    assert all(k.startswith("fusion.") for k in load_file(str(weights)))
    create_method("maefuse-test", weights=weights)  # the output loads strictly


def test_interrupted_run_resumes_to_the_same_weights(pairs: PairDataset, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    straight = train_guided("maefuse-test", pairs, tmp_path / "a", device=CPU, overrides=TINY, seed=0, progress=False)
    calls = {"n": 0}
    real = guided.stage_step

    def crash_at_step_6(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(guided, "stage_step", crash_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        train_guided("maefuse-test", pairs, tmp_path / "b", device=CPU, overrides=TINY, seed=0, progress=False)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 4
    monkeypatch.setattr(guided, "stage_step", real)
    resumed = train_guided("maefuse-test", pairs, tmp_path / "b", device=CPU, overrides=TINY, seed=0, progress=False)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    assert (tmp_path / "a" / "losses.csv").read_text() == (tmp_path / "b" / "losses.csv").read_text()


def test_resume_with_other_settings_is_refused(pairs: PairDataset, tmp_path: Path) -> None:
    train_guided("maefuse-test", pairs, tmp_path, device=CPU, overrides=TINY, seed=0, progress=False)
    with pytest.raises(ValueError, match=r"different settings \(changed: \['alpha'\]\).*another --out"):
        train_guided("maefuse-test", pairs, tmp_path, device=CPU, overrides={**TINY, "alpha": 2.0}, seed=0,
                     progress=False)


def test_corrupt_checkpoint_is_a_clear_error(pairs: PairDataset, tmp_path: Path) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        train_guided("maefuse-test", pairs, tmp_path, device=CPU, overrides=TINY, seed=0, progress=False)


def test_unknown_setting_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown training settings \['stage_step'\]; valid settings: .*cfm_align_steps"):
        GuidedConfig.from_overrides({}, {"stage_step": 3})
    with pytest.raises(ValueError, match="loss must be"):
        GuidedConfig.from_overrides({}, {"loss": "ssim"})


def test_training_crops_see_the_positions_of_full_size_images(pairs: PairDataset, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: every crop used to sit at patch positions 0..P/16-1 (encoder, fusion layer and decoder
    alike), so a layer aligned on 128-px crops never saw the positions of a 768x576 image and decoded TNO to
    noise. Batches now get a (seed, step)-determined shift of the position tables, as in MAE pre-training."""
    seen: list[tuple[int, int]] = []
    real = guided.stage_step

    def record(model, stage, ir, vi, cfg, offset=(0, 0)):
        seen.append(offset)
        return real(model, stage, ir, vi, cfg, offset)

    monkeypatch.setattr(guided, "stage_step", record)
    train_guided("maefuse-test", pairs, tmp_path, device=CPU, overrides={**TINY, "max_pos_offset": 10}, seed=0,
                 progress=False)
    assert len(seen) == 8 and any(o != (0, 0) for o in seen)
    assert all(0 <= r <= 8 and 0 <= c <= 8 for r, c in seen)  # 32-px crops: grid 2, positions up to 9
    cfg = GuidedConfig.from_overrides({"recipe": "fusebench"}, {"patch_size": 32, "max_pos_offset": 10})
    assert [guided.pos_offset(cfg, 0, s) for s in range(8)] == seen  # a pure function of (seed, step)
    assert guided.pos_offset(GuidedConfig.from_overrides({"recipe": "fusebench"}, {"max_pos_offset": 0}), 0, 5) == (0, 0)


def test_a_shifted_crop_is_encoded_and_decoded_as_that_window_of_the_full_image() -> None:
    """The offset reaches all three position tables: the crop's patch embedding equals the full image's
    embedding at that window, and fusion/decoding use the shifted tables."""
    model = create_method("maefuse-test")
    g = torch.Generator().manual_seed(1)
    ir, vi = torch.rand(2, 1, 1, 64, 96, generator=g).unbind(0)
    crop = (slice(None), slice(None), slice(16, 48), slice(32, 64))  # patch rows 1-2, cols 2-3
    mae = model.backbone
    full, _ = mae.embed(torch.cat([vi, ir]).expand(-1, 3, -1, -1))
    window = full.reshape(2, 4, 6, -1)[:, 1:3, 2:4].reshape(2, 4, -1)
    part, _ = mae.embed(torch.cat([vi[crop], ir[crop]]).expand(-1, 3, -1, -1), (1, 2))
    torch.testing.assert_close(part, window)
    with torch.no_grad():
        a = model.encode_pair(ir[crop], vi[crop], (1, 2))[0]
        b = model.encode_pair(ir[crop], vi[crop])[0]
        assert not torch.allclose(a, b)
        pv, pi, grid, size = model.encode_pair(ir[crop], vi[crop], (1, 2))
        shifted = model.decode_luma(model.fuse_tokens(pv, pi, grid, offset=(1, 2)), grid, size, (1, 2))
        plain = model.decode_luma(model.fuse_tokens(pv, pi, grid), grid, size)
        assert shifted.shape == plain.shape == ir[crop].shape and not torch.allclose(shifted, plain)


def test_mae_crossattn_recipe_skips_alignment() -> None:
    cfg = GuidedConfig.from_overrides(guided.RECIPES["mae-crossattn"], {})
    assert [s for s, _, _ in cfg.schedule()] == ["direct_fusion"]


# -- recipes ---------------------------------------------------------------------------------------------------

def test_paper_recipe_is_the_default_for_maefuse() -> None:
    """Eq. 5 as printed, Eq. 4, 640x640 warps of whole pairs without crops or flips or position shifts,
    AdamW at a fixed 1e-4 with the official batch of 32, epochs per module split 20/80 (Algorithm 1)."""
    for variant in ("maefuse", "maefuse-base"):
        cfg = GuidedConfig.from_overrides(guided.RECIPES[variant], {})
        assert cfg.recipe == "paper" and cfg.align_loss == "mse" and cfg.loss == "paper"
        assert cfg.warp_size == 640 and not cfg.flip and cfg.max_pos_offset == 0
        assert cfg.epochs == 80 and cfg.align_fraction == 0.2 and cfg.fusion_align_weight == 0.0
        assert cfg.lr == 1e-4 and cfg.align_lr is None and cfg.batch_size == 32
        assert cfg.trained_grid() == (40, 40)
    resolved = GuidedConfig.from_overrides({}, {"epochs": 10}).resolved(steps_per_epoch=7)
    assert resolved.stage_steps() == {"cfm_align": 14, "cfm_fusion": 56, "mfm_align": 14, "mfm_fusion": 56,
                                      "direct_fusion": 0, "decoder": 0}
    with pytest.raises(ValueError, match=r"counts epochs .*\['cfm_align_steps'\].*epochs=null"):
        GuidedConfig.from_overrides({}, {"cfm_align_steps": 3})
    assert GuidedConfig.from_overrides({}, {"epochs": None, "cfm_align_steps": 3}).cfm_align_steps == 3
    with pytest.raises(ValueError, match="recipe must be one of paper, fusebench"):
        GuidedConfig.from_overrides({}, {"recipe": "official"})


@pytest.mark.parametrize("variant", ["maefuse-compact", "mae-crossattn"])
def test_fusebench_recipe_reproduces_the_shipped_weights_settings(variant: str) -> None:
    """The recipes of the shipped files give back every setting recorded when they were trained (the
    run-specific ones were given on the command line: precision, checkpointing, logging, backbone)."""
    from fusebench.methods.maefuse.model import WEIGHTS_DIR

    recorded = json.loads((WEIGHTS_DIR / "maefuse_compact.json").read_text())[variant]["config"]
    cfg = GuidedConfig.from_overrides(guided.RECIPES[variant], {})
    given = {"precision", "grad_checkpointing", "checkpoint_every", "log_every", "backbone_weights"}
    fields = {f for f in recorded if hasattr(cfg, f)} - given
    assert cfg.recipe == "fusebench" and cfg.epochs is None and len(fields) > 15
    assert {f: getattr(cfg, f) for f in fields} == {f: recorded[f] for f in fields}


def test_paper_recipe_trains_whole_warped_pairs_for_epochs_split_20_80(pairs: PairDataset, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, tuple[int, ...], tuple[int, int]]] = []
    real = guided.stage_step

    def record(model, stage, ir, vi, cfg, offset=(0, 0)):
        seen.append((stage, tuple(ir.shape), offset))
        return real(model, stage, ir, vi, cfg, offset)

    monkeypatch.setattr(guided, "stage_step", record)
    overrides = {"recipe": "paper", "warp_size": 64, "epochs": 5, "batch_size": 1, "log_every": 1}
    weights = train_guided("maefuse-test", pairs, tmp_path, device=CPU, overrides=overrides, seed=0,
                           progress=False)
    stages = [s for s, _, _ in seen]
    # 3 pairs, batch 1: 3 steps per epoch, 15 per module, of which round(0.2 * 15) = 3 align
    assert stages == ["cfm_align"] * 3 + ["cfm_fusion"] * 12 + ["mfm_align"] * 3 + ["mfm_fusion"] * 12
    assert all(shape == (1, 1, 64, 64) and offset == (0, 0) for _, shape, offset in seen)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["recipe"] == "paper" and config["epochs"] == 5 and config["cfm_align_steps"] == 3
    assert config["align_loss"] == "mse" and config["trained_grid"] == [4, 4] and config["mfm"] == "separate"
    method = create_method("maefuse-test", weights=weights)
    assert method.cfg["trained_grid"] == (4, 4) and method.fusion.mfm_mode == "separate"


def test_paper_alignment_is_eq5_as_printed() -> None:
    model = create_method("maefuse-test")
    cfg = GuidedConfig.from_overrides({}, {})
    ir, vi = _batch()
    losses = stage_step(model, "mfm_align", ir, vi, cfg)
    with torch.no_grad():
        phi_v, phi_i, grid, _ = model.encode_pair(ir, vi)
        phi_f = model.fuse_tokens(phi_v, phi_i, grid)
    expected = ((phi_i + phi_v) / 2 - phi_f).pow(2).mean()
    torch.testing.assert_close(losses["loss"].detach(), expected)
    assert set(losses) == {"loss", "align"}


def test_mfm_form_is_a_training_setting_recorded_in_the_weights(pairs: PairDataset, tmp_path: Path) -> None:
    weights = train_guided("maefuse-test", pairs, tmp_path, device=CPU, overrides={**TINY, "mfm": "joint"},
                           seed=0, progress=False)
    method = create_method("maefuse-test", weights=weights)
    assert method.cfg["mfm"] == "joint" and method.fusion.mfm_mode == "joint"
    assert create_method("maefuse-test", weights=weights, mfm="separate").fusion.mfm_mode == "separate"


def test_maefuse_irguide_trains_its_mfm_with_the_infrared_guide(pairs: PairDataset, tmp_path: Path) -> None:
    """Paper Sec. 4.4: the infrared tokens are the MFM's guide; no CFM stage runs, the loss falls."""
    overrides = {"mfm_align_steps": 12, "mfm_fusion_steps": 2, "batch_size": 2, "patch_size": 32,
                 "patches_per_image": 2, "log_every": 1, "checkpoint_every": 100, "precision": "fp32",
                 "grad_checkpointing": False}
    weights = train_guided("maefuse-irguide", pairs, tmp_path, device=CPU, overrides=overrides, seed=0,
                           progress=False)
    rows = (tmp_path / "losses.csv").read_text().splitlines()[1:]
    stages = [r.split(",")[1] for r in rows]
    assert stages == ["mfm_align"] * 12 + ["mfm_fusion"] * 2
    align = [float(r.split(",")[2]) for r in rows[:12]]
    assert sum(align[-3:]) / 3 < 0.8 * sum(align[:3]) / 3
    method = create_method("maefuse-irguide", weights=weights)
    assert method.fusion.guide == "ir" and method.cfg["weights"] == str(weights)
    assert not torch.equal(method.fusion.fc1.weight, create_method("maefuse-irguide").fusion.fc1.weight)
    ir, vi = _batch()
    before = method.fuse(ir, vi)
    with torch.no_grad():
        for p in method.fusion.cross_model.parameters():
            p.normal_()
    torch.testing.assert_close(method.fuse(ir, vi), before, atol=0, rtol=0)  # no CFM in the computation


def test_maefuse_trains_from_the_resume_mae_by_default() -> None:
    from fusebench.methods.mae.checkpoints import DEFAULT_CFGS, RESUME_MAE
    from fusebench.methods.maefuse.model import default_cfgs

    assert default_cfgs["maefuse"]["train_backbone"] == RESUME_MAE and RESUME_MAE in DEFAULT_CFGS


def test_cli_trains_maefuse_irguide(pairs: PairDataset, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fusebench.cli import main
    from fusebench.methods import METHODS

    assert METHODS.get("maefuse-irguide").meta["trainable"]
    folder = Path(pairs.pairs[0].ir).parents[1]
    args = ["train", "--method", "maefuse-irguide", "--dataset", str(folder), "--out", str(tmp_path / "run"),
            "--device", "cpu", "--no-progress"]
    for key, value in {"mfm_align_steps": 2, "mfm_fusion_steps": 1, "batch_size": 2, "patch_size": 32,
                       "patches_per_image": 1, "precision": "fp32", "grad_checkpointing": "false"}.items():
        args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "maefuse-irguide.safetensors").is_file()
