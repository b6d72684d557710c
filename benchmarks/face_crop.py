"""Time load + detect + crop of a 4000x3000 JPEG with FaceCropper (target: < 300 ms on 2 cores).

The photo is a real group photo from the shared data upscaled to 4000x3000 (a synthetic one when
the data is absent, which has no face and times the fallback path instead).

    python -m benchmarks.face_crop --runs 10 --threads 2
"""

import argparse
import io
import statistics
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.timing import timed
from train.config import default_data_root
from twingan.faces import FaceCropper

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(default_data_root())


def make_photo(size=(4000, 3000)) -> tuple[bytes, str]:
    """A size[0] x size[1] JPEG (quality 90) in memory, and where it came from."""
    source = DATA / "photos" / "multiface.jpg"
    if source.is_file():
        image = Image.open(source).convert("RGB")
        w, h = image.size
        crop_w = min(w, round(h * size[0] / size[1]))  # 4:3 crop, then upscale
        image = image.crop((0, 0, crop_w, h)).resize(size, Image.Resampling.BICUBIC)
        origin = f"{source} upscaled"
    else:
        rng = np.random.default_rng(0)
        small = rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        origin = "synthetic noise (no faces; shared data not found)"
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue(), origin


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--detect-size", type=int, default=640)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    data, origin = make_photo()
    cropper = FaceCropper(resolution=args.resolution, detect_size=args.detect_size)
    crops = cropper(data, fallback_center_crop=True)  # warm-up; builds the detector
    times = [t * 1e3 for t in timed(lambda: cropper(data, fallback_center_crop=True), args.runs, warmup=0)]
    print(f"photo: 4000x3000 JPEG, {len(data) / 1e6:.1f} MB, {origin}; {len(crops)} faces")
    print(
        f"load+detect+crop, {args.threads} threads, detect_size {args.detect_size}, "
        f"{args.runs} runs: p50 {statistics.median(times):.0f} ms, min {min(times):.0f} ms"
    )


if __name__ == "__main__":
    main()
