"""Parameters, multiply-accumulates per image and CPU latency of `TwinGAN.translate`.

Prints one table for the original configuration (base 1024, max 256) and the small CPU one, at 64,
128 and 256 px, batch 1 and 8, and the achieved GFLOP/s against this machine's conv peak, measured
in the same run with one large 3x3 convolution. Then the anime upscaler's latency on one face,
64 -> 128 and 128 -> 256 px (p50 of 50 runs; the shipped checkpoint, else a random one of the same
architecture).

    python -m benchmarks.model_cost [--threads 2] [--repeats 5] [--nchw] [--only twingan|upscaler]

Channels-last (NHWC) is the default: oneDNN's convolutions and the per-pixel reductions of pixel
norm are faster in it on this CPU.
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial

import torch
from torch import nn

from benchmarks.timing import timed
from twingan import TwinGAN, TwinGANConfig
from twingan.pipeline import DEFAULT_UPSCALER
from twingan.upscaler import AnimeUpscaler, UpscalerConfig

CONFIGS = {
    "original": dict(base_channels=1024, max_channels=256),
    "small": dict(base_channels=256, max_channels=64),  # train/configs/cpu-small.json
}


def count_macs(model: TwinGAN, resolution: int) -> int:
    """Multiply-accumulates of convs and linears for one image, counted with forward hooks."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output[0].numel() * k
        else:
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.translate(torch.rand(1, 3, resolution, resolution), tags=torch.zeros(1, model.config.tag_dim))
    for h in handles:
        h.remove()
    return total


def seconds(fn, repeats: int) -> float:
    """Median wall time of fn() after one warm-up call."""
    return statistics.median(timed(fn, repeats))


def conv_peak_gflops(repeats: int) -> float:
    """GFLOP/s of a large 3x3 conv (256 -> 256 channels, 64x64, batch 8): the practical peak."""
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).eval()
    x = torch.rand(8, 256, 64, 64)
    with torch.no_grad():
        t = seconds(lambda: conv(x), repeats)
    return 2 * 8 * 64 * 64 * 256 * 256 * 9 / t / 1e9


def upscaler_latency(runs: int = 50) -> None:
    """p50 / p90 ms of the anime upscaler on one face at the two sizes the app runs it."""
    if DEFAULT_UPSCALER.is_dir():
        from twingan.checkpoint import load_pretrained

        model, origin = load_pretrained(AnimeUpscaler, DEFAULT_UPSCALER), str(DEFAULT_UPSCALER.name)
    else:
        model, origin = AnimeUpscaler(UpscalerConfig()).eval(), "random, default config"
    params = sum(p.numel() for p in model.parameters())
    print(f"\nanime upscaler ({origin}, {params:,} parameters), one face:")
    for side in (64, 128):
        x = torch.rand(1, 3, side, side)
        with torch.inference_mode():
            ms = sorted(t * 1e3 for t in timed(partial(model.upscale, x), runs, warmup=3))
        p90 = ms[round(0.9 * (runs - 1))]
        print(f"  {side:>3} -> {2 * side:<3}  p50 {statistics.median(ms):6.1f} ms   p90 {p90:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nchw", action="store_true", help="run in the NCHW layout instead of channels-last")
    parser.add_argument("--only", choices=("twingan", "upscaler"), help="time only this model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.only == "upscaler":
        return upscaler_latency()
    peak = conv_peak_gflops(args.repeats)
    print(f"conv peak (3x3, 256->256, 64x64, batch 8): {peak:.0f} GFLOP/s on {args.threads} threads\n")
    print(f"{'config':9} {'res':>4} {'params M':>9} {'GMAC/img':>9} {'batch':>5} {'ms/batch':>9} "
          f"{'img/s':>7} {'GFLOP/s':>8} {'% peak':>7}")
    for name, channels in CONFIGS.items():
        for res in (64, 128, 256):
            model = TwinGAN(TwinGANConfig(resolution=res, **channels)).eval()
            memory_format = torch.contiguous_format if args.nchw else torch.channels_last
            model = model.to(memory_format=memory_format)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            macs = count_macs(model, res)
            for batch in (1, 8):
                x = torch.rand(batch, 3, res, res).to(memory_format=memory_format)
                with torch.inference_mode():
                    t = seconds(partial(model.translate, x), args.repeats)
                gflops = 2 * macs * batch / t / 1e9
                print(f"{name:9} {res:>4} {params:>9.2f} {macs / 1e9:>9.2f} {batch:>5} {t * 1e3:>9.1f} "
                      f"{batch / t:>7.1f} {gflops:>8.0f} {100 * gflops / peak:>6.0f}%")
    if args.only is None:
        upscaler_latency()


if __name__ == "__main__":
    main()
