"""The Python side of `scripts/device_train.sh`: what one device call measures and brings back.

    python -m train.device.device env --json RUN/peak.json --pack PACK  # environment, bf16 matmul peak, pack check
    python -m train.device.device collect RUN OUT                       # export, grid, state parts, FLOPs, peak fraction
    python -m train.device.device latency OUT --pack PACK               # the app's inference path on face crops, per face
    python -m train.device.device profile RUN OUT                       # where a training step's time goes

Each step is its own process, so one that fails costs only its own output. Everything that comes
back from a device call must fit 8 files of at most 16 MiB (64 MiB in all): `collect` writes the EMA
export (config.json + fp16 model.safetensors), the sample grids (the last under two earlier ones, in
one PNG), `device.json` (the figures) and the training state split into parts, in the most exact
form that fits (see `compact_state`).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

MIB = 1 << 20
MAX_FILES, MAX_FILE, MAX_TOTAL = 8, 16 * MIB, 64 * MIB  # what a device call brings back
PART = MAX_FILE - 64 * 1024  # state part size, just under MAX_FILE (gpu-128's fp32 weights, 45.2 MiB, take 3)
LOG_RESERVE = 2 * MIB  # device.log keeps growing after collect
STATE_PREFIX = "state.pt."


# ---------------------------------------------------------------- measuring

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_tflops(device: torch.device, seconds: float = 2.0) -> float:
    """TFLOP/s of a square bf16 matmul (8192 on CUDA, 512 on a CPU), timed for about `seconds`."""
    n = 8192 if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            a @ b
        count += 10
        sync(device)
    return 2 * n**3 * count / (time.perf_counter() - t0) / 1e12


def synthetic(n: int, resolution: int, vocab, tagged: bool, seed: int):
    """Random uint8 images and tags: a DomainData that needs no files (for timing and FLOP counts)."""
    from train.data import DomainData

    g = torch.Generator().manual_seed(seed)
    tags = torch.zeros(n, vocab.dim)
    hair = torch.randint(len(vocab.hair), (n,), generator=g) if tagged else torch.full((n,), -1)
    eye = torch.randint(len(vocab.eye), (n,), generator=g) if tagged else torch.full((n,), -1)
    if tagged:
        tags[torch.arange(n), vocab.hair_slice.start + hair] = 1
        tags[torch.arange(n), vocab.eye_slice.start + eye] = 1
    images = torch.randint(0, 256, (n, 3, resolution, resolution), dtype=torch.uint8, generator=g)
    return DomainData(images, tags, hair, eye, torch.full((n,), tagged))


def step_flops(trainer) -> float:
    """FLOPs of one step without the gradient penalty (FlopCounterMode's module hooks cannot follow
    the penalty's autograd.grad), so GFLOP/s is a slight underestimate on penalty steps."""
    import dataclasses

    from torch.utils.flop_counter import FlopCounterMode

    cfg = trainer.cfg
    trainer.cfg = dataclasses.replace(cfg, gp="none")
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            trainer.step()
    finally:
        trainer.cfg = cfg
    return float(counter.get_total_flops())


def flops_per_image(cfg, resolution: int, device: torch.device) -> float:
    """FLOPs per training image of the stage at `resolution` (faded in), on random weights and data."""
    import dataclasses

    from train.engine import Trainer

    # An image-count schedule that starts at `resolution`: its first stage is that one, fully faded in.
    cfg = dataclasses.replace(cfg, stage_fractions=(), start_resolution=resolution, stage_images=(10**9,))
    n = 2 * cfg.batch_for(resolution)
    vocab, full = cfg.model.vocab, cfg.model.resolution
    trainer = Trainer(cfg, synthetic(n, full, vocab, False, 0), synthetic(n, full, vocab, True, 1), device=device)
    trainer.step()  # warm-up
    assert trainer.stage == (resolution, 1.0), trainer.stage
    return step_flops(trainer) / cfg.batch_for(resolution)


def stack_images(paths: list[Path], target: Path, gap: int = 6) -> Path:
    """The images one above the other, each scaled (nearest) to the last one's width, on white."""
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in paths]
    width = images[-1].width
    images = [im if im.width == width else im.resize((width, round(im.height * width / im.width)), Image.NEAREST)
              for im in images]
    canvas = Image.new("RGB", (width, sum(im.height for im in images) + gap * (len(images) - 1)), "white")
    y = 0
    for im in images:
        canvas.paste(im, (0, y))
        y += im.height + gap
    canvas.save(target)
    return target


# ---------------------------------------------------------------- the training state

