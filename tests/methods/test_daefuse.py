"""DAE-Fuse re-implementation: losses by hand, any-size inference, both training phases, resumable runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from fusebench.datasets.base import PairDataset, pairs_from_folders
from fusebench.files import sha256_file
from fusebench.methods import WeightsError, create_method
from fusebench.methods.daefuse import losses as L
from fusebench.methods.daefuse.model import WEIGHTS_DIR, default_cfgs
from fusebench.methods.daefuse.train import DAEFuseTrainConfig, Trainer, train_daefuse

TINY = {"patch_size": 32, "batch_size": 2, "patches_per_image": 2, "disc_width": 8, "disc_layers": 2,
        "lr": 1e-3, "lr_disc": 1e-3}


def _smooth(n: int, size: int = 32) -> torch.Tensor:
    """Smooth random images (structure at 4-px scale) in [0, 1]."""
    return torch.nn.functional.interpolate(torch.rand(n, 1, size // 4, size // 4), size=(size, size),
                                           mode="bilinear")


@pytest.fixture(scope="module")
def msrs_pairs(shared_data: Path) -> PairDataset:
    root = shared_data / "msrs" / "train"
    ids = sorted(p.stem for p in (root / "ir").iterdir())[:2]
    return PairDataset("msrs", pairs_from_folders(root / "ir", root / "vi", ids), split="train")


# -- losses ---------------------------------------------------------------------------------------------------
def test_ssim_of_flat_images_matches_the_formula() -> None:
    a, b = 0.2, 0.7
    x, y = (torch.full((1, 1, 16, 16), v, dtype=torch.float64) for v in (a, b))
    c1 = 0.01**2  # flat images: variances and covariance vanish, the structure term is c2 / c2 = 1
    assert L.ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)
    noise = torch.rand(2, 1, 24, 24)
    torch.testing.assert_close(L.ssim(noise, noise), torch.ones(2))
    assert (L.ssim(noise, 1 - noise) < 0).all()  # anti-correlated structure


def test_correlation_and_decomposition_loss_by_hand() -> None:
    a = torch.randn(2, 3, 8, 8)
    assert L.correlation(a, a).item() == pytest.approx(1.0, abs=1e-6)
    assert L.correlation(a, -2 * a + 5).item() == pytest.approx(-1.0, abs=1e-6)
    # identical detail (cc = 1) and identical base (cc = 1): 1 / (1 + 1.01)
    assert L.decomposition_loss(a, a, a, a).item() == pytest.approx(1 / 2.01, rel=1e-5)
    # opposite detail, identical base: still cc^2 = 1 -> the loss wants *uncorrelated* details
    assert L.decomposition_loss(a, -a, a, a).item() == pytest.approx(1 / 2.01, rel=1e-5)


def test_gradient_magnitude_of_a_step_edge() -> None:
    x = torch.zeros(1, 1, 6, 6)
    x[..., 3:] = 1.0  # vertical edge between columns 2 and 3
    g = L.gradient_magnitude(x)
    # interior rows: raw Sobel x response 1 + 2 + 1 = 4 on both columns beside the edge, 0 elsewhere
    assert g[0, 0, 2, 2].item() == 4.0 and g[0, 0, 2, 3].item() == 4.0
    assert g[0, 0, 2, 0].item() == 0.0


def test_fusion_losses_by_hand() -> None:
    a, b = torch.full((1, 1, 8, 8), 0.2), torch.full((1, 1, 8, 8), 0.6)
    assert L.intensity_loss(torch.full_like(a, 0.5), a, b).item() == pytest.approx(0.1)
    assert L.intensity_loss(torch.maximum(a, b), a, b).item() == 0.0
    x = torch.rand(1, 1, 8, 8)
    assert L.texture_loss(x, x, torch.zeros_like(x)).item() == pytest.approx(0.0, abs=1e-6)


def test_adversarial_losses_by_hand() -> None:
    zero = torch.zeros(4)
    assert L.discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert L.generator_adversarial_loss(torch.full((3,), 2.0)).item() == pytest.approx(math.log1p(math.exp(-2)))


# -- model -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(37, 53), (5, 7), (64, 48)])
def test_any_size_inference_keeps_the_size(shape: tuple[int, int]) -> None:
    model = create_method("daefuse-test")
    ir, vi = torch.rand(2, 1, *shape), torch.rand(2, 3, *shape)
    with torch.no_grad():
        out = model.fuse_images(ir, vi)
    assert out.shape == vi.shape and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


def test_every_parameter_gets_a_gradient_across_both_phases() -> None:
    model = create_method("daefuse-test").train()
    ir, vi = _smooth(2), _smooth(2)
    rec, _, _ = model.reconstruct(ir)
    (rec.mean() + model.fuse(ir, vi).mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_bf16_autocast_forward_on_cpu() -> None:
    model = create_method("daefuse-test")
    ir, vi = torch.rand(1, 1, 24, 40), torch.rand(1, 1, 24, 40)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.fuse(ir, vi)
    ref = model.fuse(ir, vi)
    assert out.shape == ir.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0)


def test_weights_round_trip_carries_the_architecture(tmp_path: Path) -> None:
    model = create_method("daefuse-test")
    path = tmp_path / "w.safetensors"
    model.save_weights(path)
    ir, vi = torch.rand(1, 1, 20, 20), torch.rand(1, 1, 20, 20)
    # the registered default architecture differs; the file's metadata says which one to build
    loaded = create_method("daefuse", weights=path)
    assert loaded.cfg["dim"] == default_cfgs["daefuse-test"]["dim"] != default_cfgs["daefuse"]["dim"]
    with torch.no_grad():
        torch.testing.assert_close(loaded.fuse(ir, vi), model.fuse(ir, vi))
    with pytest.raises(WeightsError, match="shape mismatch"):
        create_method("daefuse-test", weights=path, dim=16)
    with pytest.raises(TypeError, match=r"unknown DAE-Fuse option\(s\) \['dims'\]; valid: weights, pretrained, dim"):
        create_method("daefuse-test", dims=16)


def test_shipped_default_loads_and_matches_its_sidecar() -> None:
    file = WEIGHTS_DIR / "daefuse.safetensors"
    sidecar = json.loads((WEIGHTS_DIR / "daefuse.json").read_text())
    assert sha256_file(file) == sidecar["sha256"] == default_cfgs["daefuse"]["sha256"]
    assert file.stat().st_size < 20 * 2**20
    model = create_method("daefuse")
    with torch.no_grad():
        out = model.fuse(torch.rand(1, 1, 33, 47), torch.rand(1, 1, 33, 47))
    assert out.shape == (1, 1, 33, 47) and torch.isfinite(out).all()


def test_shipped_default_computes_the_same_in_eval_and_train_mode() -> None:
    """No running statistics (per-pixel LayerNorm): eval mode and batch statistics give the same output,
    whatever else is in the batch (the former BatchNorm moved the fused MSRS output by ~9.5 grey levels)."""
    model = create_method("daefuse")
    assert model.cfg["norm"] == "layer" and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    g = torch.Generator().manual_seed(0)
    ir, vi = torch.rand(2, 1, 32, 48, generator=g), torch.rand(2, 1, 32, 48, generator=g)
    with torch.no_grad():
        evaluated = model.eval().fuse(ir, vi)
        trained = model.train().fuse(ir, vi)
        alone = model.eval().fuse(ir[:1], vi[:1])
    model.eval()
    torch.testing.assert_close(trained, evaluated, atol=1e-6, rtol=0)
    torch.testing.assert_close(alone, evaluated[:1], atol=1e-6, rtol=0)


def test_weights_trained_with_batchnorm_still_load(tmp_path: Path) -> None:
    model = create_method("daefuse-test", pretrained=False, norm="batch")
    model.cfg.pop("norm")  # a file written before the norm setting existed
    model.save_weights(tmp_path / "old.safetensors")
    back = create_method("daefuse-test", weights=tmp_path / "old.safetensors")
    assert back.cfg["norm"] == "batch" and isinstance(back.high.blocks[0].bn1, torch.nn.BatchNorm2d)


# -- training ------------------------------------------------------------------------------------------------
def _trainer(**overrides: object) -> Trainer:
    cfg = DAEFuseTrainConfig.from_overrides({**TINY, "phase1_steps": 8, "phase2_steps": 8, **overrides},
                                            "daefuse-test")
    return Trainer(cfg, torch.device("cpu"), "daefuse-test")


@pytest.mark.parametrize("phase", [1, 2])
def test_each_phase_lowers_its_loss_and_both_players_move(phase: int) -> None:
    trainer = _trainer()
    ir, vi = _smooth(2), _smooth(2)
    step_fn = trainer.phase1_step if phase == 1 else trainer.phase2_step
    start = 0 if phase == 1 else 8
    d_before = [p.detach().clone() for p in trainer.d_vi.parameters()]
    g_before = [p.detach().clone() for p in trainer.model.decoder.parameters()]
    logs = [step_fn(ir, vi, start + i) for i in range(8)]
    key = "content" if phase == 1 else "texture"
    # 8 steps of a tiny random model: Phase I's content loss falls ~5 % with the per-pixel LayerNorm
    # (~15 % with the former BatchNorm, whose batch statistics fit the 2-image batch)
    assert logs[-1][key] < (0.97 if phase == 1 else 0.9) * logs[0][key]
    assert logs[-1]["g_total"] < logs[0]["g_total"]
    assert abs(logs[-1]["d_total"] - logs[0]["d_total"]) > 1e-3
    assert abs(logs[-1]["g_adv"] - logs[0]["g_adv"]) > 1e-3
    assert any(not torch.equal(a, b) for a, b in zip(d_before, trainer.d_vi.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g_before, trainer.model.decoder.parameters()))


def test_unknown_setting_lists_the_valid_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown DAE-Fuse training setting\(s\) \['sigmaa'\]; valid keys: .*sigma"):
        DAEFuseTrainConfig.from_overrides({"sigmaa": 0.3}, "daefuse")


def test_training_run_resumes_exactly(msrs_pairs: PairDataset, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = {**TINY, "phase1_steps": 2, "phase2_steps": 2, "log_every": 1}
    straight = train_daefuse(msrs_pairs, tmp_path / "a", device=torch.device("cpu"), overrides=overrides,
                             progress=False, method="daefuse-test")
    for name in ("config.json", "losses.csv", "losses.png", "checkpoint.pt", "summary.json"):
        assert (tmp_path / "a" / name).is_file()
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["config"]["sigma"] == 0.5 and config["seed"] == 0 and "torch" in config["versions"]

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "phase2_step", crash)  # interrupted right after Phase I's checkpoint
    with pytest.raises(KeyboardInterrupt):
        train_daefuse(msrs_pairs, tmp_path / "b", device=torch.device("cpu"), overrides=overrides,
                      progress=False, method="daefuse-test")
    monkeypatch.undo()
    resumed = train_daefuse(msrs_pairs, tmp_path / "b", device=torch.device("cpu"), overrides=overrides,
                            progress=False, method="daefuse-test")
    a, b = create_method("daefuse-test", weights=straight), create_method("daefuse-test", weights=resumed)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, msg=name)
    rows_a = (tmp_path / "a" / "losses.csv").read_text()
    assert rows_a == (tmp_path / "b" / "losses.csv").read_text() and rows_a.count("\n") == 5

    with pytest.raises(ValueError, match="pick another --out"):
        train_daefuse(msrs_pairs, tmp_path / "a", device=torch.device("cpu"),
                      overrides={**overrides, "sigma": 0.3}, progress=False, method="daefuse-test")


def test_training_on_cuda_with_bf16(cuda: torch.device) -> None:
    trainer = Trainer(DAEFuseTrainConfig.from_overrides({**TINY, "phase1_steps": 2, "phase2_steps": 2},
                                                        "daefuse-test"), cuda, "daefuse-test")
    ir, vi = _smooth(2).to(cuda), _smooth(2).to(cuda)
    for step, fn in enumerate([trainer.phase1_step, trainer.phase2_step]):
        logs = fn(ir, vi, step * 2)
        assert all(math.isfinite(v) for v in logs.values())
    with torch.no_grad():
        out = trainer.model.eval().fuse(torch.rand(1, 1, 37, 53, device=cuda), torch.rand(1, 1, 37, 53, device=cuda))
    assert out.shape == (1, 1, 37, 53) and out.device.type == "cuda"
