"""`fusebench run` as a pipeline: the same fused bytes and per-image scores as the sequential loop for any batch
size and worker count, interruptions and decode errors at the right pair, other output formats, sharded runs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from fusebench.cli import main
from fusebench.images import ImageError
from fusebench.methods import FusionMethod, register_method
from fusebench.runner import RunConfig, run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _own_hash_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path / "home"))


@pytest.fixture()
def mixed(tmp_path) -> Path:
    """Seven pairs of two sizes in alternation, grey and colour visible images (so batches are bucketed)."""
    rng = np.random.default_rng(1)
    root = tmp_path / "mixed"
    (root / "ir").mkdir(parents=True)
    (root / "vi").mkdir()
    for i in range(7):
        h, w = (48, 64) if i % 2 else (57, 71)
        yy, xx = np.mgrid[0:h, 0:w]
        base = 127 + 80 * np.sin(xx / (4.0 + i)) * np.cos(yy / 6.0)
        ir = np.clip(base + rng.normal(0, 25, (h, w)), 0, 255).astype(np.uint8)
        Image.fromarray(ir).save(root / "ir" / f"q{i}.png")
        shape = (h, w, 3) if i % 3 else (h, w)
        back = 255 - (base[..., None] if len(shape) == 3 else base)
        vi = np.clip(back + rng.normal(0, 25, shape), 0, 255)
        Image.fromarray(vi.astype(np.uint8)).save(root / "vi" / f"q{i}.png")
    return root


def _config(tmp_path: Path, data: Path, name: str, **kw) -> RunConfig:
    return RunConfig(**{"method": "mean", "dataset": str(data), "name": name, "out": str(tmp_path / "runs"), **kw})


def _outputs(result) -> tuple[dict[str, bytes], str]:
    """Fused files' bytes and the per-image CSV without its timing column."""
    files = {p.name: p.read_bytes() for p in sorted((result.run_dir / "fused").iterdir())}
    frame = pd.read_csv(result.metrics_path, dtype=str).drop(columns=["fuse_seconds"])
    return files, frame.to_csv(index=False)


def test_same_bytes_and_scores_for_any_batch_size_and_worker_count(tmp_path, mixed) -> None:
    reference = run(_config(tmp_path, mixed, "sequential"), progress=False, pipeline=False)
    files, csv = _outputs(reference)
    assert len(files) == 7 and csv.count("\n") == 8
    for batch, workers in [(1, 0), (4, 0), (1, 2), (4, 2)]:
        result = run(_config(tmp_path, mixed, f"b{batch}w{workers}"), progress=False, batch_size=batch,
                     workers=workers)
        assert (result.fused, result.scored, result.cached) == (7, 7 * 12, 0)
        assert _outputs(result) == (files, csv), (batch, workers)
        timings = pd.read_csv(result.run_dir / "timings.csv")
        assert sorted(timings["id"]) == [f"q{i}" for i in range(7)] and (timings["seconds"] >= 0).all()


