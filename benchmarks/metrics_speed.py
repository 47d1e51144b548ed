"""Throughput of fusebench.metrics against the straightforward per-image numpy/scipy implementation.

For every metric and for the whole suite (the default suite and all metrics), writes pairs/s of
fusebench's batched torch functions (CPU with a fixed thread count, and CUDA when available) at each batch
size, and, in the same run, pairs/s of ``tests/metrics/numpy_reference.py`` (one image at a time, the way the
field's Python evaluators are written; same definitions). Images: real MSRS test pairs (640x480) when the
shared datasets are found, with F = mean of IR and VI luminance; structured random images otherwise.

    python benchmarks/metrics_speed.py --threads 2 --sizes 640x480 --batch-sizes 1,8 --out metrics_speed.json
    python benchmarks/metrics_speed.py --device cuda --gpu-batch-sizes 1,4,16,64 --dtypes float32,float64
    python benchmarks/metrics_speed.py --compile off,on    # eager and torch.compile'd kernels side by side
    python benchmarks/metrics_speed.py --sizes 96x64 --batch-sizes 1,2 --repeats 1   # smoke test (no MS_SSIM)
    python benchmarks/metrics_speed.py --metrics default --compile off --busy 1   # idle, then 1 core kept busy

``--busy N`` measures everything a second time while N competing CPU-bound processes (a plain Python spin
loop each, started beside the measurement, bounded by ``--busy-max-s`` and stopped at the end) occupy N cores,
and writes the idle and busy figures side by side: the suites as ``evaluate`` runs them by default (threads
chosen from the cores usable now) and the numpy reference, measured under the same load. ``--busy-fixed``
adds the suites with torch's thread count forced to ``--threads`` (what evaluate did before it adapted).
``evaluate`` picks its threads itself (``threads=None``); the per-metric functional calls use ``--threads``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

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
    p.add_argument("--suites-only", action="store_true", help="skip the per-metric functional calls")
    p.add_argument("--data", default=None, help="shared datasets root (default ../shared/datasets)")
    p.add_argument("--busy", type=int, default=0,
                   help="also measure with N competing CPU-bound processes beside the measurement (default 0)")
    p.add_argument("--busy-max-s", type=float, default=1800.0,
                   help="the competing processes stop by themselves after this many seconds (default 1800)")
    p.add_argument("--busy-fixed", action="store_true",
                   help="under --busy, also time the suites with torch's threads forced to --threads (slow)")
    p.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "default"],
                   help="OpenMP wait policy set before torch loads, unless already set ('default': unset, so "
                        "libgomp's workers spin before sleeping; default PASSIVE)")
    p.add_argument("--out", default="metrics_speed.json", help="JSON output path")
    return p.parse_args(argv)


# setting name -> torch device; tests map "cuda" to "cpu" to run the CUDA branch on a machine without a GPU
DEVICE_ALIASES: dict[str, str] = {}

_SPIN = ("import os, time\nend, parent = time.monotonic() + {seconds}, {parent}\n"
         "while time.monotonic() < end and os.getppid() == parent:\n    for _ in range(100000):\n        pass\n")


class CompetingLoad:
    """``n`` plain Python spin-loop processes (one core each), each bounded to ``max_s`` seconds (and to the
    life of this process) and stopped when the context exits."""

    def __init__(self, n: int, max_s: float) -> None:
        self.n, self.max_s = n, max_s
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Self:
        code = _SPIN.format(seconds=self.max_s, parent=os.getpid())  # also ends if this process dies
        self.procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
                      for _ in range(self.n)]
        time.sleep(0.5)  # let them reach the loop, so the first measurement already sees them
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []


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


def time_interleaved(calls: dict, repeats: int, sync) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds of each call over ``repeats`` rounds that run every call once, in turn, after one warm-up
    round (whose times are returned second): on a shared machine whose load drifts, settings compared with
    each other see the same load."""
    first = {}
    for name, fn in calls.items():
        t = time.perf_counter()
        fn()
        sync()
        first[name] = time.perf_counter() - t
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            t = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) for name, v in times.items()}, first


def fresh_kernels(compiled: bool) -> None:
    """Compiled settings start from no in-memory graphs, so each is timed on kernels specialised to its own
    shapes, as in a run over one image size (torch's on-disk cache makes the recompilation quick)."""
    if compiled:
        import torch._dynamo

        torch._dynamo.reset()


