"""Flicker and speed of video translation (`twingan.video.translate_video`).

Flicker: the mean absolute difference (0-255) between consecutive output frames inside the face's
crop box, on clips of the public-domain astronaut photo (examples/) that the benchmark writes:
"still", the photo held still with Gaussian sensor noise (std 4) on every frame, and "hand-held",
the same with the photo also shifted by up to 1 px each way per frame (`tests/clips.py`). The
input's own flicker in the same box is printed as the reference. Each clip is translated with box
smoothing on and off, with detection every 4 frames (the default) and on every frame.
Speed: frames per second of the whole call (decode, detect, translate, paste, H.264 encode) at
640x480 and at 1280x720 (the largest size processed; bigger frames are downscaled to it).

    python -m benchmarks.video [--checkpoint DIR] [--frames 48] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from tests.clips import flicker, read_frames, still_frames, write_clip
from twingan.pipeline import AUTO, DEFAULT_CHECKPOINT, TranslationPipeline
from twingan.video import translate_video

FPS = 24


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--frames", type=int, default=48, help="frames per clip (at 24 frames/s)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (a machine running other work: 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipeline = TranslationPipeline.load(args.checkpoint, device="cpu")
    pipeline.warm_up()
    print(f"checkpoint {args.checkpoint} ({pipeline.model.config.resolution} px); {args.frames} frames per clip; "
          f"threads {args.threads}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def run(src: Path, name: str, **kwargs) -> tuple[list, float]:
            start = time.perf_counter()
            result = translate_video(pipeline, src, tmp / f"{name}.mp4", hair=AUTO, **kwargs)
            return read_frames(result.path), result.frames / (time.perf_counter() - start)

        print(f"{'clip':<10} {'detect every':>12} {'smoothing':>9} {'flicker':>8} {'frames/s':>9}")
        for clip, shake in (("still", 0), ("hand-held", 1)):
            frames = still_frames(args.frames, (640, 480), noise=4, shake=shake)
            src = write_clip(tmp / f"{clip}.mp4", frames, FPS, sound=None)
            box = pipeline.detect(frames[0])[0].box
            print(f"{clip:<10} {'(input)':>12} {'':>9} {flicker(read_frames(src), box):8.2f}")
            for detect_every in (4, 1):
                for smooth in (False, True):
                    out, fps = run(src, f"{clip}-{detect_every}-{smooth}", detect_every=detect_every, smooth=smooth)
                    print(f"{clip:<10} {detect_every:>12} {'on' if smooth else 'off':>9} {flicker(out, box):8.2f} "
                          f"{fps:9.1f}")
        src = write_clip(tmp / "720p.mp4", still_frames(args.frames, (1280, 720), noise=4), FPS, sound="aac")
        _, fps = run(src, "720p")
        print(f"1280x720 with sound, defaults: {fps:.1f} frames/s")


if __name__ == "__main__":
    main()
