"""Every real MAE file format, built here at "test" size in its real container, loads or is refused with what
to do, through the one reader that `fusebench train` (create_for_training) and `pretrain-mae` share."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from click.testing import CliRunner

from fusebench.cli import main
from fusebench.datasets.base import PairDataset, pairs_from_folders
from fusebench.images import write_png
from fusebench.methods.base import WeightsError
from fusebench.methods.mae import build_mae, sincos_pos_embed
from fusebench.methods.mae import checkpoints as ck
from fusebench.methods.mae.checkpoints import (
    DEFAULT_CFGS,
    RESUME_MAE,
    is_encoder_key,
    load_mae_weights,
    read_mae_file,
    save_mae,
)
from fusebench.methods.mae.pretrain import PretrainConfig, build_model
from fusebench.methods.maefuse.model import create_for_training, default_cfgs
from fusebench.methods.maefuse.train import GuidedConfig

ENCODER = ("cls", "pos", "patch", "blocks", "norm")


class Evil:
    """Any pickled object other than argparse.Namespace stays refused."""


def mae_args(**kw: object) -> argparse.Namespace:
    """The ``args`` MAE's main_pretrain.py pickles into every checkpoint (MaeFuse's decoder run's values)."""
    return argparse.Namespace(**{
        "batch_size": 8, "epochs": 51, "accum_iter": 1, "model": "mae_decoder_4_640", "input_size": 640,
        "mask_ratio": 0.75, "norm_pix_loss": False, "weight_decay": 0.05, "lr": None, "blr": 1e-3, "min_lr": 0.0,
        "warmup_epochs": 40, "data_path": "/data/coco", "output_dir": "./output_decoder_4_640",
        "log_dir": "./output_decoder_4_640", "device": "cuda", "seed": 0, "resume": "", "start_epoch": 0,
        "num_workers": 10, "pin_mem": True, "world_size": 1, "local_rank": -1, "dist_on_itp": False,
        "dist_url": "env://", "distributed": False, **kw,
    })


def save_model_format(path: Path, state: dict[str, torch.Tensor], epoch: int = 50) -> Path:
    """MAE ``util/misc.py::save_model``: model, AdamW state, epoch, grad-scaler state and the pickled args."""
    trained = [k for k in state if k.startswith("decoder_")] or list(state)  # MaeFuse: the decoder alone
    params = [torch.nn.Parameter(state[k].clone()) for k in trained]
    optimizer = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95))
    sum(p.sum() for p in params).backward()
    optimizer.step()
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
              "_growth_tracker": 120}
    torch.save({"model": state, "optimizer": optimizer.state_dict(), "epoch": epoch, "scaler": scaler,
                "args": mae_args()}, path)
    return path