class Interrupted(FusionMethod):
    """Pixel mean interrupted when it meets the pair named in ``fail_on`` (a class switch: same config)."""

    calls: ClassVar[list[str]] = []
    fail_on: ClassVar[str | None] = None

    def fuse_batch(self, ir, vi, ids=None):  # type: ignore[no-untyped-def]
        Interrupted.calls.extend(ids or [])
        if ids and Interrupted.fail_on in ids:
            raise KeyboardInterrupt("simulated interruption")
        return super().fuse_batch(ir, vi, ids)

    def fuse(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return (ir + vi) / 2


register_method("test-interrupted", description="test only")(Interrupted)


def test_interrupted_pipeline_keeps_the_pairs_fused_before_and_resumes(tmp_path, mixed) -> None:
    config = _config(tmp_path, mixed, "interrupted", method="test-interrupted", metrics=["EN", "SD"])
    Interrupted.calls, Interrupted.fail_on = [], "q4"
    with pytest.raises(KeyboardInterrupt):
        run(config, progress=False, batch_size=2, workers=2)
    fused = tmp_path / "runs" / "interrupted" / "mixed" / "fused"
    # batches of one size in order: [q0 q2] [q1 q3] [q4 q6] [q5]: the first two are on disk, nothing half-written
    assert sorted(p.name for p in fused.iterdir()) == ["q0.png", "q1.png", "q2.png", "q3.png"]
    Interrupted.calls, Interrupted.fail_on = [], None
    result = run(config, progress=False, batch_size=2, workers=2)
    assert sorted(Interrupted.calls) == ["q4", "q5", "q6"] and (result.fused, result.skipped) == (3, 4)
    reference = run(_config(tmp_path, mixed, "reference", metrics=["EN", "SD"]), progress=False, pipeline=False)
    assert _outputs(result) == _outputs(reference)


def test_a_corrupt_image_fails_at_its_turn_naming_the_file(tmp_path, mixed) -> None:
    bad = mixed / "vi" / "q3.png"
    bad.write_bytes(bad.read_bytes()[:200])  # the header (and size) intact, the pixels cut off
    with pytest.raises(ImageError, match="q3.png: cannot decode"):
        run(_config(tmp_path, mixed, "corrupt", metrics=["EN"]), progress=False, workers=2)
    fused = tmp_path / "runs" / "corrupt" / "mixed" / "fused"
    assert sorted(p.name for p in fused.iterdir()) == ["q0.png", "q1.png", "q2.png"]


class InputFormat(FusionMethod):
    """Pixel mean that, like the official MaeFuse with ``output_format="input"``, names and writes its outputs
    itself (here: BMP, lossless, so its scores can be compared)."""

    def __init__(self, **cfg) -> None:  # type: ignore[no-untyped-def]
        super().__init__(output_format="input", **cfg)

    def fuse(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return (ir + vi) / 2

    def output_path(self, fused_dir, pair_id, vi_path) -> Path:  # type: ignore[no-untyped-def]
        return Path(fused_dir) / f"{pair_id}.bmp"

    @staticmethod
    def write_output(path, image) -> None:  # type: ignore[no-untyped-def]
        Image.fromarray(image).save(path, format="BMP")


register_method("test-input-format", description="test only")(InputFormat)


def test_output_format_of_the_method_is_honoured(tmp_path, mixed) -> None:
    result = run(_config(tmp_path, mixed, "bmp", method="test-input-format", metrics=["EN", "SD", "Qabf"]),
                 progress=False, batch_size=4)
    fused = result.run_dir / "fused"
    assert sorted(p.name for p in fused.iterdir()) == [f"q{i}.bmp" for i in range(7)]
    reference = run(_config(tmp_path, mixed, "png", metrics=["EN", "SD", "Qabf"]), progress=False)
    for i in range(7):
        png = np.asarray(Image.open(reference.run_dir / "fused" / f"q{i}.png"))
        np.testing.assert_array_equal(np.asarray(Image.open(fused / f"q{i}.bmp")), png)
    assert _outputs(result)[1] == _outputs(reference)[1]
    again = run(_config(tmp_path, mixed, "bmp", method="test-input-format", metrics=["EN", "SD", "Qabf"]),
                progress=False)
    assert (again.fused, again.skipped, again.scored) == (0, 7, 0)


def test_shards_in_turn_give_the_one_process_csv(tmp_path, mixed) -> None:
    whole = run(_config(tmp_path, mixed, "whole", metrics=["EN", "SD", "CC"]), progress=False)
    first = run(_config(tmp_path, mixed, "sharded", metrics=["EN", "SD", "CC"]), progress=False, shard=(1, 3))
    assert not first.written and not first.metrics_path.exists() and first.fused == 2
    second = run(_config(tmp_path, mixed, "sharded", metrics=["EN", "SD", "CC"]), progress=False, shard=(0, 3))
    assert not second.written
    last = run(_config(tmp_path, mixed, "sharded", metrics=["EN", "SD", "CC"]), progress=False, shard=(2, 3),
               batch_size=2)
    assert last.written and last.fused == 2
    assert _outputs(last) == _outputs(whole)
    timings = pd.read_csv(last.run_dir / "timings.csv")
    assert sorted(timings["id"]) == [f"q{i}" for i in range(7)]


def test_two_shard_processes_side_by_side_give_the_one_process_csv(tmp_path, mixed) -> None:
    whole = run(_config(tmp_path, mixed, "whole", metrics=["EN", "SD", "Qabf"]), progress=False)
    env = {**os.environ, "FUSEBENCH_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [sys.executable, "-m", "fusebench", "run", "--method", "mean", "--dataset", str(mixed), "--name",
            "two", "--out", str(tmp_path / "runs"), "--metrics", "EN,SD,Qabf", "--no-progress", "--workers", "0",
            "--threads", "1"]
    procs = [subprocess.Popen([*args, "--shard", f"{i}/2"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("the two shards did not finish within 240 s")
    assert all(p.returncode == 0 for p in procs), outputs
    assert sum("results: " in o for o in outputs) >= 1  # the last to finish wrote them (both may)
    run_dir = tmp_path / "runs" / "two" / "mixed"
    frame = pd.read_csv(run_dir / "metrics_fusebench.csv", dtype=str).drop(columns=["fuse_seconds"])
    assert frame.to_csv(index=False) == _outputs(whole)[1]
    assert {p.name: p.read_bytes() for p in sorted((run_dir / "fused").iterdir())} == _outputs(whole)[0]


def test_torchrun_environment_picks_the_shard(tmp_path, mixed) -> None:
    env = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    out = CliRunner(env=env).invoke(main, ["run", "--method", "mean", "--dataset", str(mixed), "--out",
                                           str(tmp_path / "runs"), "--metrics", "EN", "--no-progress",
                                           "--device", "cpu", "--workers", "0"])
    assert out.exit_code == 0, out.output
    assert "shard 1/2 fused 3 pairs" in out.output
    fused = tmp_path / "runs" / "mean" / "mixed" / "fused"
    assert sorted(p.name for p in fused.iterdir()) == ["q1.png", "q3.png", "q5.png"]
    bad = CliRunner().invoke(main, ["run", "--method", "mean", "--dataset", str(mixed), "--shard", "2/2"])
    assert bad.exit_code != 0 and "0 <= I < N" in bad.output


@pytest.mark.gpu
def test_pipeline_on_cuda_gives_the_cpu_loop_files_and_scores(tmp_path, mixed, cuda) -> None:
    reference = run(_config(tmp_path, mixed, "cpu", device="cpu"), progress=False, pipeline=False)
    result = run(_config(tmp_path, mixed, "gpu", device=str(cuda)), progress=False, batch_size=4, workers=2)
    files, csv = _outputs(result)
    assert files == _outputs(reference)[0]
    got, want = (pd.read_csv(io.StringIO(c)).set_index("id") for c in (csv, _outputs(reference)[1]))
    pd.testing.assert_frame_equal(got, want, rtol=1e-9)  # the same metrics on another device: to rounding


def test_cli_batch_size_workers_and_the_sequential_loop(tmp_path, mixed) -> None:
    base = ["run", "--method", "mean", "--dataset", str(mixed), "--out", str(tmp_path / "runs"), "--metrics",
            "EN,SD", "--no-progress"]
    for name, extra in [("loop", ["--no-pipeline"]), ("piped", ["--batch-size", "4", "--workers", "1"])]:
        out = CliRunner().invoke(main, [*base, "--name", name, *extra])
        assert out.exit_code == 0 and "fused 7 pairs" in out.output, out.output
    tables = [pd.read_csv(tmp_path / "runs" / n / "mixed" / "metrics_fusebench.csv").drop(columns=["fuse_seconds"])
              for n in ("loop", "piped")]
    pd.testing.assert_frame_equal(*tables)
    bad = CliRunner().invoke(main, [*base, "--no-pipeline", "--shard", "0/2"])
    assert bad.exit_code != 0 and "need the pipeline" in bad.output
    bad = CliRunner().invoke(main, [*base, "--batch-size", "0"])
    assert bad.exit_code != 0 and "--batch-size" in bad.output


def _worker_state() -> tuple[int, int]:
    return os.getpid(), torch.get_num_threads()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="scoring processes are forked on Linux only")
def test_scoring_workers_are_forked_processes_with_their_share_of_threads() -> None:
    from fusebench.pipeline import scoring_executor

    pool, parallel, threads = scoring_executor(2)
    try:
        states = {pool.submit(_worker_state).result() for _ in range(8)}
    finally:
        pool.shutdown()
    assert (parallel, threads) == (2, 1)
    assert os.getpid() not in {pid for pid, _ in states} and {n for _, n in states} == {1}


def test_a_worker_process_that_dies_is_reported_and_the_results_before_it_kept() -> None:
    from concurrent.futures import ProcessPoolExecutor

    from fusebench.pipeline import InOrderPool

    done: list[tuple[str, object]] = []
    pool = InOrderPool(lambda tag, result: done.append((tag, result)), ProcessPoolExecutor(1), limit=4)
    try:
        pool.submit("first", abs, -3)
        pool.drain()
        pool.submit("killed", os._exit, 1)
        with pytest.raises(RuntimeError, match="a worker process ended unexpectedly"):
            pool.drain()
    finally:
        pool.close()
    assert done == [("first", 3)]
