"""MaeFuse speed and memory: fusebench's batched inference and training stages vs. the official inference loop.

Writes one JSON file. Measured, in one run on one device:

* ``inference``: pairs/s, peak GPU memory and achieved TFLOP/s of :meth:`MaeFuse.fuse` (both modalities in
  one encoder batch, token attention through SDPA, ``torch.inference_mode``) at ``--size`` for each
  precision (``fp32``: strict fp32 matmuls; ``tf32``: fp32 with TF32 tensor-core matmuls and convolutions;
  ``bf16``: bf16 autocast), each SDPA backend of ``--attention`` (``auto``: torch's choice, flash attention
  on CUDA where it applies; ``flash``, ``efficient``, ``math``: forced; a backend that cannot run is recorded
  as an error) and each batch size, with inputs already on the device; ``best`` is the fastest batch per
  precision and backend.
* ``bf16_vs_fp32_psnr_db`` / ``tf32_vs_fp32_psnr_db``: PSNR of those outputs against fp32 (same weights and pairs).
* ``reference_official``: a re-creation of the released ``test_fusion.py`` loop (reference notes 1.4, 1.6):
  one pair at a time, fp32, host-side resize to 640x640, two separate encoder calls, the official
  ``cross_fusion`` (``nn.MultiheadAttention`` without ``batch_first``), decoder, de-normalise + truncate on the
  host, RGB->grey, bicubic resize back; no ``no_grad`` around fusion and decoder, as in the original.
* ``training``: optimizer steps/s of each guided-training stage (bf16 autocast on CUDA) at ``--train-size``.

Random weights are fine for speed (``random_init=True``). Example::

    python benchmarks/maefuse_speed.py --arch large --size 640x640 --batch-sizes 1,8,16,32,64 --out speed.json
    python benchmarks/maefuse_speed.py --arch large --attention auto,flash,math --precisions bf16 --out a.json
    python benchmarks/maefuse_speed.py --arch test --size 64x48 --batch-sizes 1,2 --device cpu --warp 64 \
        --train-size 32 --min-time 0.1 --out /tmp/s.json      # smoke test on a CPU
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusebench.methods.mae import MAE_ARCHS
from fusebench.methods.mae.preprocess import IMAGENET_MEAN, IMAGENET_STD
from fusebench.methods.maefuse.model import MaeFuse, _build
from fusebench.methods.maefuse.train import STAGES, GuidedConfig, set_trainable, stage_parameters, stage_step
from fusebench.training import autocast

VARIANT = {"large": "maefuse", "base": "maefuse-base", "compact": "maefuse-compact", "test": "maefuse-test"}


def block_flops(tokens: int, dim: int, mlp_ratio: float = 4.0) -> float:
    """Forward FLOPs of one pre-norm ViT block (2 per multiply-add): projections + MLP + attention."""
    return 2 * tokens * dim * dim * (4 + 2 * mlp_ratio) + 4 * tokens * tokens * dim


def flops_per_pair(arch: str, height: int, width: int) -> float:
    """Forward FLOPs of one fused pair: two encoder passes, the fusion layer, the decoder."""
    a = MAE_ARCHS[arch]
    p, d, dd = a.patch_size, a.embed_dim, a.decoder_embed_dim
    n = math.ceil(height / p) * math.ceil(width / p)
    encoder = 2 * n * 3 * p * p * d + a.depth * block_flops(n, d, a.mlp_ratio)
    attn = lambda q, k: 2 * d * d * (2 * q + 2 * k) + 4 * q * k * d
    fusion = 2 * attn(n, n) + attn(n, 2 * n) + 2 * 2 * n * d * d * a.mlp_ratio
    decoder = 2 * n * d * dd + a.decoder_depth * block_flops(n, dd, a.mlp_ratio) + 2 * n * dd * p * p * 3
    return 2 * encoder + fusion + decoder


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, min_time: float, warmup: int = 2) -> tuple[float, int]:
    """(seconds per call, calls): warm up, then repeat until ``min_time`` has passed."""
    for _ in range(warmup):
        fn()
    sync(device)
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        sync(device)
        spent = time.perf_counter() - start
        if spent >= min_time and calls >= 3:
            return spent / calls, calls


def peak_memory_mib(device: torch.device, fn: Callable[[], Any]) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def inputs(batch: int, height: int, width: int, device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Smooth random pairs in [0, 1] (structure at several scales, so the decoded outputs are not flat)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch * 2, 1, max(2, height // 16), max(2, width // 16), generator=g)
    img = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    img = (img + 0.1 * torch.rand(img.shape, generator=g)).clamp(0, 1)
    return img[:batch].to(device), img[batch:].to(device)


def psnr(a: Tensor, b: Tensor) -> float:
    mse = F.mse_loss(a.float(), b.float()).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


class OfficialCrossFusion(nn.Module):
    """The released ``fusion.cross_fusion``: ``nn.MultiheadAttention`` fed batch-first tensors without
    ``batch_first=True`` (so it attends over the batch), plain sums, FFN with post-LN, in-place pos-embed add."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.cross_model = nn.MultiheadAttention(dim, heads)
        self.merge_model = nn.MultiheadAttention(dim, heads)
        self.fc1, self.fc2 = nn.Linear(dim, int(dim * mlp_ratio)), nn.Linear(int(dim * mlp_ratio), dim)
        self.gelu, self.ln = nn.GELU(), nn.LayerNorm(dim)

    def forward(self, vi: Tensor, ir: Tensor, pos: Tensor) -> Tensor:
        vi += pos
        ir += pos
        pattern = self.cross_model(ir, vi, vi)[0] + self.cross_model(vi, ir, ir)[0]
        fusion = self.merge_model(pattern, vi, vi)[0] + self.merge_model(pattern, ir, ir)[0]
        return self.ln(fusion + self.fc2(self.gelu(self.fc1(fusion))))


