"""2-process DDP training (torchrun, gloo, CPU) gives the weights of 1 process with the same global batch:
MaeFuse (``maefuse-test``, with the Eq. 5 MSE and with the content alignment loss, whose normaliser is a
statistic of the global batch), DAE-Fuse (``daefuse-test``) and ``pretrain-mae`` (decoder-only and masked:
the ranks take their rows of the global batch's mask noise). Two unit tests check those two pieces without
processes, simulating the ranks.

Both runs go through the command line (``python -m fusebench train``; ``torch.distributed.run`` for two
processes on 127.0.0.1 with a free port), with every process on one thread and a bounded time.

Tolerance: absolute 1e-6 on every weight after 4 optimiser steps (float32; measured differences are at most
2e-7: the ranks' halves of each batch are summed in another order, and the discriminators' BatchNorm takes
the global batch's statistics by all-reduce). One exception: the key biases of softmax attention (the
middle third of ``in_proj_bias`` / ``qkv.bias``) have a true gradient of exactly zero (a constant added to
every logit of a softmax changes nothing), so what they get is rounding noise, which Adam normalises into
steps of up to ``lr``; they only have to stay below half a step (5e-4 at lr 1e-3; measured 2.1e-4).

Masked pre-training and the content alignment loss get 5e-5 (5 % of a step at lr 1e-3): their gradients
sum large terms that cancel (the content loss centres tokens dominated by an offset they all share), so a
few weights get a gradient near zero whose rounding Adam normalises into a visible step. Measured: up to
5e-6, in 1 or 2 weights per tensor; one process already differs by 4e-6 from itself when it sums each batch
as two halves, and by 1e-6 when the batch is permuted. What the
test guards against moves the weights by whole steps: 6e-3 when rank 1 hides other patches, 2e-3 when
each rank normalises the content loss by its own share.
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
import torch.distributed.nn.functional as dist_nn
from safetensors.torch import load_file
from torch import Tensor

from fusebench.images import write_png
from fusebench.methods.mae.pretrain import mask_noise
from fusebench.methods.maefuse.losses import content_alignment_loss
from fusebench.training import distributed as D

TIMEOUT_S = 420
ATOL = 1e-6
CANCELLING_ATOL = 5e-5  # see the module notes
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


def _assert_same(one: Path, two: Path, atol: float) -> None:
    a, b = load_file(str(one)), load_file(str(two))
    assert a.keys() == b.keys()
    moved = 0
    for key in a:
        if key.endswith(("in_proj_bias", "qkv.bias")):
            n = a[key].numel() // 3
            q_v = torch.cat([a[key][:n], a[key][2 * n:]]), torch.cat([b[key][:n], b[key][2 * n:]])
            torch.testing.assert_close(q_v[1], q_v[0], atol=atol, rtol=0, msg=key)
            torch.testing.assert_close(b[key][n:2 * n], a[key][n:2 * n], atol=KEY_BIAS_ATOL, rtol=0, msg=key)
        else:
            torch.testing.assert_close(b[key], a[key], atol=atol, rtol=0, msg=key)
        moved += int(key.endswith("weight"))
    assert moved > 4


MAEFUSE = {"batch_size": 4, "patch_size": 32, "patches_per_image": 2, "cfm_align_steps": 1, "cfm_fusion_steps": 1,
           "mfm_align_steps": 1, "mfm_fusion_steps": 1, "workers": 0, "checkpoint_every": 2, "log_every": 1}
PRETRAIN = {"arch": "test", "steps": 4, "batch_size": 4, "crop": 32, "warmup_steps": 1, "lr": 1e-3, "workers": 0,
            "checkpoint_every": 2, "log_every": 1}

#: case: (method, settings, tolerance)
CASES: dict[str, tuple[str, dict[str, object], float]] = {
    "maefuse-mse": ("maefuse-test", {**MAEFUSE, "align_loss": "mse", "fusion_align_weight": 0}, ATOL),
    # the content loss in the align stages (align_lr 1e-3) and as the fusion stages' anchor
    "maefuse-content": ("maefuse-test", {**MAEFUSE, "align_loss": "content", "fusion_align_weight": 0.5},
                        CANCELLING_ATOL),
    "daefuse": ("daefuse-test", {"batch_size": 4, "patch_size": 32, "patches_per_image": 2, "disc_width": 8,
                                 "disc_layers": 2, "phase1_steps": 2, "phase2_steps": 2, "lr": 1e-3,
                                 "lr_disc": 1e-3, "workers": 0, "checkpoint_every": 2, "log_every": 1}, ATOL),
    "pretrain-decoder-only": ("pretrain-mae", {**PRETRAIN, "decoder_only": "true"}, ATOL),
    # 2 of the 4 patches kept: with 1 the encoder's attention is a constant, its query and key weights noise
    "pretrain-masked": ("pretrain-mae", {**PRETRAIN, "mask_ratio": 0.5}, CANCELLING_ATOL),
}


@pytest.mark.parametrize("case", list(CASES))
def test_two_process_ddp_matches_one_process(case: str, folder: Path, tmp_path: Path) -> None:
    method, settings, atol = CASES[case]
    one = _train(method, folder, tmp_path / "one", settings, processes=1)
    two = _train(method, folder, tmp_path / "two", settings, processes=2)
    _assert_same(one, two, atol)
    # rank 0 alone wrote the run folder, with the processes recorded
    assert (tmp_path / "two" / "losses.csv").read_text().count("\n") == 5
    assert not list((tmp_path / "two").glob("*.tmp*"))
    assert '"processes": 2' in (tmp_path / "two" / "config.json").read_text()


def test_ranks_take_their_rows_of_the_global_batch_mask_noise() -> None:
    """Rank r's noise is rows r::world of one process's (the rows of its crops), whatever the world size; one
    process draws what ``torch.manual_seed`` + ``torch.rand`` drew before; another step draws other noise."""
    whole = mask_noise(3, 5, 6, 16)
    for world in (2, 3):
        shares = [mask_noise(3, 5, 6, 16, rank, world) for rank in range(world)]
        torch.testing.assert_close(torch.stack(shares, 1).reshape(6, 16), whole, atol=0, rtol=0)
    with torch.random.fork_rng():
        torch.manual_seed(3 * 1_000_003 + 5)
        torch.testing.assert_close(torch.rand(6, 16), whole, atol=0, rtol=0)
    assert not torch.equal(mask_noise(3, 6, 6, 16), whole)


def test_content_alignment_ranks_average_to_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two simulated ranks, each with half the batch and its own copy of a weight: the all-reduce returns the
    sum of what the two ranks send. The mean of their losses and of their weight gradients (what DDP
    averages) equal one process's on the whole batch (float64, so rounding stays out of the comparison)."""
    g = torch.Generator().manual_seed(0)
    x, phi_v, phi_i = (torch.randn(4, 6, 8, generator=g, dtype=torch.float64) for _ in range(3))
    weight = torch.randn(8, 8, generator=g, dtype=torch.float64)

    def run(rows: slice) -> tuple[Tensor, Tensor]:
        w = weight.clone().requires_grad_()
        loss = content_alignment_loss(x[rows] @ w, phi_v[rows], phi_i[rows])["loss"]
        loss.backward()
        return loss.detach(), w.grad

    one_loss, one_grad = run(slice(None))
    sent: list[Tensor] = []

    def record(value: Tensor, op: object) -> Tensor:
        sent.append(value.detach())
        return value

    monkeypatch.setattr(D, "world", lambda: (0, 2))
    monkeypatch.setattr(dist_nn, "all_reduce", record)
    shares = [slice(rank, None, 2) for rank in range(2)]
    for rows in shares:  # what each rank sends
        run(rows)
    assert len(sent) == 2 and not torch.equal(sent[0], sent[1])
    monkeypatch.setattr(dist_nn, "all_reduce", lambda value, op: sent[0] + sent[1])
    ranks = [run(rows) for rows in shares]
    torch.testing.assert_close((ranks[0][0] + ranks[1][0]) / 2, one_loss)
    torch.testing.assert_close((ranks[0][1] + ranks[1][1]) / 2, one_grad)
