"""pretrain-mae at "test" size on three real photos: loss goes down, decoder-only freezes, resume is exact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from fusebench.methods.mae import build_mae
from fusebench.methods.mae.checkpoints import is_encoder_key, save_mae
from fusebench.methods.mae.pretrain import PretrainConfig, find_images, lr_at, pretrain

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models train several times faster on one thread than on a contended pool."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def image_list(shared_data: Path, tmp_path: Path) -> Path:
    """A text file naming two natural photos and one (grey) MSRS infrared image."""
    paths = sorted((shared_data / "natural" / "bsds500").glob("*.jpg"))[:2]
    paths += sorted((shared_data / "msrs" / "train" / "ir").glob("*.png"))[:1]
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(map(str, paths)))
    return listing


def _cfg(listing: Path, **kw: object) -> PretrainConfig:
    base = {
        "data": [str(listing)],
        "arch": "test",
        "steps": 40,
        "batch_size": 8,
        "crop": 32,
        "lr": 3e-3,
        "warmup_steps": 1,
        "log_every": 5,
        "checkpoint_every": 20,
    }
    return PretrainConfig.from_overrides({**base, **kw})


def test_masked_pretraining_lowers_the_loss(image_list: Path, tmp_path: Path) -> None:
    weights = pretrain(_cfg(image_list), tmp_path / "run", device=CPU, progress=False)
    losses = pd.read_csv(tmp_path / "run" / "losses.csv")
    assert list(losses["step"]) == list(range(5, 41, 5)) and set(losses["stage"]) == {"mae"}
    assert losses["loss"].iloc[-2:].mean() < 0.7 * losses["loss"].iloc[0]
    assert (tmp_path / "run" / "losses.png").stat().st_size > 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["mask_ratio"] == 0.75 and config["images"] == 3 and "torch" in config["versions"]
    assert set(load_file(weights)) == set(build_mae("test").state_dict())


def test_decoder_only_freezes_the_encoder(image_list: Path, tmp_path: Path) -> None:
    init = build_mae("test")
    save_mae(init, tmp_path / "init.safetensors")
    cfg = _cfg(image_list, decoder_only=True, steps=5, init=str(tmp_path / "init.safetensors"))
    assert cfg.mask_ratio == 0.0
    trained = load_file(pretrain(cfg, tmp_path / "run", device=CPU, progress=False))
    for key, value in init.state_dict().items():
        if is_encoder_key(key) or key == "mask_token":  # the mask token is unused without masking
            torch.testing.assert_close(trained[key], value, msg=key)
        else:
            assert not torch.equal(trained[key], value), key


def test_interrupted_run_resumes_to_the_same_weights(image_list: Path, tmp_path: Path) -> None:
    cfg = _cfg(image_list, steps=6, checkpoint_every=3, log_every=1)
    straight = load_file(pretrain(cfg, tmp_path / "a", device=CPU, progress=False))

    def crash(model: object, step: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tmp_path / "b", device=CPU, progress=False, on_checkpoint=crash)
    resumed = load_file(pretrain(cfg, tmp_path / "b", device=CPU, progress=False))
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, msg=key)
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "a" / "losses.csv"), pd.read_csv(tmp_path / "b" / "losses.csv")
    )


def test_changed_settings_refuse_to_resume(image_list: Path, tmp_path: Path) -> None:
    pretrain(_cfg(image_list, steps=2, checkpoint_every=2), tmp_path / "run", device=CPU, progress=False)
    with pytest.raises(ValueError, match="holds a run with different settings .* pick another --out folder"):
        pretrain(
            _cfg(image_list, steps=2, checkpoint_every=2, lr=1e-4),
            tmp_path / "run",
            device=CPU,
            progress=False,
        )


def test_unknown_setting_lists_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown pre-training settings \['epochs'\]; valid settings: data, "
    ):
        PretrainConfig.from_overrides({"data": ["x"], "epochs": 3})


def test_lr_schedule_warmup_then_cosine() -> None:
    cfg = PretrainConfig(data=["x"], steps=110, warmup_steps=10, lr=1.0, min_lr=0.0)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.5) and lr_at(110, cfg) == pytest.approx(0.0)


def test_find_images_recurses_and_excludes(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.png", "a/b/y.jpg", "a/b/z.jpg", "a/notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "skip.csv").write_text("id,name\nz,z.jpg\n")
    found = find_images([tmp_path / "a"], [tmp_path / "skip.csv"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/b/y.jpg", "a/x.png"]


def test_cli_runs_and_reports_errors(image_list: Path, tmp_path: Path) -> None:
    from fusebench.cli import main

    runner = CliRunner()
    args = [
        "pretrain-mae",
        "--data",
        str(image_list),
        "--arch",
        "test",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--no-progress",
        "--device",
        "cpu",
    ]
    result = runner.invoke(main, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "mae.safetensors").is_file()
    result = runner.invoke(main, [*args, "--set", "epochs=2", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "unknown pre-training settings ['epochs']" in result.output


def test_bf16_autocast_step_on_cuda(image_list: Path, tmp_path: Path, cuda: torch.device) -> None:
    weights = pretrain(_cfg(image_list, steps=3), tmp_path / "run", device=cuda, progress=False)
    assert all(torch.isfinite(v).all() for v in load_file(weights).values())
