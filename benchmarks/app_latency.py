"""End-to-end latency of the app's pipeline for one 1024 px selfie, live-mode frames per second, a
4000x3000 phone photo with and without pasting the faces back, and a 2500x1250 group photo of 50
faces (the app translates the largest 4). The photo is timed with the app's plain background and
with the photo's background translated (no segmenter).

Targets (2-core CPU): p50 <= 200 ms per photo (set for the 64 px model; <= 300 ms with the 128 px
model and the anime upscaler), >= 10 frames/s live (>= 5 at first), paste-back on 4000x3000
< 0.5 s (including the JPEG the app sends back), the group photo < 2 s. The photo is
examples/astronaut.png upscaled to 1024 x 1024 and encoded as a JPEG (quality 90), as a phone
upload would be; a live frame is the same photo at 640 x 480 as a numpy array (what the webcam
stream delivers), translated in sequence as the Live tab does (detection every few frames).
Without the trained checkpoint, a random model with the architecture of train/configs/cpu-small.json
is timed instead (same compute, noise output); the report says which.

    python -m benchmarks.app_latency [--checkpoint DIR] [--runs 20] [--threads 2] [--http]

--http also times the whole request through the Gradio server with gradio_client (upload, queue,
pipeline, PNG encoding, download).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.face_crop import make_photo
from benchmarks.timing import timed
from tests.samples import crowd, encode, webcam_frame
from twingan.pipeline import AUTO, DEFAULT_CHECKPOINT, TranslationPipeline
from twingan.pipeline import PHOTO as PHOTO_BACKGROUND

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "astronaut.png"
TRAIN_CONFIG = ROOT / "train" / "configs" / "cpu-small.json"


def selfie_jpeg(size: int = 1024) -> bytes:
    buf = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize((size, size), Image.Resampling.LANCZOS).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def random_checkpoint(folder: Path) -> Path:
    from twingan import TwinGAN, TwinGANConfig, save_pretrained
    from twingan.checkpoint import config_from_dict

    values = json.loads(TRAIN_CONFIG.read_text())["model"]
    torch.manual_seed(0)
    return save_pretrained(TwinGAN(config_from_dict(TwinGANConfig, values)).eval(), folder, torch.float16)


def report(name: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
    print(f"{name:<44} p50 {statistics.median(ms):7.1f} ms   p90 {p90:7.1f} ms   min {ms[0]:7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--http", action="store_true", help="also time requests through the Gradio server")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(args.checkpoint)
        if not checkpoint.is_dir():
            print(f"{checkpoint} not found: timing a random model shaped like {TRAIN_CONFIG.name}")
            checkpoint = random_checkpoint(Path(tmp) / "random")
        pipeline = TranslationPipeline.load(checkpoint, device="cpu")
        c = pipeline.model.config
        print(f"model: {c.resolution} px, {sum(p.numel() for p in pipeline.model.parameters()) / 1e6:.2f}M params; "
              f"hair classifier: {'yes' if pipeline.hair_classifier else 'no'}; "
              f"plain background: {'yes' if pipeline.segmenter else 'no'}; threads {args.threads}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

        jpeg, frame = selfie_jpeg(), np.asarray(webcam_frame())  # the webcam stream delivers arrays
        hair = pipeline.default_hair
        crops = pipeline.detect(jpeg)
        x = torch.rand(len(crops), 3, c.resolution, c.resolution)
        report("photo: detect + crop (1024 px JPEG)", timed(lambda: pipeline.detect(jpeg), args.runs, args.warmup))
        report("photo: translate crops (hair, model, upscale)",
               timed(lambda: pipeline.translate_crops(crops, hair), args.runs, args.warmup))
        with torch.no_grad():
            report("photo: model.translate only", timed(lambda: pipeline.model.translate(x), args.runs, args.warmup))
        photo = timed(lambda: pipeline.translate(jpeg, hair, 1.0, AUTO, 1.0), args.runs, args.warmup)
        report("photo: end to end (pipeline.translate)", photo)
        if pipeline.segmenter is not None:
            kept = timed(lambda: pipeline.translate(jpeg, hair, 1.0, AUTO, 1.0, background=PHOTO_BACKGROUND),
                         args.runs, args.warmup)
            report("photo: end to end, the photo's background", kept)
        track = None

        def live_frame():  # as the Live tab calls it: the face box carried from frame to frame
            nonlocal track
            _, track = pipeline.translate_frame(frame, hair, track=track)

        live = timed(live_frame, args.runs * 2, args.warmup)
        report("live: one 640x480 frame (translate_frame)", live)
        print(f"live: {1 / statistics.mean(live):.1f} frames/s (target >= 10); "
              f"photo p50 {statistics.median(photo) * 1000:.0f} ms (target <= 300 with the 128 px model)")

        big, origin = make_photo((4000, 3000))
        print(f"phone photo: 4000x3000 JPEG, {origin}")
        for paste in (False, True):
            def phone(paste=paste):  # what a request costs the server: the pipeline, then the JPEG the app sends back
                result = pipeline.translate(big, hair, 1.0, AUTO, 1.0, paste=paste)
                if result.pasted is not None:
                    result.pasted.save(io.BytesIO(), "JPEG")
            report(f"phone photo: end to end, paste {'on' if paste else 'off'}",
                   timed(phone, max(5, args.runs // 2), 1))

        group_jpeg = encode(crowd()[0], "JPEG", quality=90)
        report("group photo: 50 faces in 2500x1250, 4 kept",
               timed(lambda: pipeline.translate(group_jpeg, hair, 1.0, AUTO, 1.0), max(5, args.runs // 2), 1))

        if args.http:
            time_http(pipeline, jpeg, Path(tmp), args)


def time_http(pipeline: TranslationPipeline, jpeg: bytes, tmp: Path, args) -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(tmp / "examples-cache")
    from gradio_client import Client, handle_file

    import app

    (tmp / "selfie.jpg").write_bytes(jpeg)
    demo = app.create_demo(pipeline)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False, download_files=str(tmp / "downloads"))

        def request():
            return client.predict(handle_file(str(tmp / "selfie.jpg")), pipeline.default_hair, 1.0, AUTO,
                                  1.0, None, False, 4, api_name="/translate")

        report("http: gradio_client round trip", timed(request, args.runs, args.warmup))
    finally:
        demo.close()


if __name__ == "__main__":
    main()
