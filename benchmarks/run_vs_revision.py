"""End-to-end ``fusebench run`` wall time: this checkout against an earlier revision, side by side.

Each measurement is the whole command a user types, ``python -m fusebench run --method M --dataset D``
(interpreter start, imports, validation, fusing, PNG writing, scoring, results), in a fresh output folder,
so nothing is resumed or taken from a score cache. The revision's code is exported with ``git archive`` into
a temporary folder and run from there (``PYTHONPATH``, working directory outside both trees); the two
alternate, repeat after repeat, under the same environment (``OMP_WAIT_POLICY=PASSIVE``, one shared
``FUSEBENCH_HOME``). Both per-image CSVs are compared: the JSON records the largest relative difference.

    FUSEBENCH_DATA=../shared/datasets python benchmarks/run_vs_revision.py --rev ec1fdba \\
        --out benchmarks/results/run_vs_ec1fdba_cpu.json

``ec1fdba`` is the code of the day the pipeline issue was filed (one pair per call, synchronous PNG
encoding, every PNG read back and scored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def export_revision(rev: str, dest: Path) -> str:
    """The tree of ``rev`` unpacked into ``dest``; returns the full commit hash."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    archive = dest.with_suffix(".tar")
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), commit], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return commit


def timed_run(code: Path, out: Path, args: argparse.Namespace, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """One ``fusebench run`` with the package at ``code``: wall seconds and the summary's timings."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-c", "from fusebench.cli import main; main()", "run", "--method", args.method,
           "--dataset", args.dataset, "--out", str(out), "--no-progress"]
    if args.metrics:
        cmd += ["--metrics", args.metrics]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env={**env, "PYTHONPATH": str(code)}, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"fusebench run from {code} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    summary = next(out.rglob("summary_*.json"))
    return {"wall_s": round(wall, 3), "timings": json.loads(summary.read_text()).get("timings", {})}


def max_relative_difference(a: Path, b: Path) -> float:
    """Largest |x - y| / max(|y|, 1e-12) over the scores in the per-image CSVs of two runs (written with 10
    significant digits)."""
    import pandas as pd

    x = pd.read_csv(next(a.rglob("metrics_*.csv")), index_col="id").sort_index()
    y = pd.read_csv(next(b.rglob("metrics_*.csv")), index_col="id").sort_index()
    common = [c for c in x.columns if c in y.columns and not c.endswith("_seconds")]  # scores, not timings
    if list(x.index) != list(y.index) or not common:
        raise RuntimeError("the two runs scored different pairs or metrics")
    diff = (x[common] - y[common]).abs() / y[common].abs().clip(lower=1e-12)
    return float(diff.to_numpy().max())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rev", default="ec1fdba", help="the revision to compare against (default ec1fdba)")
    p.add_argument("--method", default="mean")
    p.add_argument("--dataset", default="msrs.test")
    p.add_argument("--metrics", default=None, help="comma-separated metrics (default: the standard suite)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs of each (the median is reported)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fusebench-rev-") as tmp_name:
        tmp = Path(tmp_name)
        commit = export_revision(args.rev, tmp / "revision")
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "FUSEBENCH_HOME": str(tmp / "home")}
        env.setdefault("FUSEBENCH_DATA", str(REPO.parent / "shared" / "datasets"))
        codes = {"revision": tmp / "revision", "current": REPO}
        load_before = os.getloadavg()
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in codes}
        for _ in range(args.repeats):
            for label, code in codes.items():
                runs[label].append(timed_run(code, tmp / f"out_{label}", args, env, cwd=tmp))
        difference = max_relative_difference(tmp / "out_current", tmp / "out_revision")
    median = {label: statistics.median(r["wall_s"] for r in rs) for label, rs in runs.items()}
    def git(*cmd: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True, check=True).stdout

    result = {
        "command": f"fusebench run --method {args.method} --dataset {args.dataset}"
                   + (f" --metrics {args.metrics}" if args.metrics else ""),
        "revision": {"rev": args.rev, "commit": commit},
        "current": {"commit": git("rev-parse", "HEAD").strip(),
                    "dirty": bool(git("status", "--porcelain", "--untracked-files=no").strip())},
        "runs": runs,
        "median_wall_s": median,
        "speedup": round(median["revision"] / median["current"], 3),
        "max_relative_score_difference": difference,
        "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                    "python": platform.python_version(), "load_average_before": load_before,
                    "load_average_after": os.getloadavg()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("command", "median_wall_s", "speedup",
                                             "max_relative_score_difference")}, indent=2))
    return result


if __name__ == "__main__":
    main()
