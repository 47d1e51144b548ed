"""Throughput of fusebench.metrics against the straightforward per-image numpy/scipy implementation.

For every metric and for the whole suite (the default suite and all metrics), writes pairs/s of
fusebench's batched torch functions (CPU with a fixed thread count, and CUDA when available) at each batch
size, and, in the same run, pairs/s of ``tests/metrics/numpy_reference.py`` (one image at a time, the way the
field's Python evaluators are written; same definitions). Images: real MSRS test pairs (640x480) when the
shared datasets are found, with F = mean of IR and VI luminance; structured random images otherwise.

    python benchmarks/metrics_speed.py --threads 2 --sizes 640x480 --batch-sizes 1,8 --out metrics_speed.json
    python benchmarks/metrics_speed.py --device cuda --gpu-batch-sizes 1,4,16,64 --dtypes float32,float64
    python benchmarks/metrics_speed.py --compile off,on    # eager and torch.compile'd kernels side by side
    python benchmarks/metrics_speed.py --sizes 96x64 --batch-sizes 1,2 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "metrics"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="640x480", help="comma-separated WxH (default 640x480)")
    p.add_argument("--batch-sizes", default="1,8", help="CPU batch sizes, comma-separated (default 1,8)")
    p.add_argument("--gpu-batch-sizes", default="1,4,16,64", help="CUDA batch sizes (default 1,4,16,64)")
    p.add_argument("--device", default="cpu,cuda", help="cpu, cuda or both (cuda skipped when unavailable)")
    p.add_argument("--dtypes", default="float64,float32", help="float64 (reference accuracy), float32 (fast)")
    p.add_argument("--compile", default="off,on",
                   help="off (eager torch), on (torch.compile'd metric kernels, compiled before timing) or both")
    p.add_argument("--threads", type=int, default=2, help="torch/BLAS CPU threads (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per setting (median is reported)")
    p.add_argument("--metrics", default="all", help="'all', 'default' or comma-separated names")
    p.add_argument("--reference-repeats", type=int, default=1, help="timed repeats of the numpy reference")
    p.add_argument("--no-reference", action="store_true", help="skip the numpy reference")
    p.add_argument("--data", default=None, help="shared datasets root (default ../shared/datasets)")
    p.add_argument("--out", default="metrics_speed.json", help="JSON output path")
    return p.parse_args(argv)


def load_pool(root: Path, w: int, h: int, count: int = 8) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Up to ``count`` (F, IR, VI) grey uint8 triples of size h x w: MSRS crops or structured random images."""
    from PIL import Image

    pool = []
    msrs = root / "msrs" / "test"
    if (msrs / "ir").is_dir():
        for ir_path in sorted((msrs / "ir").iterdir())[:count]:
            a = np.array(Image.open(ir_path).convert("L"), dtype=np.float64)
            b = np.array(Image.open(msrs / "vi" / ir_path.name).convert("L"), dtype=np.float64)
            if a.shape[0] < h or a.shape[1] < w:
                continue
            a, b = a[:h, :w], b[:h, :w]
            f = np.round((a + b) / 2)
            pool.append(tuple(x.astype(np.uint8) for x in (f, a, b)))
    rng = np.random.default_rng(0)
    while len(pool) < count:
        yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
        a = np.clip(120 * xx + 60 * yy + rng.normal(0, 25, (h, w)) + 80 * (xx > 0.5), 0, 255).round()
        b = np.clip(255 - 120 * xx - 60 * yy + rng.normal(0, 30, (h, w)), 0, 255).round()
        f = np.clip((a + b) / 2 + rng.normal(0, 10, (h, w)), 0, 255).round()
        pool.append(tuple(x.astype(np.uint8) for x in (f, a, b)))
    return pool


