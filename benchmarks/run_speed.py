"""End-to-end ``fusebench run`` pairs/s: the sequential loop against the pipeline, side by side in one process.

Each measurement is a whole ``run`` (fuse, write PNGs, score with the metrics asked, write the results) into
a fresh output folder, so nothing is resumed or taken from the score cache; the source images' content hashes
are computed once before timing (both modes share that cache). The modes alternate, repeat after repeat:

* ``sequential``: ``pipeline=False``, today's loop before the pipeline (one pair per call in the main
  thread, synchronous PNG encode, then every PNG read back and scored by ``evaluate_files``);
* ``pipeline``: DataLoader workers decode, batches of ``--batch-size`` pairs of one size, fused images
  scored in memory on the device, PNGs written by a thread pool.

Both modes' per-image CSVs are compared (they must be equal). Examples::

    FUSEBENCH_DATA=../shared/datasets python benchmarks/run_speed.py --out benchmarks/results/run_speed_cpu.json
    python benchmarks/run_speed.py --device cuda --batch-sizes 1,16 --out /tmp/run_speed_cuda.json
    python benchmarks/run_speed.py --method maefuse --set random_init=true --set precision=bf16 \\
        --device cuda --batch-sizes 32 --metrics EN,SD --modes pipeline --out /tmp/maefuse_run.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="mean")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE", help="method option")
    p.add_argument("--dataset", default="msrs.test", help="dataset name (FUSEBENCH_DATA) or folder")
    p.add_argument("--data-root", default=None, help="datasets root (default $FUSEBENCH_DATA)")
    p.add_argument("--metrics", default=None, help="comma-separated metrics (default: the standard suite)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--modes", default="sequential,pipeline", help="sequential, pipeline or both")
    p.add_argument("--batch-sizes", default="4", help="pipeline batch sizes, comma-separated")
    p.add_argument("--workers", type=int, default=None, help="pipeline DataLoader workers (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the usable cores)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs of each mode (the median is reported)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import pandas as pd
    import torch

    from fusebench.cli.options import parse_overrides
    from fusebench.datasets import load_dataset
    from fusebench.runner import RunConfig, inputs_hash, run
    from fusebench.threads import configure_threads, usable_cores

    threads = configure_threads(args.threads)
    data_root = args.data_root or os.environ.get("FUSEBENCH_DATA")
    pairs = load_dataset(args.dataset, root=data_root, download=False)
    inputs_hash(pairs)  # warm the hash cache of the sources for both modes
    metrics = [m for m in args.metrics.split(",") if m] if args.metrics else None
    options = parse_overrides(tuple(args.settings))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    settings: list[tuple[str, int]] = []
    for mode in modes:
        if mode == "sequential":
            settings.append(("sequential", 1))
        elif mode == "pipeline":
            settings.extend(("pipeline", int(b)) for b in args.batch_sizes.split(","))
        else:
            raise SystemExit(f"--modes: unknown mode {mode!r}")

    times: dict[str, list[float]] = {}
    tables: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="run_speed_") as tmp:
        for repeat in range(args.repeats):
            for mode, batch in settings:
                label = mode if mode == "sequential" else f"pipeline_b{batch}"
                config = RunConfig(method=args.method, dataset=args.dataset, data_root=data_root,
                                   method_options=options, device=args.device, metrics=metrics,
                                   out=str(Path(tmp) / f"{label}_{repeat}"), download=False)
                start = time.perf_counter()
                result = run(config, progress=False, pipeline=mode == "pipeline", batch_size=batch,
                             workers=args.workers)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.setdefault(label, []).append(time.perf_counter() - start)
                frame = pd.read_csv(result.metrics_path, dtype=str).drop(columns=["fuse_seconds"])
                tables[label] = frame.to_csv(index=False)
                print(f"{label} repeat {repeat}: {times[label][-1]:.2f} s", file=sys.stderr, flush=True)
    n = len(pairs)
    rows = {label: {"seconds": statistics.median(t), "all_seconds": t, "pairs_per_s": n / statistics.median(t)}
            for label, t in times.items()}
    reference = next(iter(tables.values()))
    result: dict[str, Any] = {
        "benchmark": "run_speed", "method": args.method, "method_options": options, "dataset": pairs.key,
        "pairs": n, "metrics": metrics or "default", "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
        "threads": threads, "usable_cores_now": usable_cores(), "cpu_count": os.cpu_count(),
        "workers": args.workers if args.workers is not None else "auto", "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "repeats": args.repeats,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "runs": rows, "same_scores": all(t == reference for t in tables.values()),
    }
    if "sequential" in rows:
        result["speedup_vs_sequential"] = {label: rows["sequential"]["seconds"] / r["seconds"]
                                           for label, r in rows.items() if label != "sequential"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not result["same_scores"]:
        raise SystemExit("the modes' per-image scores differ")
    return result


if __name__ == "__main__":
    main()
