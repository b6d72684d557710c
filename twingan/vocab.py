"""The tag vocabulary shared by the model config, the tagger, training and the UI.

A tag vector is laid out as [hair colour one-hot | eye colour one-hot | binary tags], so one
tensor of length `TAG_DIM` carries everything the generator is conditioned on.
"""

from __future__ import annotations

from dataclasses import dataclass

# Colour name -> display colour (hex) for the UI swatches.
HAIR_COLORS: dict[str, str] = {
    "blonde": "#f3d36b",
    "brown": "#7a4a2a",
    "black": "#1d1d23",
    "blue": "#3a6fd8",
    "purple": "#8a4fc8",
    "pink": "#f29ac0",
    "red": "#cf2d2d",
    "green": "#3f9e4c",
    "silver": "#c4c8d0",
    "orange": "#f08a24",
    "white": "#f7f7f7",
    "aqua": "#3ccfcf",
}
EYE_COLORS: dict[str, str] = {
    "blue": "#3a6fd8",
    "brown": "#7a4a2a",
    "red": "#cf2d2d",
    "purple": "#8a4fc8",
    "green": "#3f9e4c",
    "yellow": "#e8c62e",
    "black": "#1d1d23",
    "pink": "#f29ac0",
    "aqua": "#3ccfcf",
    "orange": "#f08a24",
}
BINARY_TAGS: tuple[str, ...] = (
    "long_hair", "short_hair", "twintails", "drill_hair", "ponytail",
    "blush", "smile", "open_mouth", "hat", "ribbon", "glasses",
)


@dataclass(frozen=True)
class TagVocab:
    """Names and offsets of the three tag groups inside one tag vector."""

    hair: tuple[str, ...] = tuple(HAIR_COLORS)
    eye: tuple[str, ...] = tuple(EYE_COLORS)
    binary: tuple[str, ...] = BINARY_TAGS

    @property
    def dim(self) -> int:
        return len(self.hair) + len(self.eye) + len(self.binary)

    @property
    def hair_slice(self) -> slice:
        return slice(0, len(self.hair))

    @property
    def eye_slice(self) -> slice:
        return slice(len(self.hair), len(self.hair) + len(self.eye))

    @property
    def binary_slice(self) -> slice:
        start = len(self.hair) + len(self.eye)
        return slice(start, start + len(self.binary))

    def hair_index(self, name: str) -> int:
        return _index(self.hair, name, "hair colour")

    def eye_index(self, name: str) -> int:
        return _index(self.eye, name, "eye colour")

    def encode(self, hair: str | None = None, eye: str | None = None,
               binary: dict[str, float] | None = None) -> list[float]:
        """A tag vector (plain floats) from names; groups left as None stay all zero."""
        vec = [0.0] * self.dim
        if hair:
            vec[self.hair_index(hair)] = 1.0
        if eye:
            vec[self.eye_slice.start + self.eye_index(eye)] = 1.0
        for name, value in (binary or {}).items():
            vec[self.binary_slice.start + _index(self.binary, name, "tag")] = float(value)
        return vec

    def decode(self, vec) -> dict:
        """Names from a tag vector: the most likely hair and eye colour and each binary tag's value."""
        values = [float(v) for v in vec]
        if len(values) != self.dim:
            raise ValueError(f"tag vector has length {len(values)}, the vocabulary needs {self.dim}")
        hair = values[self.hair_slice]
        eye = values[self.eye_slice]
        return {
            "hair": self.hair[max(range(len(hair)), key=hair.__getitem__)] if any(hair) else None,
            "eye": self.eye[max(range(len(eye)), key=eye.__getitem__)] if any(eye) else None,
            "binary": dict(zip(self.binary, values[self.binary_slice])),
        }


def _index(names: tuple[str, ...], name: str, what: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        raise ValueError(f"unknown {what} {name!r}; choose one of: {', '.join(names)}") from None


DEFAULT_VOCAB = TagVocab()
TAG_DIM = DEFAULT_VOCAB.dim
