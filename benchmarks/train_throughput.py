"""Training-step throughput: images/s and achieved GFLOP/s against the conv peak measured in the same run.

`python benchmarks/train_throughput.py [--configs cpu-small paper-256] [--threads 1] [--steps 5]`

Each shipped config is timed at its progressive stages (paper-256: its first stages only, the later
ones take minutes per step on a CPU) on synthetic images, so no data is needed. FLOPs of one step
(forward and backward; the lazy gradient penalty is timed but not counted) are counted with torch.utils.flop_counter. The "conv
peak" is a large 3x3 conv forward+backward timed right before, with the same threads and device:
the fraction says how much of the machine the small GAN convs actually use. On CUDA, when present,
everything runs there too (bf16 autocast as in training).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.config import load_config
from train.device.device import step_flops, synthetic
from train.engine import Trainer


def conv_peak(device: torch.device, seconds: float = 2.0) -> float:
    """GFLOP/s of a 128->128 3x3 conv forward+backward on (32, 128, 32, 32), fp32 (bf16 on CUDA)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    b, c, r = (256, 256, 64) if device.type == "cuda" else (32, 128, 32)
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).to(device, dtype)
    x = torch.randn(b, c, r, r, device=device, dtype=dtype, requires_grad=True)
    flops = 3 * 2 * 9 * c * c * r * r * b  # forward + grad input + grad weight

    def once():
        conv(x).sum().backward()

    for _ in range(2):
        once()
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        once()
        n += 1
    _sync(device)
    return flops * n / (time.perf_counter() - t0) / 1e9


def bench_config(name: str, stages: list[int] | None, steps: int, device: torch.device, peak: float,
                 overrides: list[str]) -> list[dict]:
    cfg = load_config(name, ["w_tagger=0", "threads=0", *overrides])  # the frozen tagger is timed separately
    stages = stages or cfg.resolutions
    res_max = max(stages)
    vocab = cfg.model.vocab
    n = max(4 * cfg.batch_size, 64)
    trainer = Trainer(cfg, synthetic(n, res_max, vocab, False, 0), synthetic(n, res_max, vocab, True, 1),
                      device=device)
    rows = []
    for res in stages:
        # Pin the schedule inside the stable part of this stage (steps advance images_seen).
        start = 0
        for i, r in enumerate(cfg.resolutions):
            if r == res:
                break
            start += cfg.stage_images[min(i, len(cfg.stage_images) - 1)]
        pinned = start + 10**9 if res == cfg.resolutions[-1] else \
            start + cfg.stage_images[min(cfg.resolutions.index(res), len(cfg.stage_images) - 1)] - 10**4
        batch = cfg.batch_for(res)
        trainer.images_seen = pinned
        if trainer.stage != (res, 1.0):
            raise RuntimeError(f"could not pin {name} to the stable {res} px stage (got {trainer.stage})")
        trainer.step()  # warm-up (allocations, cudnn autotune)
        trainer.images_seen = pinned
        flops = step_flops(trainer)
        n_steps = -(-steps // cfg.gp_every) * cfg.gp_every
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n_steps):
            trainer.images_seen = pinned
            trainer.step()
        _sync(device)
        dt = (time.perf_counter() - t0) / n_steps
        gflops = flops / dt / 1e9
        rows.append({"config": name, "resolution": res, "batch": batch, "images_per_s": round(batch / dt, 2),
                     "step_s": round(dt, 3), "gflop_per_image": round(flops / batch / 1e9, 2),
                     "gflop_per_s": round(gflops, 1), "fraction_of_conv_peak": round(gflops / peak, 3),
                     "device": str(device), "threads": torch.get_num_threads()})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["cpu-small", "paper-256"])
    p.add_argument("--paper-stages", nargs="+", type=int, default=[8, 16, 32], help="paper-256 stages timed on a CPU")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    peak = conv_peak(device)
    print(json.dumps({"conv_peak_gflop_per_s": round(peak, 1), "device": str(device), "threads": args.threads}),
          flush=True)
    rows = []
    for name in args.configs:
        stages = args.paper_stages if name == "paper-256" and device.type == "cpu" else None
        rows += bench_config(name, stages, args.steps, device, peak, [])
    print("\n| config | px | batch | images/s | GFLOP/image | GFLOP/s | of conv peak |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['resolution']} | {r['batch']} | {r['images_per_s']} | {r['gflop_per_image']} | "
              f"{r['gflop_per_s']} | {100 * r['fraction_of_conv_peak']:.0f}% |")
    print(f"conv peak (same run): {peak:.1f} GFLOP/s on {device}, {args.threads} thread(s)")
    if args.out:
        Path(args.out).write_text(json.dumps({"conv_peak_gflop_per_s": peak, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
