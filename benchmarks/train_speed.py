"""Training step time, old loop vs input pipeline, side by side in one JSON file.

Each configuration runs the real trainer (``train_guided`` for MaeFuse variants, ``train_daefuse`` for
DAE-Fuse) for ``--warmup + --steps`` steps on the training pairs of ``--dataset`` and times the steps after
the warm-up (one timestamp per step; on CUDA the device is synchronised at the last step, so queued work is
counted). ``--pipeline off`` is the pre-pipeline loop, still selectable (``pipeline=false``): every pair
decoded to float32 up front, batches built in the main thread, losses read from the device every step;
``on`` decodes lazily in DataLoader workers and reads losses every ``log_every`` steps; ``both`` runs the two
in one process. Both give the same batches. Figures: seconds per step, pairs/s (training samples per
second: crops, warped pairs or patches) and, for MaeFuse, encoder tokens/s (2 images per pair).
``setup_s`` is the time from the call to the first step (the up-front decode of the old loop).

    python benchmarks/train_speed.py --method maefuse-test --batch-size 8 --patch-size 64 --device cpu \\
        --steps 20 --out /tmp/train_speed.json
    python benchmarks/train_speed.py --method daefuse --batch-size 8 --patch-size 64 --device cpu --out d.json
    python benchmarks/train_speed.py --method maefuse --batch-size 32 --warp-size 640 --precision bf16 \\
        --device cuda --set backbone_weights=mae_pretrain_vit_large --out gpu.json   # ViT-L, paper warp
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from fusebench.training import LossLog


def _run(method: str, pairs: Any, device: torch.device, overrides: dict[str, Any], total: int,
         warmup: int) -> dict[str, float]:
    """Train ``total`` steps; seconds per step after ``warmup``, and the setup time."""
    stamps: list[float] = []
    real_keep = LossLog.keep

    def keep(self: LossLog, losses: dict[str, torch.Tensor]) -> None:
        real_keep(self, losses)
        if device.type == "cuda" and len(stamps) in (warmup - 1, total - 1):
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    LossLog.keep = keep  # type: ignore[method-assign]
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if method.startswith("daefuse"):
                from fusebench.methods.daefuse.train import train_daefuse

                train_daefuse(pairs, Path(tmp), device=device, overrides=overrides, progress=False, method=method)
            else:
                from fusebench.methods.maefuse.train import train_guided

                train_guided(method, pairs, Path(tmp), device=device, overrides=overrides, progress=False)
    finally:
        LossLog.keep = real_keep  # type: ignore[method-assign]
    if len(stamps) != total:
        raise RuntimeError(f"expected {total} steps, timed {len(stamps)}")
    step_s = (stamps[-1] - stamps[warmup - 1]) / (total - warmup)
    return {"step_s": step_s, "setup_s": stamps[0] - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="maefuse-test", help="maefuse-test, maefuse-compact, maefuse, daefuse, ...")
    parser.add_argument("--dataset", default="msrs.train", help="a dataset name (FUSEBENCH_DATA) or a folder")
    parser.add_argument("--pairs", type=int, default=None, help="use only the first N pairs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=64, help="crop size (ignored with --warp-size)")
    parser.add_argument("--warp-size", type=int, default=None, help="MaeFuse: whole pairs warped (paper recipe)")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"), help="bf16 applies on CUDA")
    parser.add_argument("--tf32", choices=("on", "off"), default="on", help="CUDA: TF32 matmuls (the trainers' default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers of the pipeline (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: usable cores)")
    parser.add_argument("--pipeline", choices=("off", "on", "both"), default="both")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="extra training setting (JSON value), e.g. backbone_weights=..., feature_cache=memory")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from fusebench.datasets import load_dataset
    from fusebench.datasets.base import PairDataset
    from fusebench.threads import configure_threads

    threads = configure_threads(args.threads)
    device = torch.device(args.device)
    pairs = load_dataset(args.dataset)
    if args.pairs:
        pairs = PairDataset(pairs.name, pairs.pairs[: args.pairs], split=pairs.split, root=pairs.root)
    total = args.warmup + args.steps
    extra = {}
    for item in args.settings:
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    dae = args.method.startswith("daefuse")
    if dae:
        base: dict[str, Any] = {"phase1_steps": total, "phase2_steps": 0, "batch_size": args.batch_size,
                                "patch_size": args.patch_size, "precision": args.precision,
                                "checkpoint_every": 10**9}
        side, what = args.patch_size, "Phase I steps"
    else:
        base = {"recipe": "fusebench", "cfm_align_steps": 0, "cfm_fusion_steps": 0, "mfm_align_steps": 0,
                "mfm_fusion_steps": total, "batch_size": args.batch_size, "patch_size": args.patch_size,
                "precision": args.precision, "checkpoint_every": 10**9, "patches_per_image": 4}
        if args.warp_size:
            base.update(warp_size=args.warp_size, flip=False, max_pos_offset=0)
        side, what = args.warp_size or args.patch_size, "mfm_fusion steps (fusion layer + frozen decoder)"
    if device.type == "cuda" and args.tf32 == "off":
        from fusebench.training import precision as P

        P.setup_device = lambda device: None  # type: ignore[assignment]
    modes = ["off", "on"] if args.pipeline == "both" else [args.pipeline]
    results = []
    for mode in modes:
        overrides = {**base, **extra, "pipeline": mode == "on", "log_every": 10**9 if mode == "on" else 1}
        if mode == "on":
            overrides["workers"] = args.workers
        if dae:
            from fusebench.methods.daefuse.train import train_daefuse  # noqa: F401 (import outside the timing)
        timing = _run(args.method, pairs, device, overrides, total, args.warmup)
        row = {"pipeline": mode, **{k: round(v, 5) for k, v in timing.items()},
               "pairs_per_s": round(args.batch_size / timing["step_s"], 3)}
        if not dae:
            row["tokens_per_s"] = round(args.batch_size * 2 * (side // 16) ** 2 / timing["step_s"], 1)
        results.append(row)
        print(json.dumps(row), file=sys.stderr)
    report = {
        "what": f"{args.method}: {what}, batch {args.batch_size}, {side}x{side} px, precision {args.precision}",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "threads": threads, "dataset": pairs.key, "n_pairs": len(pairs),
        "steps_timed": args.steps, "warmup": args.warmup, "settings": extra, "results": results,
    }
    if len(results) == 2:
        report["speedup_on_vs_off"] = round(results[0]["step_s"] / results[1]["step_s"], 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