def random_state(decoder_depth: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    src = build_mae("test", decoder_depth=decoder_depth)
    for p in src.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return dict(src.state_dict())


def resume_state() -> dict[str, torch.Tensor]:
    """MaeFuse's "resume" MAE layout: no cls/mask token, 1600-row position tables, the model's decoder depth."""
    state = random_state()
    del state["mask_token"]
    state["pos_embed"] = torch.randn(1, 1600, 32)
    state["decoder_pos_embed"] = torch.randn(1, 1600, 32)
    return state


def official_state(decoder_depth: int = 8, encoder_only: bool = False) -> dict[str, torch.Tensor]:
    state = random_state(decoder_depth, seed=1)
    state |= {"cls_token": torch.randn(1, 1, 32), "pos_embed": torch.randn(1, 197, 32)}
    if encoder_only:
        return {k: v for k, v in state.items() if k.startswith(ENCODER)}
    return state | {"decoder_pos_embed": torch.randn(1, 197, 32)}


def _assert_loaded(model: torch.nn.Module, state: dict[str, torch.Tensor], parts: str = "all") -> None:
    own = model.state_dict()
    keys = [k for k in state if k in own and (parts == "all" or (parts == "encoder") == is_encoder_key(k))]
    assert keys
    for key in keys:
        torch.testing.assert_close(own[key], state[key].to(own[key].dtype), msg=key)


def _train_cfg(**kw: object) -> GuidedConfig:
    if "decoder_weights" in {f.name for f in dataclasses.fields(GuidedConfig)}:
        return GuidedConfig.from_overrides({}, kw)
    cfg = GuidedConfig.from_overrides({}, {k: v for k, v in kw.items() if k != "decoder_weights"})
    if "decoder_weights" in kw:  # until the training settings have the field: create_for_training reads it
        object.__setattr__(cfg, "decoder_weights", kw["decoder_weights"])
    return cfg


# -- MAE's misc.save_model format (MaeFuse's "resume" MAE) ---------------------------------------------------
def test_save_model_format_needs_exactly_namespace_allowed(tmp_path: Path) -> None:
    path = save_model_format(tmp_path / "checkpoint-50.pth", resume_state())
    with pytest.raises(Exception, match="Namespace"):  # why a plain weights_only load refuses it
        torch.load(path, weights_only=True)
    assert read_mae_file(path).decoder_depth == 2
    torch.save({"model": resume_state(), "args": mae_args(extra=Evil())}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="cannot read weights"):
        read_mae_file(tmp_path / "evil.pth")


def test_resume_format_loads_for_fusion_training_and_pretraining(tmp_path: Path) -> None:
    state = resume_state()
    path = save_model_format(tmp_path / "checkpoint-50.pth", state)
    model = create_for_training("maefuse-test", _train_cfg(backbone_weights=str(path)))
    _assert_loaded(model.backbone, state)
    assert len(model.cfg["backbone_sha256"]) == 64
    mae = build_model(PretrainConfig.from_overrides({"data": ["x"], "arch": "test", "init": str(path),
                                                     "decoder_only": True}))
    _assert_loaded(mae, state)
    assert mae.init_note is None
    assert not any(p.requires_grad for n, p in mae.named_parameters() if is_encoder_key(n))


def test_fusion_training_runs_from_a_save_model_file(tmp_path: Path) -> None:
    import fusebench.methods.maefuse.train as guided

    rng = np.random.default_rng(0)
    for k in range(2):
        write_png(tmp_path / "d" / "ir" / f"{k}.png", rng.random((32, 48)).astype(np.float32))
        write_png(tmp_path / "d" / "vi" / f"{k}.png", rng.random((32, 48)).astype(np.float32))
    pairs = PairDataset("syn", pairs_from_folders(tmp_path / "d" / "ir", tmp_path / "d" / "vi"), split="train")
    path = save_model_format(tmp_path / "checkpoint-50.pth", resume_state())
    tiny = {"cfm_align_steps": 1, "cfm_fusion_steps": 1, "mfm_align_steps": 1, "mfm_fusion_steps": 1,
            "batch_size": 2, "patch_size": 32, "patches_per_image": 1, "checkpoint_every": 2, "log_every": 1}
    weights = guided.train_guided("maefuse-test", pairs, tmp_path / "run", device=torch.device("cpu"),
                                  overrides={**tiny, "backbone_weights": str(path)}, progress=False)
    assert Path(weights).is_file()


# -- official MAE files: encoder-only and 8-block decoders ------------------------------------------------------
def test_encoder_only_is_refused_for_fusion_training_with_both_commands(tmp_path: Path) -> None:
    encoder = official_state(encoder_only=True)
    path = tmp_path / "mae_pretrain_vit_test.pth"
    torch.save({"model": encoder}, path)
    with pytest.raises(WeightsError) as info:
        create_for_training("maefuse-test", _train_cfg(backbone_weights=str(path)))
    message = str(info.value)
    assert "holds an MAE encoder only" in message
    assert f"fusebench train --method maefuse-test ... --set backbone_weights={path} --set decoder_weights=" in message
    assert f"fusebench pretrain-mae --arch test --init {path} --decoder-only" in message

    # a decoder trained for this encoder (what pretrain-mae --decoder-only writes) makes it usable
    trained = build_mae("test")
    load_mae_weights(trained, path, encoder_only=True)
    torch.nn.init.normal_(trained.decoder_pred.weight)
    decoder = save_mae(trained, tmp_path / "dec" / "mae.safetensors", half=True)
    model = create_for_training("maefuse-test", _train_cfg(backbone_weights=str(path), decoder_weights=str(decoder)))
    _assert_loaded(model.backbone, encoder, "encoder")
    torch.testing.assert_close(model.backbone.decoder_pred.weight, trained.decoder_pred.weight.half().float())

    # ... but not a decoder trained on another encoder
    other = save_mae(build_mae("test"), tmp_path / "other.safetensors")
    with pytest.raises(WeightsError, match="trained on another encoder"):
        create_for_training("maefuse-test", _train_cfg(backbone_weights=str(path), decoder_weights=str(other)))


def test_8_block_decoder_is_refused_for_the_shorter_maefuse_decoder(tmp_path: Path) -> None:
    path = tmp_path / "mae_visualize_vit_test.pth"
    torch.save({"model": official_state(decoder_depth=8)}, path)
    with pytest.raises(WeightsError, match="its decoder has 8 blocks, this maefuse-test model's decoder has 2") as e:
        create_for_training("maefuse-test", _train_cfg(backbone_weights=str(path)))
    assert f"fusebench pretrain-mae --arch test --init {path} --decoder-only" in str(e.value)


@pytest.mark.parametrize("depth", [0, 8])
def test_pretrain_decoder_only_starts_a_fresh_decoder_and_says_so(tmp_path: Path, depth: int) -> None:
    state = official_state(decoder_depth=max(depth, 1), encoder_only=depth == 0)
    path = save_model_format(tmp_path / "init.pth", state)
    mae = build_model(PretrainConfig.from_overrides({"data": ["x"], "arch": "test", "init": str(path),
                                                     "decoder_only": True}))
    _assert_loaded(mae, state, "encoder")
    assert mae.init_note is not None and "fresh 2-block decoder" in mae.init_note
    assert ("no decoder" if depth == 0 else "8-block decoder") in mae.init_note


def test_cli_refusals_and_decoder_only_pretraining(tmp_path: Path, shared_data: Path) -> None:
    encoder = tmp_path / "enc.pth"
    save_model_format(encoder, official_state(encoder_only=True))
    folder = tmp_path / "pairs"
    for k in range(2):
        write_png(folder / "ir" / f"{k}.png", np.full((32, 32), 0.3, np.float32))
        write_png(folder / "vi" / f"{k}.png", np.full((32, 32), 0.6, np.float32))
    result = CliRunner().invoke(main, ["train", "--method", "maefuse-test", "--dataset", str(folder), "--out",
                                       str(tmp_path / "run"), "--set", f"backbone_weights={encoder}"])
    assert result.exit_code != 0 and "--decoder-only" in result.output and "decoder_weights=" in result.output

    images = sorted((shared_data / "natural" / "bsds500").glob("*.jpg"))[:2]
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(map(str, images)))
    out = tmp_path / "dec"
    result = CliRunner().invoke(main, ["pretrain-mae", "--data", str(listing), "--arch", "test", "--init",
                                       str(encoder), "--decoder-only", "--steps", "30", "--batch-size", "4",
                                       "--crop", "32", "--lr", "3e-3", "--set", "warmup_steps=1", "--set",
                                       "log_every=5", "--out", str(out), "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "no decoder" in json.loads((out / "config.json").read_text())["init"]
    import pandas as pd

    losses = pd.read_csv(out / "losses.csv")["loss"].to_numpy()
    assert losses[-1] < losses[0]
    model = create_for_training("maefuse-test", _train_cfg(backbone_weights=str(encoder),
                                                           decoder_weights=str(out / "mae.safetensors")))
    assert model is not None


# -- timm's MAE weights -------------------------------------------------------------------------------------------
def _tiny_timm(**kw: object) -> torch.nn.Module:
    """The architecture of timm's vit_large_patch16_224.mae at "test" size, random weights, offline."""
    return timm.create_model("vit_large_patch16_224.mae", pretrained=False, depth=2, embed_dim=32, num_heads=2,
                             **kw).eval()


def test_timm_mae_state_dict_maps_onto_our_encoder(tmp_path: Path) -> None:
    timm_model = _tiny_timm()
    state = timm_model.state_dict()
    assert {"cls_token", "pos_embed", "blocks.1.attn.qkv.weight", "norm.weight"} <= set(state)
    torch.save(state, tmp_path / "timm.pth")
    for source in (state, tmp_path / "timm.pth"):
        model = load_mae_weights(build_mae("test"), source, encoder_only=True)
        _assert_loaded(model, dict(state), "encoder")
    with pytest.raises(WeightsError, match="encoder only"):  # MAE's encoder-only weights: no decoder
        create_for_training("maefuse-test", _train_cfg(backbone_weights=str(tmp_path / "timm.pth")))

    # same names, same computation: timm's own forward (no cls token, our sin-cos table) equals ours
    flat = _tiny_timm(img_size=(32, 48), class_token=False, global_pool="avg", fc_norm=False)
    flat.pos_embed.data = sincos_pos_embed(32, (2, 3))[None]
    model = load_mae_weights(build_mae("test").eval(), flat.state_dict(), encoder_only=True)
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x), flat.forward_features(x), atol=1e-5, rtol=1e-5)


