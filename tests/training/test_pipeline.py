"""The training input pipeline: batches a pure function of (seed, step) for any worker count and rank split,
lazy datasets equal to the eager ones, checkpoints without frozen weights, append-only loss history."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fusebench.datasets.base import PairDataset, pairs_from_folders
from fusebench.images import write_png
from fusebench.methods.daefuse.train import Batches, epoch_seed, train_daefuse
from fusebench.methods.mae.pretrain import CropPlans, ImageCrops, step_generator
from fusebench.methods.maefuse.train import train_guided
from fusebench.training import (
    CheckpointError,
    LossHistory,
    PatchDataset,
    StepBatchSampler,
    WarpDataset,
    load_checkpoint,
    save_checkpoint,
)
from fusebench.training.distributed import DistBatchNorm2d

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> PairDataset:
    """Three synthetic pairs of different sizes (one smaller than the 32-px patch), colour visible images."""
    root = tmp_path_factory.mktemp("pipeline_pairs")
    rng = np.random.default_rng(2)
    for k, (h, w) in enumerate([(40, 48), (36, 52), (24, 30)]):
        write_png(root / "ir" / f"{k}.png", rng.random((h, w)).astype(np.float32))
        write_png(root / "vi" / f"{k}.png", rng.random((h, w, 3)).astype(np.float32))
    return PairDataset("synthetic", pairs_from_folders(root / "ir", root / "vi"), split="train")


def test_sampler_batches_match_the_pre_pipeline_loop_and_split_across_ranks(pairs: PairDataset) -> None:
    eager = PatchDataset(pairs, 32, 4, seed=3)
    old = Batches(eager, 4, seed=3)
    sampler = StepBatchSampler(len(eager), 4, epoch_seed(3), stop=9)
    for step, keys in enumerate(sampler):
        ir, vi = old(step)
        items = [eager[k] for k in keys]
        assert torch.equal(torch.stack([i[0] for i in items]), ir) and torch.equal(torch.stack([i[1] for i in items]), vi)
        shares = [StepBatchSampler(len(eager), 4, epoch_seed(3), start=step, rank=r, world=2) for r in (0, 1)]
        firsts = [next(iter(s)) for s in shares]
        assert sorted(firsts[0] + firsts[1]) == sorted(keys) and len(firsts[0]) == 2  # resumable at any step
    with pytest.raises(ValueError, match="multiple of the 3 processes"):
        StepBatchSampler(12, 4, epoch_seed(0), world=3)


def test_lazy_datasets_equal_the_eager_ones(pairs: PairDataset, tmp_path: Path) -> None:
    for make in (lambda lazy, cache: PatchDataset(pairs, 32, 3, seed=1, lazy=lazy, cache_dir=cache),
                 lambda lazy, cache: WarpDataset(pairs, 32, flip=True, seed=1, lazy=lazy, cache_dir=cache)):
        eager = make(False, None)
        for lazy in (make(True, None), make(True, tmp_path / "cache"), make(True, tmp_path / "cache")):
            assert not lazy.images and len(lazy) == len(eager)
            for key in [(0, 0), (1, 2), (2, len(eager) - 1), (3, len(eager) - 2), (0, 1)]:
                for a, b in zip(eager[key], lazy[key]):
                    assert torch.equal(a, b)
    names = {p.name for p in (tmp_path / "cache").glob("*.npy")}  # 8-bit pairs, 8-bit warps
    assert {"0_ir.npy", "0_vi.npy", "2_ir.npy", "2_vi.npy", "0_warp32.npy", "2_warp32.npy"} <= names
    crops_eager = ImageCrops([pairs.pairs[i].vi for i in range(3)], 32)
    crops_lazy = ImageCrops([pairs.pairs[i].vi for i in range(3)], 32, lazy=True)
    assert crops_eager.sizes == crops_lazy.sizes
    assert torch.equal(crops_eager.batch(5, step_generator(0, 7)), crops_lazy.batch(5, step_generator(0, 7)))
    plans = list(CropPlans(crops_lazy, 4, 0, start=7, stop=8))
    assert torch.equal(torch.stack([crops_lazy[s] for s in plans[0]]), crops_eager.batch(4, step_generator(0, 7)))


def test_pipeline_with_workers_gives_the_weights_of_the_pre_pipeline_loop(pairs: PairDataset, tmp_path: Path) -> None:
    tiny = {"patch_size": 32, "batch_size": 2, "patches_per_image": 2, "disc_width": 8, "disc_layers": 2,
            "phase1_steps": 2, "phase2_steps": 2, "log_every": 1}
    new = train_daefuse(pairs, tmp_path / "new", device=CPU, overrides={**tiny, "workers": 1}, progress=False,
                        method="daefuse-test")
    old = train_daefuse(pairs, tmp_path / "old", device=CPU, overrides={**tiny, "pipeline": False}, progress=False,
                        method="daefuse-test")
    a, b = load_file(str(new)), load_file(str(old))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "new" / "losses.csv").read_text() == (tmp_path / "old" / "losses.csv").read_text()
    # the settings of the pipeline are not part of the run: a run resumes with other workers / the old loop
    train_daefuse(pairs, tmp_path / "new", device=CPU, overrides={**tiny, "pipeline": False}, progress=False,
                  method="daefuse-test")


MAEFUSE_TINY = {"cfm_align_steps": 1, "cfm_fusion_steps": 1, "mfm_align_steps": 1, "mfm_fusion_steps": 1,
                "batch_size": 2, "patch_size": 32, "patches_per_image": 2, "checkpoint_every": 2, "workers": 0}


def test_maefuse_checkpoint_holds_the_trained_part_and_refers_to_the_frozen_one(pairs: PairDataset,
                                                                                tmp_path: Path) -> None:
    train_guided("maefuse-test", pairs, tmp_path, device=CPU, overrides=MAEFUSE_TINY, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["model"] and all(k.startswith("fusion.") for k in state["model"])
    assert len(state["frozen_sha256"]) == 64 and "rng" in state
    save_checkpoint(tmp_path / "checkpoint.pt", {**state, "frozen_sha256": "0" * 64})
    with pytest.raises(CheckpointError, match="frozen weights changed"):
        train_guided("maefuse-test", pairs, tmp_path, device=CPU, overrides=MAEFUSE_TINY, progress=False)


def test_feature_cache_of_the_frozen_encoder(pairs: PairDataset, tmp_path: Path) -> None:
    paper = {"recipe": "paper", "warp_size": 32, "epochs": 2, "batch_size": 2, "workers": 0, "checkpoint_every": 10}
    with pytest.raises(ValueError, match="feature_cache needs"):
        train_guided("maefuse-test", pairs, tmp_path / "x", device=CPU,
                     overrides={**paper, "feature_cache": "disk", "flip": True}, progress=False)
    runs = {mode: load_file(str(train_guided("maefuse-test", pairs, tmp_path / mode, device=CPU,
                                             overrides={**paper, "feature_cache": mode}, progress=False)))
            for mode in ("off", "memory", "disk")}
    cached = list((tmp_path / "disk" / "feature_cache").glob("*/*.pt"))
    assert len(cached) == len(pairs)  # each pair encoded once
    assert torch.load(cached[0], weights_only=True).dtype == torch.bfloat16
    for key, value in runs["memory"].items():
        assert torch.equal(value, runs["disk"][key])
        torch.testing.assert_close(value, runs["off"][key], atol=2e-3, rtol=0)  # bf16 features vs fp32
    # every pair already cached from the first batch on (a run resumed with a warm disk cache)
    shutil.copytree(tmp_path / "disk" / "feature_cache", tmp_path / "warm" / "feature_cache")
    warm = load_file(str(train_guided("maefuse-test", pairs, tmp_path / "warm", device=CPU,
                                      overrides={**paper, "feature_cache": "disk"}, progress=False)))
    assert all(torch.equal(value, runs["disk"][key]) for key, value in warm.items())


def test_loss_history_appends_without_reading_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = LossHistory(tmp_path / "losses.csv")
    log.log(1, "a", x=1.0)
    monkeypatch.setattr(LossHistory, "rows", lambda self: pytest.fail("log re-read the CSV"))
    for step in range(2, 200):
        log.log(step, "a", x=1.0 / step)
    monkeypatch.undo()
    log.log(200, "b", y=2.0)  # a new loss name extends the header (the one rewrite)
    rows = log.rows()
    assert len(rows) == 200 and rows[-1]["y"] == "2" and rows[-1]["x"] == "" and rows[1]["x"] == "0.5"


def test_dist_batchnorm_is_batchnorm_in_one_process() -> None:
    torch.manual_seed(0)
    plain, dist_bn = torch.nn.BatchNorm2d(4), DistBatchNorm2d(4)
    x = torch.randn(3, 4, 5, 5)
    assert torch.equal(plain(x), dist_bn(x)) and torch.equal(plain.running_var, dist_bn.running_var)
    assert set(plain.state_dict()) == set(dist_bn.state_dict())
