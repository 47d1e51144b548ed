"""Shared training pieces: deterministic patches, resumable loss history, atomic checkpoints, options."""

from __future__ import annotations

import click
import pytest
import torch

from fusebench.cli.options import parse_overrides
from fusebench.datasets.base import Pair, PairDataset, Sample
from fusebench.training import (
    CheckpointError,
    LossHistory,
    PatchDataset,
    load_checkpoint,
    plot_history,
    save_checkpoint,
)


class InMemory(PairDataset):
    def __init__(self, samples: list[Sample]) -> None:
        super().__init__("mem", [Pair(s.id, None, None) for s in samples])  # type: ignore[arg-type]
        self.samples = samples

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]


def _pairs() -> InMemory:
    g = torch.Generator().manual_seed(0)
    return InMemory([
        Sample("a", torch.rand(1, 40, 50, generator=g), torch.rand(3, 40, 50, generator=g)),
        Sample("b", torch.rand(1, 20, 24, generator=g), torch.rand(1, 20, 24, generator=g)),  # smaller than patch
    ])


def test_patches_are_aligned_deterministic_and_padded() -> None:
    data = PatchDataset(_pairs(), patch_size=32, patches_per_image=3, seed=5, flip=False)
    assert len(data) == 6
    ir, vi = data[1]
    assert ir.shape == vi.shape == (1, 32, 32)
    # aligned: the crop of IR is found at the same offset in the source IR as the VI crop in the source Y
    source = data.images[0]
    hits = [(t, l) for t in range(9) for l in range(19) if torch.equal(source[0, t:t + 32, l:l + 32], ir[0])]
    assert len(hits) == 1
    t, l = hits[0]
    assert torch.equal(source[1, t:t + 32, l:l + 32], vi[0])
    again = PatchDataset(_pairs(), patch_size=32, patches_per_image=3, seed=5, flip=False)
    assert torch.equal(again[1][0], ir)
    again.set_epoch(1)
    assert not torch.equal(again[1][0], ir)
    ir_b, _ = data[4]  # from the 20x24 image, reflect-padded to 32x32
    assert ir_b.shape == (1, 32, 32)
    torch.testing.assert_close(ir_b[0, :20, :24], data.images[1][0, :20, :24])


def test_loss_history_resumes_and_plots(tmp_path) -> None:
    log = LossHistory(tmp_path / "losses.csv")
    for step in range(1, 5):
        log.log(step, "align", mse=1.0 / step)
    log.log(5, "fusion", fusion=0.5, grad=0.1)
    resumed = LossHistory(tmp_path / "losses.csv", resume_step=3)
    rows = resumed.rows()
    assert [r["step"] for r in rows] == ["1", "2", "3"] and rows[1]["mse"] == "0.5"
    resumed.log(4, "align", mse=0.2)
    assert [r["step"] for r in resumed.rows()] == ["1", "2", "3", "4"]
    png = plot_history(tmp_path / "losses.csv", tmp_path / "losses.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fresh = LossHistory(tmp_path / "losses.csv")  # no resume: a new history
    assert fresh.rows() == []


def test_checkpoint_round_trip_and_errors(tmp_path) -> None:
    state = {"step": 7, "model": {"w": torch.arange(4.0)}}
    save_checkpoint(tmp_path / "c.pt", state)
    back = load_checkpoint(tmp_path / "c.pt", required=("step", "model"))
    assert back["step"] == 7 and torch.equal(back["model"]["w"], torch.arange(4.0))
    with pytest.raises(CheckpointError, match=r"c\.pt: not a fusebench training checkpoint, missing \['optimizer'\]"):
        load_checkpoint(tmp_path / "c.pt", required=("optimizer",))
    (tmp_path / "t.pt").write_bytes((tmp_path / "c.pt").read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"t\.pt: cannot read checkpoint, the file is truncated or corrupt"):
        load_checkpoint(tmp_path / "t.pt")


def test_parse_overrides(tmp_path) -> None:
    (tmp_path / "c.json").write_text('{"lr": 0.001, "stages": 2}')
    values = parse_overrides(("lr=1e-4", "name=abc", "flags=[1, 2]"), tmp_path / "c.json")
    assert values == {"lr": 1e-4, "stages": 2, "name": "abc", "flags": [1, 2]}
    with pytest.raises(click.BadParameter, match="expected KEY=VALUE"):
        parse_overrides(("novalue",))


def test_concat_datasets_prefixes_ids(shared_data) -> None:
    from fusebench.datasets import concat_datasets, load_dataset

    msrs, llvip = load_dataset("msrs.train", root=shared_data), load_dataset("llvip.train", root=shared_data)
    both = concat_datasets([msrs, llvip])
    assert both.key == "msrs.train+llvip.train" and len(both) == len(msrs) + len(llvip) == 66
    assert both.ids[0] == f"msrs.train:{msrs.ids[0]}" and both.pairs[-1].vi == llvip.pairs[-1].vi
    assert concat_datasets([msrs]) is msrs