def test_timm_name_errors_are_weights_errors() -> None:
    with pytest.raises(WeightsError, match="timm could not provide 'no_such_vit'"):
        read_mae_file("timm:no_such_vit")


# -- the MaeFuse "resume" MAE, fetched from Google Drive on first use -------------------------------------------
def test_resume_mae_is_registered_and_fetched_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fusebench import download

    cfg = DEFAULT_CFGS[RESUME_MAE]
    assert cfg.gdrive_id == "16YnXfUeqBbSprhWV1OygriAsr2y9cCcf" and cfg.arch == "large" and cfg.has_decoder
    assert default_cfgs["maefuse"]["train_backbone"] == RESUME_MAE
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path / "home"))
    calls = []

    def fake(file_id: str, dest: Path, *, size: int | None = None, sha256: str | None = None,
             progress: bool = True) -> Path:
        calls.append((file_id, Path(dest)))
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        return save_model_format(Path(dest), resume_state())

    monkeypatch.setattr(download, "download_google_drive", fake)
    monkeypatch.setitem(DEFAULT_CFGS, RESUME_MAE, ck.MaeWeights(**{**cfg.__dict__, "arch": "test"}))
    model = load_mae_weights(build_mae("test"), RESUME_MAE, progress=False)
    assert calls == [(cfg.gdrive_id, tmp_path / "home" / "weights" / "maefuse_resume_mae.pth")]
    _assert_loaded(model, resume_state())


def test_resume_mae_offline_names_url_and_cache_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fusebench.download import DownloadError

    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FUSEBENCH_OFFLINE", "1")
    with pytest.raises(DownloadError) as info:
        read_mae_file(RESUME_MAE)
    message = str(info.value)
    assert "https://drive.google.com/file/d/16YnXfUeqBbSprhWV1OygriAsr2y9cCcf" in message
    assert str(tmp_path / "home" / "weights" / "maefuse_resume_mae.pth") in message
