"""The shipped maefuse-compact (and its baselines) on real benchmark images, and its recorded recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fusebench.cli import main
from fusebench.datasets.base import load_pair, pairs_from_folders
from fusebench.files import sha256_file
from fusebench.methods import create_method
from fusebench.methods.maefuse.losses import paper_fusion_loss
from fusebench.methods.maefuse.model import WEIGHTS_DIR, default_cfgs


@pytest.fixture(scope="module")
def tno_pairs(shared_data: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first six TNO pairs (held out: TNO is never trained on)."""
    pairs = pairs_from_folders(shared_data / "tno" / "ir", shared_data / "tno" / "vi")[:6]
    return [(s.ir[None], s.vi[None]) for s in map(load_pair, pairs)]


def test_shipped_files_fit_the_budget_and_match_their_hashes() -> None:
    files = sorted(WEIGHTS_DIR.glob("maefuse_compact*.safetensors")) + [WEIGHTS_DIR / "mae_compact.safetensors"]
    assert sum(f.stat().st_size for f in files if f.exists()) < 20 * 2**20
    record = json.loads((WEIGHTS_DIR / "maefuse_compact.json").read_text())
    for variant in ("maefuse-compact", "mae-crossattn"):
        name = default_cfgs[variant]["file"]
        assert sha256_file(WEIGHTS_DIR / name) == default_cfgs[variant]["sha256"] == record["files"][name]["sha256"]
    assert {"command", "config", "losses", "seconds"} <= set(record["maefuse-compact"]) & set(record["mae-crossattn"])
    assert record["backbone"]["pretrain_step"] > 0 and record["training_data"]["pairs"] > 0


def test_trained_fusion_beats_the_token_mean_on_its_own_objective(
    tno_pairs: list[tuple[torch.Tensor, torch.Tensor]],
) -> None:
    """On held-out TNO pairs the guided-trained layer has a lower mean Eq. 4 loss than decoding the token mean."""
    fused, mean = create_method("maefuse-compact"), create_method("mae-mean")
    ours = [paper_fusion_loss(fused.fuse_batch(ir, vi), ir, vi)["loss"].item() for ir, vi in tno_pairs]
    base = [paper_fusion_loss(mean.fuse_batch(ir, vi), ir, vi)["loss"].item() for ir, vi in tno_pairs]
    assert sum(ours) < sum(base)


@pytest.mark.parametrize("name", ["maefuse-irguide", "mae-crossattn"])
def test_baselines_load_their_shipped_weights(name: str, tno_pairs: list[tuple[torch.Tensor, torch.Tensor]]
                                              ) -> None:
    ir, vi = tno_pairs[0]
    method = create_method(name)
    assert method.cfg["weights_sha256"] and method.fuse_batch(ir, vi).shape == ir.shape


def test_cli_run_fuses_and_scores_with_maefuse_compact(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "one"
    for kind in ("ir", "vi"):
        (folder / kind).mkdir(parents=True)
        src = min((shared_data / "tno" / kind).iterdir())
        (folder / kind / src.name).symlink_to(src)
    result = CliRunner().invoke(main, ["run", "--method", "maefuse-compact", "--dataset", str(folder), "--device",
                                       "cpu", "--metrics", "EN,SD", "--out", str(tmp_path / "runs"),
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "runs" / "maefuse-compact").rglob("fused/*.png"))