def official_loop(model: MaeFuse, device: torch.device, warp: int) -> Callable[[Tensor, Tensor], Tensor]:
    """One pair per call, as ``test_fusion.py``: host uint8 images in, host uint8 grey image out."""
    bb = model.backbone
    spec = MAE_ARCHS[model.cfg["arch"]]
    fusion = OfficialCrossFusion(bb.embed_dim, spec.num_heads, spec.mlp_ratio).to(device)
    fusion.load_state_dict(model.fusion.state_dict())  # same parameter names
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    grid = (warp // bb.patch_size, warp // bb.patch_size)

    def run(ir_u8: Tensor, vi_u8: Tensor) -> Tensor:  # (H, W) uint8 on the host
        size = tuple(ir_u8.shape)
        x = [F.interpolate(t.float()[None, None].expand(1, 3, -1, -1), size=(warp, warp), mode="bilinear",
                           align_corners=False) for t in (vi_u8, ir_u8)]
        vi, ir = (((t / 255 - mean) / std).to(device) for t in x)
        with torch.no_grad():
            vi_lat, ir_lat = bb.encode(vi), bb.encode(ir)
        pos = bb.pos_embed(bb.embed_dim, grid, device)
        pred = bb.decode(fusion(vi_lat, ir_lat, pos), grid).detach().cpu()
        rgb = ((pred * std + mean) * 255).clamp(0, 255).int().float()
        grey = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).round()
        out = F.interpolate(grey[None], size=size, mode="bicubic", align_corners=False)
        return out.clamp(0, 255).to(torch.uint8)[0, 0]

    return run


def sdpa_context(backend: str) -> Any:
    """A context manager forcing one SDPA backend (``auto``: none forced)."""
    import contextlib

    if backend == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kinds = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
             "math": SDPBackend.MATH, "cudnn": SDPBackend.CUDNN_ATTENTION}
    return sdpa_kernel([kinds[backend]])


