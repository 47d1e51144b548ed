"""Results a run names cannot go stale: content fingerprints, the per-image score cache, the run folder's lock.

The stale cases of issue 10 first: folder images replaced, an input replaced by a same-size file, a seed
change, a rerun with other --metrics, two concurrent runs with different --metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from fusebench.cli import main
from fusebench.files import HashCache, atomic_write, write_json
from fusebench.runner import RunConfig, RunError, run


@pytest.fixture(autouse=True)
def _own_hash_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path / "home"))


def _config(tmp_path, data, **kw) -> RunConfig:
    return RunConfig(**{"method": "mean", "dataset": str(data), "metrics": ["EN", "SD"],
                        "out": str(tmp_path / "runs"), **kw})


def _age(path, seconds: float = 60.0) -> None:
    """Make a file look old, so its content hash is cached (fresh files are always hashed again)."""
    t = time.time() - seconds
    os.utime(path, (t, t))


def _strict_json(path):
    def refuse(token):
        raise AssertionError(f"{path}: invalid JSON token {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


# -- the stale cases ---------------------------------------------------------------------------------------
def test_folder_images_replaced_are_scored_again(tmp_path, folder_dataset) -> None:
    direct = run(_config(tmp_path, folder_dataset), progress=False)
    published = tmp_path / "published"
    published.mkdir()
    for p in (direct.run_dir / "fused").iterdir():
        (published / p.name).write_bytes(p.read_bytes())
        _age(published / p.name)
    config = _config(tmp_path, folder_dataset, method="folder", name="theirs",
                     method_options={"path": str(published)})
    first = run(config, progress=False)
    before = pd.read_csv(first.metrics_path, index_col="id")
    # the authors publish corrected images: p0 becomes black, p2 white
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(published / "p0.png")
    Image.fromarray(np.full((57, 71, 3), 255, np.uint8)).save(published / "p2.png")
    again = run(config, progress=False)
    after = pd.read_csv(again.metrics_path, index_col="id")
    assert (again.fused, again.skipped) == (2, 2)  # only the replaced images are read again
    assert after.loc["p0", "SD"] == 0 and after.loc["p2", "SD"] == 0
    assert before.loc["p0", "SD"] > 0
    pd.testing.assert_series_equal(after.loc[["p1", "p3"], "EN"], before.loc[["p1", "p3"], "EN"])
    summary = _strict_json(again.summary_path)
    assert summary["means"]["SD"] == pytest.approx(after["SD"].mean())
    assert again.scored == 4 and again.cached == 4  # 2 pairs x 2 metrics new, the others from the cache


def test_input_replaced_by_same_size_file_is_detected(tmp_path) -> None:
    data = tmp_path / "bmp"
    rng = np.random.default_rng(1)
    for kind in ("ir", "vi"):
        (data / kind).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(data / kind / f"q{i}.bmp")
            _age(data / kind / f"q{i}.bmp")
    run(_config(tmp_path, data), progress=False)
    target = data / "ir" / "q0.bmp"
    size = target.stat().st_size
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(target)
    assert target.stat().st_size == size  # same byte size, other pixels
    with pytest.raises(RunError, match="different inputs_hash"):
        run(_config(tmp_path, data), progress=False)


def test_seed_is_part_of_the_fingerprint(tmp_path, folder_dataset) -> None:
    run(_config(tmp_path, folder_dataset, seed=0), progress=False)
    with pytest.raises(RunError, match="different seed"):
        run(_config(tmp_path, folder_dataset, seed=1), progress=False)
    run(_config(tmp_path, folder_dataset, seed=1, name="seed1"), progress=False)


def test_rerun_with_other_metrics_keeps_both_and_computes_only_the_new(tmp_path, folder_dataset) -> None:
    first = run(_config(tmp_path, folder_dataset, metrics=["EN", "SD"]), progress=False)
    assert (first.scored, first.cached) == (8, 0)
    second = run(_config(tmp_path, folder_dataset, metrics=["sd", "qabf"]), progress=False)  # aliases, any case
    assert (second.fused, second.skipped) == (0, 4)
    assert (second.scored, second.cached) == (4, 4)  # Qabf only
    frame = pd.read_csv(second.metrics_path, index_col="id")
    assert list(frame.columns) == ["SD", "Qabf", "EN", "fuse_seconds"]
    summary = _strict_json(second.summary_path)
    assert set(summary["means"]) == {"EN", "SD", "Qabf"} and summary["metrics"]["asked"] == ["SD", "Qabf"]
    third = run(_config(tmp_path, folder_dataset, metrics=["EN", "SD", "Qabf"]), progress=False)
    assert (third.scored, third.cached) == (0, 12)
    pd.testing.assert_frame_equal(pd.read_csv(third.metrics_path, index_col="id")[["EN", "SD", "Qabf"]],
                                  frame[["EN", "SD", "Qabf"]])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from fusebench.cli import main; main()", *args]


def test_concurrent_runs_with_different_metrics_keep_both(tmp_path, folder_dataset) -> None:
    env = {**os.environ, "FUSEBENCH_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    base = ["run", "--method", "max", "--dataset", str(folder_dataset), "--out", str(tmp_path / "runs"),
            "--no-progress", "--device", "cpu"]
    procs = [subprocess.Popen(_cli(*base, "--metrics", m), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for m in ("EN,SD", "SF,Qabf")]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    run_dir = tmp_path / "runs" / "max" / "data"
    frame = pd.read_csv(run_dir / "metrics_fusebench.csv", index_col="id")
    assert {"EN", "SD", "SF", "Qabf"} <= set(frame.columns) and not frame[["EN", "SD", "SF", "Qabf"]].isna().any().any()
    assert set(_strict_json(run_dir / "summary_fusebench.json")["means"]) == {"EN", "SD", "SF", "Qabf"}
    timings = pd.read_csv(run_dir / "timings.csv")
    assert sorted(timings["id"]) == ["p0", "p1", "p2", "p3"]


# -- files that cannot tear or lie ----------------------------------------------------------------------------
def test_all_zero_pair_writes_null_not_nan(tmp_path, folder_dataset) -> None:
    for kind in ("ir", "vi"):
        Image.fromarray(np.zeros((48, 64), np.uint8)).save(folder_dataset / kind / "p0.png")
    result = run(_config(tmp_path, folder_dataset, metrics=["EN", "CC"]), progress=False)
    summary = _strict_json(result.summary_path)  # valid JSON: no NaN token
    assert summary["means"]["CC"] is None and summary["stds"]["CC"] is None
    assert summary["undefined"] == {"CC": ["p0"]}
    assert summary["means"]["EN"] == pytest.approx(pd.read_csv(result.metrics_path)["EN"].mean())
    _strict_json(result.run_dir / "scores_fusebench.json")
    out = CliRunner().invoke(main, ["run", "--method", "mean", "--dataset", str(folder_dataset), "--metrics",
                                    "EN,CC", "--out", str(tmp_path / "runs"), "--no-progress"])
    assert out.exit_code == 0 and "undefined on p0" in out.output


def test_write_json_never_writes_nan(tmp_path) -> None:
    write_json(tmp_path / "x.json", {"a": float("nan"), "b": [float("inf"), 1.5], "c": np.float64("nan")})
    assert _strict_json(tmp_path / "x.json") == {"a": None, "b": [None, 1.5], "c": None}


def test_timings_are_rewritten_whole(tmp_path, folder_dataset) -> None:
    result = run(_config(tmp_path, folder_dataset), progress=False)
    path = result.run_dir / "timings.csv"
    path.write_text(path.read_text() + "p9,0.1p8")  # a torn line from an older version is ignored
    (result.run_dir / "fused" / "p1.png").unlink()
    run(_config(tmp_path, folder_dataset), progress=False)
    lines = path.read_text().splitlines()
    assert lines[0] == "id,seconds" and sorted(line.split(",")[0] for line in lines[1:]) == ["p0", "p1", "p2", "p3"]


def test_disk_full_names_the_file(tmp_path, monkeypatch) -> None:
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"cannot write .*out\.json: No space left on device"):
        write_json(tmp_path / "out.json", {"a": 1})
    with pytest.raises(OSError, match="out.bin"), atomic_write(tmp_path / "out.bin") as handle:
        handle.write(b"x")
    assert list(tmp_path.iterdir()) == []  # no temporary file left


def test_corrupt_run_record_names_the_file_and_cache_is_rebuilt(tmp_path, folder_dataset) -> None:
    result = run(_config(tmp_path, folder_dataset), progress=False)
    (result.run_dir / "scores_fusebench.json").write_text("{not json")
    with pytest.warns(UserWarning, match="scores_fusebench.json: corrupt score cache"):
        again = run(_config(tmp_path, folder_dataset), progress=False)
    assert again.scored == 8
    (result.run_dir / "run.json").write_text("{\"method\": ")
    out = CliRunner().invoke(main, ["run", "--method", "mean", "--dataset", str(folder_dataset), "--metrics",
                                    "EN", "--out", str(tmp_path / "runs"), "--no-progress"])
    assert out.exit_code != 0 and "run.json: corrupt run record" in out.output


def test_hash_cache_rehashes_replaced_files(tmp_path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"one")
    _age(f, 100)
    cache = HashCache(tmp_path / "hashes.json")
    first = cache.hash(f)
    cache.save()
    assert HashCache(tmp_path / "hashes.json").hash(f) == first
    f.write_bytes(b"two")  # same size, new mtime
    assert HashCache(tmp_path / "hashes.json").hash(f) != first