def compact_state(state: dict, max_bytes: int) -> tuple[dict | None, str, int]:
    """The most exact form of a Trainer state that serialises into `max_bytes`: (state, form, bytes).

    Forms, in order: "full" (exact resume), "moments-bf16" (Adam's moments in bf16; Adam casts them
    back), "weights" (no optimiser state: Adam restarts), "weights-bf16" (weights in bf16 too). When
    none fits: (None, "skipped", bytes of the smallest).
    """
    def size(s: dict) -> int:
        buf = io.BytesIO()
        torch.save(s, buf)
        return buf.tell()

    def cast(tree, dtype):
        if isinstance(tree, torch.Tensor):
            return tree.to(dtype) if tree.is_floating_point() and tree.dim() > 0 else tree
        if isinstance(tree, dict):
            return {k: cast(v, dtype) for k, v in tree.items()}
        return tree

    moments = {k: ({**v, "state": cast(v["state"], torch.bfloat16)} if k in ("opt_g", "opt_d") else v)
               for k, v in state.items()}
    weights = {k: v for k, v in state.items() if k not in ("opt_g", "opt_d")}
    nets = ("model", "ema", "d_target", "d_source")
    weights16 = {k: (cast(v, torch.bfloat16) if k in nets else v) for k, v in weights.items()}
    n = 0
    for form, s in (("full", state), ("moments-bf16", moments), ("weights", weights), ("weights-bf16", weights16)):
        n = size(s)
        if n <= max_bytes:
            return s, form, n
    return None, "skipped", n


