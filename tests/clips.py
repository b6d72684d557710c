"""Short synthetic video clips for the video tests and benchmark, written with PyAV (no files in git).

Tests import this as `clips` (pytest puts tests/ on the path); the benchmark as `tests.clips`.
A clip is the public-domain astronaut photo (examples/) held still in a dark frame, with optional
per-frame sensor noise and camera shake, and optionally a sine tone as its sound.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

ASTRONAUT = Path(__file__).resolve().parent.parent / "examples" / "astronaut.png"


def still_frames(n: int, size: tuple[int, int] = (320, 240), noise: float = 0.0, shake: int = 0,
                 seed: int = 0) -> list[np.ndarray]:
    """n (H, W, 3) uint8 frames: the astronaut's face filling the frame height, on dark grey, each
    with Gaussian noise of std `noise` (0-255 scale) and shifted by up to `shake` px each way."""
    w, h = size
    frame = Image.new("RGB", size, (40, 40, 40))
    frame.paste(Image.open(ASTRONAUT).convert("RGB").resize((h, h)), ((w - h) // 2, 0))
    base = np.asarray(frame, dtype=np.float32)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        f = np.roll(base, tuple(rng.integers(-shake, shake + 1, 2)), (0, 1)) if shake else base
        if noise:
            f = f + rng.normal(0.0, noise, f.shape)
        out.append(np.clip(f, 0, 255).round().astype(np.uint8))
    return out


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 12, sound: str | None = "aac",
               tone: float = 440.0, codec: str = "libx264", rotation: int = 0) -> Path:
    """Write frames (and a `tone` Hz sine in codec `sound`, as long as the video) to `path`; the
    container follows the suffix. rotation: the display rotation stored (degrees counter-clockwise)."""
    out = av.open(str(path), "w")
    video = out.add_stream(codec, rate=fps, options={"crf": "18"} if codec == "libx264" else {})
    video.height, video.width = frames[0].shape[:2]
    video.pix_fmt = "yuv420p"
    if rotation:
        video.set_display_rotation(rotation)
    audio = None
    if sound:
        audio = out.add_stream(sound, rate=48000 if sound == "libopus" else 16000, layout="mono")
    for f in frames:
        out.mux(video.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
    out.mux(video.encode(None))
    if audio is not None:
        rate = audio.rate
        t = np.arange(round(rate * len(frames) / fps)) / rate
        samples = (0.3 * np.sin(2 * np.pi * tone * t)).astype(np.float32)[None]  # (1, n): mono
        chunk = audio.codec_context.frame_size or 1024
        for start in range(0, samples.shape[1], chunk):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + chunk]), format="flt",
                                               layout="mono")
            frame.sample_rate = rate
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    out.close()
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    """Every video frame as (H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def sound_peak(path: Path) -> tuple[float, float]:
    """(seconds of sound, its strongest frequency in Hz) of the first audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [f.to_ndarray().mean(0) for f in container.decode(stream)]  # planar: (channels, n) -> (n,)
        rate = stream.rate
    x = np.concatenate(chunks)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return len(x) / rate, float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def flicker(frames: list[np.ndarray], box) -> float:
    """Mean absolute difference (0-255) between consecutive frames inside `box` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    h, w = frames[0].shape[:2]
    region = [f[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)].astype(np.float32) for f in frames]
    return float(np.mean([np.abs(a - b).mean() for a, b in zip(region, region[1:])]))