def measure_torch(args: argparse.Namespace, names: list[str], pool: list, devices: list[str],
                  per_metric: bool = True, fixed_threads: bool = False, reference: bool = False) -> dict:
    """pairs/s of fusebench per device/dtype/mode and batch size: each metric's functional call (when
    ``per_metric``) and the suites as one ``evaluate()`` call with its default threads (and, with
    ``fixed_threads``, with torch's threads forced to ``--threads``; with ``reference``, the numpy reference's
    default suite on one image), timed in turn so that they see the same load. The same code runs for CPU
    and CUDA."""
    import torch

    import fusebench.metrics as M
    from fusebench.threads import scoring_threads

    out: dict = {}
    for name in devices:
        cuda, dev = name.startswith("cuda"), DEVICE_ALIASES.get(name, name)
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        for dt, mode in itertools.product(args.dtypes.split(","), args.compile.split(",")):
            dtype, compiled = getattr(torch, dt), mode == "on"
            key = f"{name}/{dt}" + ("/compiled" if compiled else "")
            per_bs = {}
            sizes = args.gpu_batch_sizes if cuda else args.batch_sizes
            for bs in (int(b) for b in sizes.split(",")):
                raw = [torch.from_numpy(np.stack([pool[i % len(pool)][k] for i in range(bs)]))[:, None].to(dev)
                       for k in range(3)]
                batch = [t.to(dtype) for t in raw]
                secs = {}
                if per_metric:
                    fresh_kernels(compiled)
                    with M.compiled_kernels(compiled):
                        # each metric alone: the functional call, input checks included
                        secs = {m: time_torch(lambda *imgs, m=m: M.get_metric(m).factory(*imgs, data_range=255.0),
                                              batch, args.repeats, sync) for m in names}

                def suite(metrics, threads=None, raw=raw, dtype=dtype, dev=dev, compiled=compiled):
                    # what fusebench run does per batch: one evaluate() call on 8-bit images
                    return lambda: M.evaluate(*raw, metrics=metrics, dtype=dtype, device=dev, compile=compiled,
                                              threads=threads)

                default = [m for m in M.DEFAULT_METRICS if m in names]
                full_default = len(default) == len(M.DEFAULT_METRICS)
                calls = {"all": suite(names)}
                if full_default:
                    if default != names:
                        calls["default"] = suite(default)
                    if fixed_threads:
                        calls["default_fixed"] = suite(default, threads=args.threads)
                if reference and full_default:
                    calls["reference"] = reference_suite(default, pool)
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                threads_chosen = scoring_threads()  # what evaluate() chooses when this setting starts
                fresh_kernels(compiled)
                secs_suite, first = time_interleaved(calls, args.repeats, sync)
                secs_suite.setdefault("default", secs_suite["all"])
                r = {
                    "pairs_per_s": {m: bs / s for m, s in secs.items()},
                    "suite_threads": threads_chosen,
                    "suite_all_pairs_per_s": bs / secs_suite["all"],
                    "suite_default_pairs_per_s": bs / secs_suite["default"] if full_default else None,
                    "suite_all_first_call_s": first["all"],  # compiled: includes compiling (or loading) kernels
                }
                if cuda:
                    r["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
                if fixed_threads:
                    r["suite_default_fixed_threads_pairs_per_s"] = (
                        bs / secs_suite["default_fixed"] if full_default else None)
                    r["fixed_threads"] = args.threads
                if "reference" in secs_suite:  # timed in turn with the suites above: the same load
                    r["reference_default_pairs_per_s"] = 1 / secs_suite["reference"]
                per_bs[bs] = r
                print(f"{key} batch {bs}: suite(all) {r['suite_all_pairs_per_s']:.2f} pairs/s, default suite "
                      f"{r['suite_default_pairs_per_s'] or float('nan'):.2f} ({r['suite_threads']} threads)"
                      + (f", default suite with {args.threads} threads forced "
                         f"{r['suite_default_fixed_threads_pairs_per_s'] or float('nan'):.2f}"
                         if fixed_threads else "")
                      + (f", numpy reference default suite {r['reference_default_pairs_per_s']:.3f}"
                         if "reference_default_pairs_per_s" in r else ""), flush=True)
            out[key] = per_bs
    return out


def reference_suite(names: list[str], pool: list):
    """The numpy reference's suite of ``names`` on one image, as one callable."""
    import numpy_reference as ref

    f, a, b = (x.astype(np.float64) for x in pool[0])

    def run() -> None:
        for m in names:
            ref.FUNCTIONS[m](f, a, b, **({"loops": False} if m == "Nabf" else {}))

    return run


def measure_reference(args: argparse.Namespace, names: list[str], pool: list) -> dict:
    """pairs/s of the per-image numpy/scipy reference (tests/metrics/numpy_reference.py), one image."""
    import numpy_reference as ref

    import fusebench.metrics as M

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
    out = {
        "pairs_per_s": {m: 1 / s for m, s in secs.items()},
        "suite_all_pairs_per_s": 1 / sum(secs.values()),
        "suite_default_pairs_per_s": 1 / sum(secs[m] for m in M.DEFAULT_METRICS if m in secs)
        if all(m in secs for m in M.DEFAULT_METRICS) else None,
    }
    print(f"numpy reference: suite(all) {out['suite_all_pairs_per_s']:.3f} pairs/s, default suite "
          f"{out['suite_default_pairs_per_s'] or float('nan'):.3f}", flush=True)
    return out


def speedups(torch_results: dict, reference: dict, names: list[str]) -> dict:
    """fusebench pairs/s over the reference's, per setting and batch size."""
    out = {}
    for key, per_bs in torch_results.items():
        for bs, r in per_bs.items():
            entry = {"suite_all": r["suite_all_pairs_per_s"] / reference["suite_all_pairs_per_s"]}
            if r["suite_default_pairs_per_s"] and reference["suite_default_pairs_per_s"]:
                entry["suite_default"] = r["suite_default_pairs_per_s"] / reference["suite_default_pairs_per_s"]
            if r.get("suite_default_fixed_threads_pairs_per_s") and reference["suite_default_pairs_per_s"]:
                entry["suite_default_fixed_threads"] = (r["suite_default_fixed_threads_pairs_per_s"]
                                                        / reference["suite_default_pairs_per_s"])
            if r.get("reference_default_pairs_per_s"):  # against the reference timed in turn with the suites
                ref_d = r["reference_default_pairs_per_s"]
                entry["suite_default_vs_interleaved_reference"] = r["suite_default_pairs_per_s"] / ref_d
                if r.get("suite_default_fixed_threads_pairs_per_s"):
                    entry["suite_default_fixed_threads_vs_interleaved_reference"] = (
                        r["suite_default_fixed_threads_pairs_per_s"] / ref_d)
            if r["pairs_per_s"]:
                entry["per_metric"] = {m: r["pairs_per_s"][m] / reference["pairs_per_s"][m] for m in names}
            out[f"{key}/batch{bs}"] = entry
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    # Spinning OpenMP workers collapse on a shared, oversubscribed CPU (20x slower with 2 threads here).
    if args.omp_wait_policy == "default":
        if "torch" not in sys.modules:
            os.environ.pop("OMP_WAIT_POLICY", None)
    else:
        os.environ.setdefault("OMP_WAIT_POLICY", args.omp_wait_policy)
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
        skipped = [m for m in names if M.get_metric(m).min_size > min(w, h)]  # e.g. MS_SSIM below 176x176
        names_all, names = names, [m for m in names if m not in skipped]
        print(f"{w}x{h}, idle (no competing load started)", flush=True)
        entry: dict = {"size": f"{w}x{h}", "skipped_metrics": skipped, "load_average_before": os.getloadavg(),
                       "fusebench": measure_torch(args, names, pool, devices, per_metric=not args.suites_only,
                                                  reference=not args.no_reference),
                       "reference": {}}
        if not args.no_reference:
            entry["reference"] = measure_reference(args, names, pool)
            entry["speedup_vs_reference"] = speedups(entry["fusebench"], entry["reference"], names)
        if args.busy:
            print(f"{w}x{h}, {args.busy} competing CPU-bound process(es) running", flush=True)
            busy: dict = {"competing_processes": args.busy}
            with CompetingLoad(args.busy, args.busy_max_s):
                busy["fusebench"] = measure_torch(args, names, pool, devices, per_metric=False,
                                                  fixed_threads=args.busy_fixed, reference=not args.no_reference)
                if not args.no_reference:
                    busy["reference"] = measure_reference(args, names, pool)
                busy["load_average_at_end"] = os.getloadavg()
            if not args.no_reference:
                busy["speedup_vs_reference"] = speedups(busy["fusebench"], busy["reference"], names)
            busy["slowdown_vs_idle"] = {
                f"{key}/batch{bs}": {
                    s: entry["fusebench"][key][bs][s] / r[s]
                    for s in ("suite_all_pairs_per_s", "suite_default_pairs_per_s") if r[s]
                } for key, per_bs in busy["fusebench"].items() for bs, r in per_bs.items()
            }
            if not args.no_reference:
                busy["slowdown_vs_idle"]["reference"] = {
                    s: entry["reference"][s] / busy["reference"][s]
                    for s in ("suite_all_pairs_per_s", "suite_default_pairs_per_s") if busy["reference"][s]
                }
            entry["busy"] = busy
        result["results"].append(entry)
        names = names_all
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
