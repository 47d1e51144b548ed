"""`fusebench run --method maefuse` as a new user meets it: released weights from the cache, --weights for a model
trained here, random weights marked, and a fast, helpful failure with no checkpoint and no network.

The released checkpoint is stood in for by a file in its format (``{'model': {model1.*, model2.*}}``) at the tiny
"test" arch, placed where the downloader puts it (``$FUSEBENCH_HOME/weights/maefuse/final_new_60.pth``); the
runs use ``--set arch=test`` (recorded in the summary) on a small folder dataset, since ViT-L at 640x640 is too
slow for CPU tests. The exactness of the computation itself is tested in tests/methods/test_maefuse_official.py.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import fusebench.download as dl
from fusebench.cli import main
from fusebench.methods import create_method
from fusebench.methods.mae import build_mae, sincos_pos_embed
from fusebench.methods.maefuse_official import OfficialFusion

DRIVE = "https://drive.google.com/file/d/18N6tn78VztQOvobVWu6J-RJHo3jsBKkk"
METRICS = "EN,SD"


def _released_like(path: Path) -> None:
    torch.manual_seed(0)
    mae = build_mae("test")
    with torch.no_grad():
        mae.decoder_pred.bias.normal_(0, 1.0)
    side = 640 // 16
    model1 = {k: v for k, v in mae.state_dict().items() if k != "mask_token"}
    model1["pos_embed"] = sincos_pos_embed(32, (side, side))[None]
    model1["decoder_pos_embed"] = sincos_pos_embed(32, (side, side))[None]
    model2 = {**OfficialFusion(32, 2).state_dict(), "pos_embed": model1["pos_embed"].clone()}
    state = {**{f"model1.{k}": v for k, v in model1.items()}, **{f"model2.{k}": v for k, v in model2.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, path)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FUSEBENCH_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)  # `fusebench table` writes reports/ here
    return tmp_path / "home"


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "pairs"
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True)
    for i, (h, w) in enumerate([(48, 64), (60, 50), (40, 40)]):
        yy, xx = np.mgrid[0:h, 0:w]
        base = 127 + 90 * np.sin(xx / 7.0 + i) * np.cos(yy / 5.0)
        cv2.imwrite(str(root / "ir" / f"{i:02d}.png"), np.clip(base + rng.normal(0, 20, (h, w)), 0, 255).astype(np.uint8))
        vi = np.clip(255 - base[..., None] + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "vi" / f"{i:02d}.png"), vi)
    return root


def _run(*args: str) -> tuple[int, str, dict | None]:
    result = CliRunner().invoke(main, ["run", "--method", "maefuse", "--out", "runs", "--metrics", METRICS,
                                       "--no-progress", *args])
    lines = [ln for ln in result.output.splitlines() if ln.startswith("results: ")]
    summary = json.loads(Path(lines[-1][len("results: "):]).read_text()) if lines else None
    return result.exit_code, result.output, summary


def _table(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["table", "--runs", "runs", "--datasets", "pairs", "--metrics", METRICS,
                                       "--output", "t.md", "--force", *args])
    return result.exit_code, result.output


def test_released_weights_from_the_cache_fuse_all_pairs_and_make_a_row(home: Path, pairs: Path) -> None:
    cached = home / "weights" / "maefuse" / "final_new_60.pth"
    _released_like(cached)
    code, out, summary = _run("--dataset", str(pairs), "--set", "arch=test")
    assert code == 0, out
    assert "fused 3 pairs" in out
    cfg = summary["method"]["cfg"]
    assert (cfg["computation"], cfg["weights_source"], cfg["arch"], cfg["warp"]) == ("released", "released", "test",
                                                                                     640)
    assert summary["method"]["weights"] == str(cached) and summary["method"]["weights_sha256"]
    assert summary["method"]["label"] == "maefuse" and summary["n_images"] == 3
    code, out = _table()
    assert code == 0, out
    row = next(ln for ln in out.splitlines() if ln.split("|")[1:2] and ln.split("|")[1].strip() == "maefuse")
    assert "—" not in row and "random" not in out


def test_weights_trained_here_run_with_the_paper_computation(home: Path, pairs: Path, tmp_path: Path) -> None:
    trained = tmp_path / "maefuse.safetensors"
    model = create_method("maefuse", arch="test", random_init=True)
    assert model.cfg["computation"] == "paper"
    model.save_weights(trained)
    code, out, summary = _run("--dataset", str(pairs), "--weights", str(trained), "--set", "arch=test",
                              "--name", "maefuse-mine")
    assert code == 0, out
    cfg = summary["method"]["cfg"]
    assert (cfg["computation"], cfg["weights_source"], cfg["random_init"]) == ("paper", "file", False)
    assert cfg["weights"] == str(trained) and cfg["weights_sha256"] == summary["method"]["weights_sha256"]


def test_random_weights_are_marked_and_kept_out_of_tables_unless_asked(home: Path, pairs: Path) -> None:
    code, out, summary = _run("--dataset", str(pairs), "--set", "random_init=true", "--set", "arch=test")
    assert code == 0, out
    assert summary["method"]["cfg"]["weights_source"] == "random" and summary["method"]["cfg"]["random_init"]
    code, out = _table()
    assert code != 0 and "--allow-random" in out and "maefuse on pairs" in out
    code, out = _table("--allow-random")
    assert code == 0, out
    assert "| maefuse (random weights) |" in out
    code, out = _table("--allow-random", "--methods", "maefuse")
    assert code == 0 and "| maefuse (random weights) |" in out


def test_no_checkpoint_and_no_network_fails_fast_with_url_and_path(
    home: Path, pairs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = Path(os.environ.get("FUSEBENCH_DATA", "")) / "tno"
    dataset = "tno" if data.is_dir() else str(pairs)  # the command, where the data is here
    cached = home / "weights" / "maefuse" / "final_new_60.pth"
    with socket.socket() as sock:  # a port nobody listens on stands in for Drive without a network
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(dl, "GDRIVE_DOWNLOAD_URL", f"http://127.0.0.1:{port}/uc?id={{id}}")
    for offline in ("", "1"):
        monkeypatch.setenv("FUSEBENCH_OFFLINE", offline)
        start = time.perf_counter()
        code, out, _ = _run("--dataset", dataset)
        assert time.perf_counter() - start < 5
        assert code != 0
        flat = " ".join(out.split())
        assert DRIVE in flat and str(cached) in flat and "--weights PATH" in flat, out
    assert not cached.exists()


def test_messages_use_cli_syntax(home: Path, pairs: Path) -> None:
    result = CliRunner().invoke(main, ["run", "--method", "maefuse-base", "--dataset", str(pairs), "--metrics",
                                         METRICS, "--no-progress"])
    assert result.exit_code != 0
    assert "--weights" in result.output and "--set random_init=true" in result.output
    assert not re.search(r"(?<!\w)weights=", result.output) and "random_init=True" not in result.output
    code, out, _ = _run("--dataset", str(pairs), "--set", "computation=paper")
    assert code != 0 and "--set random_init=true" in out