def set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def bench_inference(args: argparse.Namespace, device: torch.device, height: int, width: int) -> dict[str, Any]:
    variant = VARIANT[args.arch]
    flops = flops_per_pair(args.arch, height, width)
    rows, outputs = [], {}
    model = _build(variant).to(device).eval()  # one set of random weights for every precision
    if args.compile:
        for block in [*model.backbone.blocks, *model.backbone.decoder_blocks]:
            block.compile()  # fuses norm/GELU/residual kernels; attention stays SDPA (flash on CUDA)
    for precision in args.precisions:
        model.precision = "bf16" if precision == "bf16" else "fp32"
        set_tf32(precision == "tf32")
        for backend in args.attention:
            for batch in args.batch_sizes:
                ir, vi = inputs(batch, height, width, device)
                row: dict[str, Any] = {"precision": precision, "attention": backend, "batch": batch}
                try:
                    with torch.inference_mode(), sdpa_context(backend):
                        fn = partial(model.fuse, ir, vi)
                        per_call, calls = timed(fn, device, args.min_time)
                        memory = peak_memory_mib(device, fn)
                except torch.OutOfMemoryError:
                    rows.append({**row, "error": "out of memory"})
                    del ir, vi
                    torch.cuda.empty_cache()
                    break
                except RuntimeError as exc:  # a forced backend that does not apply here (e.g. flash on a CPU)
                    rows.append({**row, "error": str(exc).splitlines()[0][:300]})
                    break
                rows.append({**row, "pairs_per_s": batch / per_call, "ms_per_batch": 1e3 * per_call,
                             "calls": calls, "peak_memory_mib": memory,
                             "tflops_per_s": flops * batch / per_call / 1e12})
            ir, vi = inputs(args.batch_sizes[0], height, width, device, seed=1)
            if backend == args.attention[0]:
                with torch.inference_mode():
                    outputs[precision] = model.fuse(ir, vi).float().cpu()
    set_tf32(False)
    best = {}
    for precision in args.precisions:
        for backend in args.attention:
            ok = [r for r in rows if r["precision"] == precision and r["attention"] == backend and "pairs_per_s" in r]
            if ok:
                best[f"{precision}/{backend}"] = max(ok, key=lambda r: r["pairs_per_s"])
    out: dict[str, Any] = {"gflop_per_pair": flops / 1e9, "runs": rows, "best": best,
                           "autocast_active": device.type == "cuda"}  # bf16 autocast is CUDA-only
    if device.type == "cuda":
        out["sdpa_enabled"] = {"flash": torch.backends.cuda.flash_sdp_enabled(),
                               "efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                               "math": torch.backends.cuda.math_sdp_enabled()}
    for other in ("bf16", "tf32"):
        if other in outputs and "fp32" in outputs:
            out[f"{other}_vs_fp32_psnr_db"] = psnr(outputs[other], outputs["fp32"])
    return out


def bench_official(args: argparse.Namespace, device: torch.device, height: int, width: int) -> dict[str, Any]:
    model = _build(VARIANT[args.arch]).to(device).eval()
    run = official_loop(model, device, args.warp)
    ir, vi = inputs(1, height, width, torch.device("cpu"))
    ir_u8, vi_u8 = ((t[0, 0] * 255).round().to(torch.uint8) for t in (ir, vi))
    per_call, calls = timed(lambda: run(ir_u8, vi_u8), device, args.min_time)
    memory = peak_memory_mib(device, lambda: run(ir_u8, vi_u8))
    return {"precision": "fp32", "batch": 1, "warp": args.warp, "pairs_per_s": 1 / per_call, "calls": calls,
            "ms_per_pair": 1e3 * per_call, "peak_memory_mib": memory,
            "tflops_per_s": flops_per_pair(args.arch, args.warp, args.warp) / per_call / 1e12}


def train_step(model: MaeFuse, stage: str, ir: Tensor, vi: Tensor, cfg: GuidedConfig,
               optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """One optimizer step of ``stage``, as the trainer does it."""
    with autocast(device, cfg.precision):
        loss = stage_step(model, stage, ir, vi, cfg)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def bench_training(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    cfg = GuidedConfig.from_overrides({}, {"precision": args.train_precision,
                                           "grad_checkpointing": args.grad_checkpointing})
    model = _build(VARIANT[args.arch], precision=args.train_precision).to(device)
    model.backbone.grad_checkpointing = cfg.grad_checkpointing
    ir, vi = inputs(args.train_batch, args.train_size, args.train_size, device, seed=2)
    out: dict[str, Any] = {"batch": args.train_batch, "size": args.train_size, "precision": args.train_precision,
                           "grad_checkpointing": args.grad_checkpointing, "stages": {}}
    for stage in STAGES:
        params = stage_parameters(model, stage)
        set_trainable(model, params)
        step = partial(train_step, model, stage, ir, vi, cfg, torch.optim.AdamW(params, lr=1e-4), device)
        try:
            per_step, calls = timed(step, device, args.min_time, warmup=1)
            memory = peak_memory_mib(device, step)
            out["stages"][stage] = {"steps_per_s": 1 / per_step, "pairs_per_s": args.train_batch / per_step,
                                    "steps": calls, "peak_memory_mib": memory}
        except torch.OutOfMemoryError:
            out["stages"][stage] = {"error": "out of memory"}
            torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="large", choices=sorted(VARIANT))
    parser.add_argument("--size", default="640x640", help="WIDTHxHEIGHT of the inference pairs")
    parser.add_argument("--batch-sizes", default="1,8,16,32,64", help="comma-separated inference batch sizes")
    parser.add_argument("--precisions", default="fp32,tf32,bf16", help="fp32, tf32 (CUDA matmuls), bf16")
    parser.add_argument("--attention", default="auto",
                        help="SDPA backends, comma-separated: auto (torch's choice), flash, efficient, math, cudnn")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warp", type=int, default=640, help="the official loop's square resize")
    parser.add_argument("--train-size", type=int, default=224, help="square training crop")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the ViT blocks for inference")
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds to time each configuration")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: inference,official,training")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.precisions = args.precisions.split(",")
    args.attention = args.attention.split(",")
    unknown = set(args.precisions) - {"fp32", "tf32", "bf16"}
    if unknown or set(args.attention) - {"auto", "flash", "efficient", "math", "cudnn"}:
        parser.error(f"unknown precision or attention backend: {sorted(unknown) or args.attention}")
    width, height = (int(v) for v in args.size.lower().split("x"))
    device = torch.device(args.device)
    skip = set(filter(None, args.skip.split(",")))
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    result: dict[str, Any] = {
        "benchmark": "maefuse_speed", "arch": args.arch, "size": [width, height], "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "args": {k: str(v) for k, v in vars(args).items()},
    }
    if "inference" not in skip:
        result["inference"] = bench_inference(args, device, height, width)
    if "official" not in skip:
        result["reference_official"] = bench_official(args, device, height, width)
    if "training" not in skip:
        result["training"] = bench_training(args, device)
    if "inference" in result and "reference_official" in result and result["inference"]["best"]:
        top = max(r["pairs_per_s"] for r in result["inference"]["best"].values())
        result["speedup_vs_official"] = top / result["reference_official"]["pairs_per_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
