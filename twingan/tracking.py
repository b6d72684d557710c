"""Face tracks for a stream of frames (`FaceTracker`): detections matched to tracks by IoU, boxes
smoothed by an adaptive moving average and interpolated between detections. Pure helpers on boxes
first, then the tracker; no I/O. `twingan.video` uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in frame pixels

MATCH_IOU = 0.3  # a detection continues a track when their crop boxes overlap at least this much
TRACK_PATIENCE = 2  # detections in a row that may miss a face before its track ends (a blink, a turn)
# Box smoothing: the weight of a new detection is move / SMOOTH_SNAP (move: the largest coordinate
# change as a fraction of the box side), at least SMOOTH_MIN_WEIGHT. Detector jitter (~1% of the
# side) gets the minimum, which keeps ~0.4 of its amplitude; a move of 10% of the side is followed
# at once, so a moving face is not left behind.
SMOOTH_MIN_WEIGHT, SMOOTH_SNAP = 0.25, 0.1


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match(tracks: list[Box], detections: list[Box], min_iou: float = MATCH_IOU) -> list[tuple[int, int]]:
    """Greedy one-to-one (track index, detection index) pairs, highest IoU first."""
    pairs = sorted(((iou(t, d), i, j) for i, t in enumerate(tracks) for j, d in enumerate(detections)),
                   reverse=True)
    used_t, used_d, out = set(), set(), []
    for overlap, i, j in pairs:
        if overlap < min_iou:
            break
        if i not in used_t and j not in used_d:
            used_t.add(i)
            used_d.add(j)
            out.append((i, j))
    return out


def smooth_box(prev: Box, new: Box, min_weight: float = SMOOTH_MIN_WEIGHT, snap: float = SMOOTH_SNAP) -> Box:
    """One step of the adaptive moving average (see SMOOTH_MIN_WEIGHT)."""
    move = max(abs(p - n) for p, n in zip(prev, new)) / max(prev[2] - prev[0], 1e-6)
    w = min(1.0, max(min_weight, move / snap))
    return tuple(p + w * (n - p) for p, n in zip(prev, new))


def lerp_box(a: Box, b: Box, t: float) -> Box:
    return tuple(x + t * (y - x) for x, y in zip(a, b))


@dataclass(frozen=True)
class Detection:
    box: Box  # the model's crop square around the detected face
    angle: float  # degrees, see crop_box
    context_box: Box | None  # the hair classifier's frame, when the cropper has one


@dataclass(frozen=True)
class Face:
    """Where one track's face is in one frame, and the tags it is translated with."""

    track: int
    box: Box
    angle: float
    tags: torch.Tensor  # (vocab.dim,)


@dataclass
class _Track:
    id: int
    box: Box
    angle: float
    tags: torch.Tensor  # fixed when the track starts
    missed: int = 0  # detections in a row that did not find it


class FaceTracker:
    """Face boxes for a stream of frames, detected every `detect_every` frames.

    `push(frame, key)` returns the frames whose boxes are now known, each with its faces, in order; with
    `smooth` the frames between two detections wait for the second one (their boxes are
    interpolated), so up to detect_every - 1 frames are held. `flush()` returns the rest.

    detect(frame) -> detections, largest first; start(frame, detection) -> the new track's tags.
    """

    def __init__(self, detect: Callable[[Image.Image], list[Detection]],
                 start: Callable[[Image.Image, Detection], torch.Tensor], detect_every: int = 4,
                 smooth: bool = True, max_faces: int = 4):
        if detect_every < 1:
            raise ValueError(f"detect_every must be at least 1, got {detect_every}")
        self.detect, self.start = detect, start
        self.detect_every, self.smooth, self.max_faces = detect_every, smooth, max_faces
        self.tracks: list[_Track] = []
        self.started = 0  # tracks ever started
        self._index = 0
        self._shown: dict[int, Face] = {}  # the faces at the last detection
        self._held: list[tuple[Image.Image, object]] = []  # frames since the last detection (smooth only)

    def push(self, frame: Image.Image, key=None) -> list[tuple[Image.Image, object, list[Face]]]:
        """Add the next frame (`key` travels with it, e.g. its timestamp); returns the frames ready,
        as (frame, key, faces)."""
        index, self._index = self._index, self._index + 1
        if index % self.detect_every:
            if self.smooth:
                self._held.append((frame, key))
                return []
            return [(frame, key, list(self._shown.values()))]
        before, now = self._shown, self._update(frame)
        ready = []
        for k, (held, held_key) in enumerate(self._held, 1):
            t = k / (len(self._held) + 1)
            faces = [Face(f.track, lerp_box(f.box, now[f.track].box, t), f.angle + t * (now[f.track].angle - f.angle),
                          f.tags) if f.track in now else f for f in before.values()]
            ready.append((held, held_key, faces))
        self._held = []
        self._shown = now
        return ready + [(frame, key, list(now.values()))]

    def flush(self) -> list[tuple[Image.Image, object, list[Face]]]:
        """The frames still held, with the boxes of the last detection."""
        ready = [(frame, key, list(self._shown.values())) for frame, key in self._held]
        self._held = []
        return ready

    def _update(self, frame: Image.Image) -> dict[int, Face]:
        detections = self.detect(frame)
        pairs = match([t.box for t in self.tracks], [d.box for d in detections])
        matched = {i: j for i, j in pairs}
        alive = []
        for i, track in enumerate(self.tracks):
            if i in matched:
                d = detections[matched[i]]
                if self.smooth:
                    track.box = smooth_box(track.box, d.box)
                    track.angle += (d.angle - track.angle) * SMOOTH_MIN_WEIGHT
                else:
                    track.box, track.angle = d.box, d.angle
                track.missed = 0
            else:
                track.missed += 1
            if track.missed <= TRACK_PATIENCE:
                alive.append(track)
        taken = set(matched.values())
        for j, d in enumerate(detections):
            if j not in taken and len(alive) < self.max_faces:
                alive.append(_Track(self.started, d.box, d.angle, self.start(frame, d)))
                self.started += 1
        self.tracks = alive
        return {t.id: Face(t.id, t.box, t.angle, t.tags) for t in alive}
