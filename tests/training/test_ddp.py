"""2-process DDP training (torchrun, gloo, CPU) gives the weights of 1 process with the same global batch:
MaeFuse (``maefuse-test``), DAE-Fuse (``daefuse-test``) and ``pretrain-mae`` (decoder-only recipe).

Both runs go through the command line (``python -m fusebench train``; ``torch.distributed.run`` for two
processes on 127.0.0.1 with a free port), with every process on one thread and a bounded time.

Tolerance: absolute 1e-6 on every weight after 4 optimiser steps (float32; measured differences are at most
2e-7: the ranks' halves of each batch are summed in another order, and the discriminators' BatchNorm takes
the global batch's statistics by all-reduce). One exception: the key biases of softmax attention (the
middle third of ``in_proj_bias`` / ``qkv.bias``) have a true gradient of exactly zero (a constant added to
every logit of a softmax changes nothing), so what they get is rounding noise, which Adam normalises into
steps of up to ``lr``; they only have to stay below half a step (5e-4 at lr 1e-3; measured 1.7e-4).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fusebench.images import write_png

TIMEOUT_S = 420
ATOL = 1e-6
KEY_BIAS_ATOL = 5e-4  # see the module notes


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 40x48 synthetic pairs in ir/ and vi/."""
    root = tmp_path_factory.mktemp("ddp_pairs")
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:40, 0:48]
    for k in range(4):
        cy, cx = rng.integers(8, 32), rng.integers(8, 40)
        ir = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 40.0) * 0.8 + 0.1
        vi = 0.5 + 0.3 * np.sin(xx / (2 + k)) * (yy > 20) + 0.05 * rng.standard_normal((40, 48))
        write_png(root / "ir" / f"{k}.png", np.clip(ir, 0, 1).astype(np.float32))
        write_png(root / "vi" / f"{k}.png", np.clip(vi, 0, 1).astype(np.float32))
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _train(method: str, folder: Path, out: Path, settings: dict[str, object], processes: int) -> Path:
    sets = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    if method == "pretrain-mae":
        args = ["-m", "fusebench", "pretrain-mae", "--data", str(folder), "--out", str(out), "--device", "cpu",
                "--no-progress", *sets]
    else:
        args = ["-m", "fusebench", "train", "--method", method, "--dataset", str(folder), "--out", str(out),
                "--device", "cpu", "--no-progress", *sets]
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
                    "--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
        args = [*launcher, *args]
    env = {**os.environ, "FUSEBENCH_THREADS": "1", "OMP_NUM_THREADS": "1", "FUSEBENCH_OFFLINE": "1"}
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / ("mae.safetensors" if method == "pretrain-mae" else f"{method}.safetensors")


def _assert_same(one: Path, two: Path) -> None:
    a, b = load_file(str(one)), load_file(str(two))
    assert a.keys() == b.keys()
    moved = 0
    for key in a:
        if key.endswith(("in_proj_bias", "qkv.bias")):
            n = a[key].numel() // 3
            q_v = torch.cat([a[key][:n], a[key][2 * n:]]), torch.cat([b[key][:n], b[key][2 * n:]])
            torch.testing.assert_close(q_v[1], q_v[0], atol=ATOL, rtol=0, msg=key)
            torch.testing.assert_close(b[key][n:2 * n], a[key][n:2 * n], atol=KEY_BIAS_ATOL, rtol=0, msg=key)
        else:
            torch.testing.assert_close(b[key], a[key], atol=ATOL, rtol=0, msg=key)
        moved += int(key.endswith("weight"))
    assert moved > 4


CASES = {
    # the content alignment loss normalises by a batch statistic of each rank's share, so the paper's
    # Eq. 5 MSE is used here (a per-element mean, the same split or not)
    "maefuse-test": {"batch_size": 4, "patch_size": 32, "patches_per_image": 2, "cfm_align_steps": 1,
                     "cfm_fusion_steps": 1, "mfm_align_steps": 1, "mfm_fusion_steps": 1, "align_loss": "mse",
                     "fusion_align_weight": 0, "workers": 0, "checkpoint_every": 2, "log_every": 1},
    "daefuse-test": {"batch_size": 4, "patch_size": 32, "patches_per_image": 2, "disc_width": 8,
                     "disc_layers": 2, "phase1_steps": 2, "phase2_steps": 2, "lr": 1e-3, "lr_disc": 1e-3,
                     "workers": 0, "checkpoint_every": 2, "log_every": 1},
    # the decoder-only recipe (no masks: masked pre-training draws each rank's masks from its own stream)
    "pretrain-mae": {"arch": "test", "decoder_only": "true", "steps": 4, "batch_size": 4, "crop": 32,
                     "warmup_steps": 1, "lr": 1e-3, "workers": 0, "checkpoint_every": 2, "log_every": 1},
}


@pytest.mark.parametrize("method", list(CASES))
def test_two_process_ddp_matches_one_process(method: str, folder: Path, tmp_path: Path) -> None:
    one = _train(method, folder, tmp_path / "one", CASES[method], processes=1)
    two = _train(method, folder, tmp_path / "two", CASES[method], processes=2)
    _assert_same(one, two)
    # rank 0 alone wrote the run folder, with the processes recorded
    assert (tmp_path / "two" / "losses.csv").read_text().count("\n") == 5
    assert not list((tmp_path / "two").glob("*.tmp*"))
    assert '"processes": 2' in (tmp_path / "two" / "config.json").read_text()