def write_parts(state: dict, out: Path, prefix: str = STATE_PREFIX) -> list[Path]:
    """torch.save(state) split into PART-sized files prefix000, prefix001, ... (join them with cat)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    paths = []
    for i, start in enumerate(range(0, len(data), PART)):
        paths.append(out / f"{prefix}{i:03d}")
        paths[-1].write_bytes(data[start:start + PART])
    return paths


def join_parts(folder: Path, target: Path, prefix: str = STATE_PREFIX) -> Path:
    """Concatenate state parts back into one checkpoint file (what `--resume` reads)."""
    parts = sorted(folder.glob(f"{prefix}[0-9][0-9][0-9]"))
    if not parts:
        raise FileNotFoundError(f"no {prefix}NNN parts in {folder}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as fh:
        for p in parts:
            fh.write(p.read_bytes())
    return target


# ---------------------------------------------------------------- subcommands

def cmd_env(args) -> int:
    from PIL import features

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "cuda": torch.cuda.is_available(), "pillow_webp": features.check("webp")}
    try:
        import facenet_pytorch  # noqa: F401

        info["facenet"] = True
    except ImportError:
        info["facenet"] = False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sm=f"{p.major}.{p.minor}",
                    multiprocessors=p.multi_processor_count, cuda_version=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    info["matmul_bf16_tflops"] = round(matmul_peak_tflops(device, args.seconds), 4)
    info["matmul_device"] = str(device)
    print(json.dumps(info), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    if args.pack:
        from train.device.pack import PackError, describe_pack

        try:
            print(describe_pack(args.pack), flush=True)
        except PackError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            return 3
    return 0


def _last_summary(path: Path) -> dict:
    """The training summary: the last line of the training output that is a JSON object with "stages"."""
    if not path.is_file():
        return {}
    for line in reversed(path.read_text(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{") and '"stages"' in line:
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return {}


def _used(out: Path) -> tuple[int, int]:
    files = [p for p in out.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def cmd_collect(args) -> dict:
    from train.config import train_config_from_dict

    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"run": str(run)}
    env = json.loads((run / "peak.json").read_text()) if (run / "peak.json").is_file() else {}
    report["env"] = env
    summary = _last_summary(run / "train.out")
    report["training"] = {k: summary.get(k) for k in ("step", "images", "seconds", "wall_seconds", "images_per_s",
                                                      "stages", "resolution", "interrupted", "losses")}
    # 1. the export and the latest grid: the product, first
    export = run / "export"
    for name in ("config.json", "model.safetensors"):
        if (export / name).is_file():
            size = (export / name).stat().st_size
            if size > MAX_FILE:
                problem = f"export/{name} is {size / MIB:.1f} MiB, over 16 MiB: not copied"
                report.setdefault("problems", []).append(problem)
                print(problem, flush=True)
                continue
            shutil.copy2(export / name, out / name)
    grids = sorted((run / "samples").glob("step_*.png"))
    if grids:
        # One file for the grids (files are scarce): two earlier ones above the last, for the trend.
        picked = sorted({grids[len(grids) // 3], grids[2 * len(grids) // 3], grids[-1]})
        stack_images(picked, out / "samples.png")
        report["samples"] = [g.name for g in picked]
    report["export_mib"] = round((out / "model.safetensors").stat().st_size / MIB, 2) \
        if (out / "model.safetensors").is_file() else None
    (out / "device.json").write_text(json.dumps(report, indent=2) + "\n")
    # 2. FLOPs per image at the last stage, against the matmul peak measured in this call
    cfg = None
    if (run / "config.json").is_file():
        cfg = train_config_from_dict(json.loads((run / "config.json").read_text()))
    stages = summary.get("stages") or {}
    if cfg is not None and stages and not args.no_flops:
        # The last stage trained (the final resolution unless the budget ended earlier) is the steady state.
        res = max(int(r) for r in stages)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        fpi = flops_per_image(cfg, res, device)
        report["gflop_per_image"] = {str(res): round(fpi / 1e9, 3)}
        stage, peak = stages[str(res)], env.get("matmul_bf16_tflops")
        if peak:
            achieved = fpi * stage["images_per_s"] / 1e12
            report["at_last_stage"] = {"resolution": res, "images_per_s": stage["images_per_s"],
                                       "tflops": round(achieved, 3), "matmul_bf16_peak_tflops": peak,
                                       "fraction_of_peak": round(achieved / peak, 4)}
            print(f"{res} px: {stage['images_per_s']} images/s x {fpi / 1e9:.1f} GFLOP/image = {achieved:.2f} TFLOP/s, "
                  f"{100 * achieved / peak:.1f}% of the bf16 matmul peak ({peak} TFLOP/s, same call)", flush=True)
        (out / "device.json").write_text(json.dumps(report, indent=2) + "\n")
    # 3. the training state, in the most exact form that still fits what comes back
    ckpt = run / "checkpoint.pt"
    if ckpt.is_file():
        n_files, n_bytes = _used(out)
        free_files = MAX_FILES - n_files - (0 if (out / "device.log").exists() else 1)
        budget = min(free_files * PART, MAX_TOTAL - n_bytes - LOG_RESERVE)
        state, form, size = compact_state(torch.load(ckpt, map_location="cpu", weights_only=True), max(budget, 0))
        report["state"] = {"form": form, "mib": round(size / MIB, 1), "room_mib": round(budget / MIB, 1)}
        if state is not None:
            parts = write_parts(state, out)
            report["state"]["parts"] = [p.name for p in parts]
            print(f"state: {form}, {size / MIB:.1f} MiB in {len(parts)} part(s) "
                  f"(join: cat {STATE_PREFIX}* > checkpoint.pt)", flush=True)
        else:
            print(f"state: skipped, {size / MIB:.1f} MiB even as bf16 weights; room {budget / MIB:.1f} MiB", flush=True)
    else:
        report["state"] = {"form": "missing"}
    (out / "device.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def cmd_latency(args) -> dict:
    """The app's inference path (TranslationPipeline.translate_crops) on face crops, per face."""
    import statistics

    from PIL import Image

    from benchmarks.timing import timed
    from train.config import REPO_ROOT
    from twingan.faces import FaceCrop
    from twingan.pipeline import TranslationPipeline

    out = Path(args.out)
    pipeline = TranslationPipeline.load(out, device=args.device)
    size = pipeline.cropper.resolution
    if args.pack:
        from train.device.pack import decode_images, read_pack

        meta, arrays = read_pack(args.pack)
        offsets = arrays["source_offsets"][:args.faces + 1]
        faces = [Image.fromarray(a) for a in decode_images(arrays["source_data"], offsets, meta["resolution"])]
    else:
        faces = [Image.open(REPO_ROOT / "examples" / "astronaut.png").convert("RGB")]
    faces = [(faces * args.faces)[i].resize((size, size), Image.Resampling.BICUBIC) for i in range(args.faces)]
    crops = [FaceCrop(f, (0.0, 0.0, float(size), float(size)), None, 0.0) for f in faces]
    hair = pipeline.default_hair
    report = {"device": str(pipeline.device), "dtype": str(pipeline.dtype).replace("torch.", ""), "hair": hair,
              "crop_px": size, "model_px": pipeline.model.config.resolution}
    for batch in sorted({1, args.faces}):
        times = timed(lambda batch=batch: pipeline.translate_crops(crops[:batch], hair=hair), args.repeats, warmup=3)
        ms = 1e3 * statistics.median(times)
        report[f"batch_{batch}"] = {"ms_per_call": round(ms, 2), "ms_per_face": round(ms / batch, 2)}
    try:
        import facenet_pytorch  # noqa: F401
    except ImportError:
        report["detection"] = "skipped: facenet-pytorch is not installed here"
    else:
        photo = REPO_ROOT / "examples" / "astronaut.png"
        times = timed(lambda: pipeline.translate(photo, hair=hair), max(1, args.repeats // 4), warmup=1)
        report["photo_with_detection_ms"] = round(1e3 * statistics.median(times), 1)
    print(json.dumps({"latency": report}), flush=True)
    path = out / "device.json"
    if path.is_file():
        merged = json.loads(path.read_text())
        merged["latency"] = report
        path.write_text(json.dumps(merged, indent=2) + "\n")
    return report


PHASES = ("batch", "augment", "upload_jitter", "g_forward", "d_update", "g_update", "ema")  # engine's labels


def cmd_profile(args) -> dict:
    """Where a training step's time goes: RUN/checkpoint.pt's config and state (`--batch` overrides the
    batch size), `--warmup` steps, `--steps` timed steps, then as many under torch.profiler. Nothing
    is saved to RUN. Prints and merges into OUT/device.json: wall ms per step, the engine's phases (CPU ms per
    step, inclusive), kernel launches per step and the ops that take the most device (else CPU) time."""
    from torch.profiler import ProfilerActivity, profile

    from train.config import train_config_from_dict
    from train.loop import build_trainer, configure_torch

    run = Path(args.run)
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    cfg = dataclasses.replace(train_config_from_dict(state["config"]), run_dir=str(run))
    if args.batch:
        cfg = dataclasses.replace(cfg, batch_size=args.batch, batch_by_resolution={})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    configure_torch(cfg, device)
    trainer = build_trainer(cfg, 0, 1, device)
    trainer.load_state_dict(state)  # the state read above, not a second read of the file
    del state
    for _ in range(args.warmup):
        trainer.step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.step()
    sync(device)
    wall_ms = 1e3 * (time.perf_counter() - start) / args.steps
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            trainer.step()
        sync(device)
    events = prof.key_averages()

    def device_ms(e) -> float:  # self time on the accelerator (torch >= 2.4 names it device_time)
        return getattr(e, "self_device_time_total", 0.0) / 1e3 / args.steps

    def cpu_ms(e, inclusive: bool = False) -> float:
        return (e.cpu_time_total if inclusive else e.self_cpu_time_total) / 1e3 / args.steps

    by_key = {e.key: e for e in events}
    on_device = device.type == "cuda"
    top = sorted(events, key=device_ms if on_device else cpu_ms, reverse=True)[:args.top]
    res = trainer.stage[0]
    report = {
        "device": str(device), "resolution": res, "batch": cfg.batch_for(res), "steps": args.steps,
        "wall_ms_per_step": round(wall_ms, 2), "images_per_s": round(1e3 * cfg.batch_for(res) / wall_ms, 1),
        "phases_cpu_ms_per_step": {k: round(cpu_ms(by_key[k], inclusive=True), 2) for k in PHASES if k in by_key},
        "device_busy_ms_per_step": round(sum(device_ms(e) for e in events), 2) if on_device else None,
        "kernel_launches_per_step": (by_key["cudaLaunchKernel"].count // args.steps
                                     if "cudaLaunchKernel" in by_key else None),
        "top_ops": [{"op": e.key, "device_ms": round(device_ms(e), 3), "cpu_ms": round(cpu_ms(e), 3),
                     "calls_per_step": e.count // args.steps} for e in top],
    }
    print(json.dumps({"profile": report}), flush=True)
    path = Path(args.out) / "device.json"
    if path.is_file():
        merged = json.loads(path.read_text())
        merged["profile"] = report
        path.write_text(json.dumps(merged, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.device.device", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("env", help="print the environment and measure the bf16 matmul peak")
    e.add_argument("--json", default=None)
    e.add_argument("--seconds", type=float, default=2.0)
    e.add_argument("--pack", default=None, help="also check this pack: counts, sizes, a few images decoded")
    c = sub.add_parser("collect", help="copy the export and grid to OUT, write the state parts and the figures")
    c.add_argument("run")
    c.add_argument("out")
    c.add_argument("--no-flops", action="store_true")
    lat = sub.add_parser("latency", help="time the app's inference path on face crops with the export in OUT")
    lat.add_argument("out")
    lat.add_argument("--pack", default=None, help="take the face crops from this pack's human images")
    lat.add_argument("--faces", type=int, default=16)
    lat.add_argument("--repeats", type=int, default=20)
    lat.add_argument("--device", default=None, help="default: cuda (fp16) when present, else cpu (fp32)")
    prof = sub.add_parser("profile", help="profile training steps of RUN's config and state; figures into OUT")
    prof.add_argument("run")
    prof.add_argument("out")
    prof.add_argument("--warmup", type=int, default=5)
    prof.add_argument("--steps", type=int, default=10)
    prof.add_argument("--top", type=int, default=15, help="how many ops to list")
    prof.add_argument("--batch", type=int, default=0, help="batch size (default: the run's)")
    args = p.parse_args(argv)
    if args.cmd == "env":
        return cmd_env(args)
    {"collect": cmd_collect, "latency": cmd_latency, "profile": cmd_profile}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