def time_torch(fn, args, repeats: int, sync, first: list[float] | None = None) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call (allocations, CUDA kernels, compilation),
    whose time is appended to ``first`` when given."""
    t = time.perf_counter()
    fn(*args)
    sync()
    if first is not None:
        first.append(time.perf_counter() - t)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args)
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fresh_kernels(compiled: bool) -> None:
    """Compiled settings start from no in-memory graphs, so each is timed on kernels specialised to its own
    shapes, as in a run over one image size (torch's on-disk cache makes the recompilation quick)."""
    if compiled:
        import torch._dynamo

        torch._dynamo.reset()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    # Spinning OpenMP workers collapse on a shared, oversubscribed CPU (20x slower with 2 threads here).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    import fusebench.metrics as M

    torch.set_num_threads(args.threads)
    names = (M.list_metrics() if args.metrics == "all" else list(M.DEFAULT_METRICS)
             if args.metrics == "default" else [M.get_metric(m).name for m in args.metrics.split(",")])
    root = Path(args.data) if args.data else REPO.parent / "shared" / "datasets"
    devices = [d for d in args.device.split(",") if d == "cpu" or torch.cuda.is_available()]
    result: dict = {
        "config": {**vars(args), "metrics": names, "devices_run": devices},
        "env": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
                "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "results": [],
    }
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        pool = load_pool(root, w, h)
        entry: dict = {"size": f"{w}x{h}", "fusebench": {}, "reference": {}}
        for dev in devices:
            sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
            for dt, mode in itertools.product(args.dtypes.split(","), args.compile.split(",")):
                dtype, compiled = getattr(torch, dt), mode == "on"
                key = f"{dev}/{dt}" + ("/compiled" if compiled else "")
                per_bs = {}
                sizes = args.gpu_batch_sizes if dev == "cuda" else args.batch_sizes
                for bs in (int(b) for b in sizes.split(",")):
                    raw = [torch.from_numpy(np.stack([pool[i % len(pool)][k] for i in range(bs)]))[:, None].to(dev)
                           for k in range(3)]
                    batch = [t.to(dtype) for t in raw]
                    fresh_kernels(compiled)
                    with M.compiled_kernels(compiled):
                        # each metric alone: the functional call, input checks included
                        secs = {m: time_torch(lambda *imgs, m=m: M.get_metric(m).factory(*imgs, data_range=255.0),
                                              batch, args.repeats, sync) for m in names}

                    first: list[float] = []

                    def suite(metrics, raw=raw, dtype=dtype, dev=dev, bs=bs, sync=sync, compiled=compiled,
                              first=first):
                        # what fusebench run does per batch: one evaluate() call on 8-bit images
                        def call(*imgs):
                            return M.evaluate(*imgs, metrics=metrics, dtype=dtype, device=dev, compile=compiled)

                        fresh_kernels(compiled)
                        return bs / time_torch(call, raw, args.repeats, sync, first)

                    default = [m for m in M.DEFAULT_METRICS if m in names]
                    per_bs[bs] = {
                        "pairs_per_s": {m: bs / s for m, s in secs.items()},
                        "suite_all_pairs_per_s": suite(names),
                        "suite_default_pairs_per_s": suite(default) if len(default) == len(M.DEFAULT_METRICS)
                        else None,
                        "suite_all_first_call_s": first[0],  # compiled: includes compiling (or loading) kernels
                    }
                    print(f"{w}x{h} {key} batch {bs}: suite(all) {per_bs[bs]['suite_all_pairs_per_s']:.2f} "
                          f"pairs/s, default suite {per_bs[bs]['suite_default_pairs_per_s'] or float('nan'):.2f}",
                          flush=True)
                entry["fusebench"][key] = per_bs
        if not args.no_reference:
            import numpy_reference as ref

            f, a, b = (x.astype(np.float64) for x in pool[0])
            secs = {}
            for m in names:
                fn = ref.FUNCTIONS[m]
                kw = {"loops": False} if m == "Nabf" else {}
                times = []
                for _ in range(args.reference_repeats):
                    t = time.perf_counter()
                    fn(f, a, b, **kw)
                    times.append(time.perf_counter() - t)
                secs[m] = statistics.median(times)
            entry["reference"] = {
                "pairs_per_s": {m: 1 / s for m, s in secs.items()},
                "suite_all_pairs_per_s": 1 / sum(secs.values()),
                "suite_default_pairs_per_s": 1 / sum(secs[m] for m in M.DEFAULT_METRICS if m in secs)
                if all(m in secs for m in M.DEFAULT_METRICS) else None,
            }
            print(f"{w}x{h} numpy reference: suite(all) {entry['reference']['suite_all_pairs_per_s']:.3f} pairs/s",
                  flush=True)
            speedup = {}
            for key, per_bs in entry["fusebench"].items():
                for bs, r in per_bs.items():
                    speedup[f"{key}/batch{bs}"] = {
                        "suite_all": r["suite_all_pairs_per_s"] / entry["reference"]["suite_all_pairs_per_s"],
                        **({"suite_default": r["suite_default_pairs_per_s"]
                            / entry["reference"]["suite_default_pairs_per_s"]}
                           if r["suite_default_pairs_per_s"] else {}),
                        "per_metric": {m: r["pairs_per_s"][m] / entry["reference"]["pairs_per_s"][m] for m in names},
                    }
            entry["speedup_vs_reference"] = speedup
        result["results"].append(entry)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
