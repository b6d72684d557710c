"""Selfie in, anime portraits out: the inference pipeline behind the app (no UI code here).

`TranslationPipeline.load(checkpoint)` loads the TwinGAN once, plus the face cropper and the
optional helpers: the anime tagger (reference image -> tags), the human hair classifier
(the "keep my hair colour" default), the anime upscaler (x2 super-resolution that takes the
portraits to display size, instead of a plain resize) and the portrait segmenter (the plain
background: what is not the person is laid over light grey before translation). A helper whose
checkpoint is missing only disables its feature; `pipeline.notes` says which and why.

Colour controls become the tag vector the generator is conditioned on in `twingan.controls`.

`build_index` and `lookalikes` search a gallery in the shared 4x4 latent (`twingan.lookalikes`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from twingan.checkpoint import (
    LOCAL_CHECKPOINTS,
    WEIGHTS_NAME,
    CheckpointError,
    load_pretrained,
    resolve_checkpoint,
    trained_both_ways,
)
from twingan.controls import AUTO, KEEP, eye_drawn, face_seed, tag_vectors
from twingan.faces import CELEBA_MARGINS, OUTSIDE_GREY, PORTRAIT_MARGINS, FaceCrop, FaceCropper, Margins, crop_face, paste_back
from twingan.images import ImageSource, images_to_tensor, load_image, square_crop, tensor_to_images
from twingan.layers import resize_square
from twingan.lookalikes import LatentIndex, Lookalike
from twingan.model import TwinGAN
from twingan.segmenter import PortraitSegmenter, face_in_crop, segment_and_grey
from twingan.tagger import HumanHairClassifier, Tagger
from twingan.upscaler import AnimeUpscaler
from twingan.vocab import TagVocab

PASTE_MAX_SIDE = 2000  # px, long side of the pasted photo: half a phone photo, sharp on any screen
# Webcam frames: detect on a 320 px copy and only faces of 40+ px there (a selfie's face is big),
# which cuts MTCNN's image pyramid to a few levels.
LIVE_DETECT_SIZE, LIVE_MIN_FACE = 320, 40
# Below this classifier confidence, and for greyscale faces, whose reads are mostly wrong
# (`python -m train.helpers.hair_report`), "keep my hair colour" is reported as unsure. At 0.6 the app's
# framing of the CelebA test faces keeps 89% of the reads, 92% right (0.5: 95%, 90% right); on real
# photos the reads are less sure, and 0.6 flags a dark-haired man read as silver at 53%. An unsure read
# still conditions the portrait with its probabilities (a hedge between the likely colours): with no
# hair tag the 128 px checkpoint of 2026-12-04 draws a muddy face without eyes on such photos.
HAIR_MIN_CONFIDENCE = 0.6
GREY_CHROMA = 0.02  # mean (max - min) over RGB below which a face counts as greyscale (JPEG noise ~0.005)
LIVE_REDETECT_EVERY = 4  # frames; between detections the face box is reused (a head moves little in 0.4 s)
# The 128 px model since 2026-12-04 (its model card has the measurements against the 64 px
# twingan-selfie2anime, which stays bundled).
DEFAULT_CHECKPOINT = LOCAL_CHECKPOINTS / "twingan-selfie2anime-128"
DEFAULT_TAGGER = LOCAL_CHECKPOINTS / "tagger"
DEFAULT_HAIR_CLASSIFIER = LOCAL_CHECKPOINTS / "human-hair"
DEFAULT_UPSCALER = LOCAL_CHECKPOINTS / "anime-upscaler"
DEFAULT_SEGMENTER = LOCAL_CHECKPOINTS / "portrait-segmenter"
# Behind the person: laid over light grey before translation ("plain", for photos; pasted back, only
# the person covers the photo), or translated with the person ("photo": as smudges and strands).
PLAIN, PHOTO = "plain", "photo"
BACKGROUNDS = (PLAIN, PHOTO)


def pick_device(device: str | None = None) -> tuple[torch.device, torch.dtype]:
    """CUDA with fp16 when available (or asked for), else CPU with fp32."""
    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for, but CUDA is not available")
    return dev, (torch.float16 if dev.type == "cuda" else torch.float32)


@dataclass
class FaceResult:
    """One translated face, with the images the UI shows."""

    crop: Image.Image  # the face crop from the photo, upscaled to display size
    anime: Image.Image  # the translation at display size (through the anime upscaler when it is on)
    anime_raw: Image.Image  # the translation at model resolution
    box: tuple[float, float, float, float]  # crop square in photo pixels
    confidence: float
    hair_read: str | None  # the hair colour read from the photo (None without the classifier)
    hair_unreliable: str | None  # why that read is unsure (the portrait hedges between colours), else None
    tags: list[float]  # the tag vector the generator got
    eye_drawn: str | None = None  # the colour drawn for "auto" eyes (None: a chosen colour, strength 0, no counts)
    person: Image.Image | None = None  # with the plain background: the person's mask ("L", display size)


@dataclass
class TranslationResult:
    faces: list[FaceResult]
    pasted: Image.Image | None = None  # the photo with the anime faces pasted back
    notes: list[str] = field(default_factory=list)  # features that were unavailable for this request


@dataclass
class HumanResult:
    """An anime face translated back to a human portrait."""

    anime: Image.Image  # the input's centre square at display size
    human: Image.Image  # the human portrait at display size (a plain resize: the upscaler is for anime)
    human_raw: Image.Image  # the human portrait at model resolution


@dataclass(frozen=True)
class LiveTrack:
    """Where the face was found in the last detected webcam frame, and how many frames ago."""

    box: tuple[float, float, float, float]
    angle: float = 0.0
    age: int = 0
    context_box: tuple[float, float, float, float] | None = None  # the hair classifier's frame
    eye_seed: int | None = None  # "auto" eyes: the seed of the face's first frame, so they keep their colour


class TranslationPipeline:
    """Face crops -> TwinGAN (human -> anime), conditioned on colour controls. See the module doc."""

    def __init__(self, model: TwinGAN, cropper: FaceCropper, tagger: Tagger | None = None,
                 hair_classifier: HumanHairClassifier | None = None, display_size: int = 256,
                 notes: list[str] | None = None, checkpoint: Path | None = None,
                 upscaler: AnimeUpscaler | None = None, translates_back: bool = False,
                 segmenter: PortraitSegmenter | None = None):
        self.model = model
        self.cropper = cropper
        self.tagger = tagger
        self.hair_classifier = hair_classifier
        self.upscaler = upscaler
        self.segmenter = segmenter
        self.display_size = display_size
        self.notes = list(notes or [])  # startup messages: which optional features are off, and why
        self.checkpoint = checkpoint
        # Whether the checkpoint was trained anime -> human too (`trained_both_ways`): `to_human` and the app's tab.
        self.translates_back = translates_back
        self.index: LatentIndex | None = None
        self._live_cropper: FaceCropper | None = None
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype

    @classmethod
    def load(cls, checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT, device: str | None = None,
             tagger: str | os.PathLike | None = DEFAULT_TAGGER,
             hair_classifier: str | os.PathLike | None = DEFAULT_HAIR_CLASSIFIER,
             max_faces: int = 4, display_size: int = 256,
             upscaler: str | os.PathLike | None = DEFAULT_UPSCALER,
             framing: Margins = PORTRAIT_MARGINS,
             segmenter: str | os.PathLike | None = DEFAULT_SEGMENTER) -> TranslationPipeline:
        """Load everything once. A missing TwinGAN checkpoint raises CheckpointError; a missing
        tagger, hair classifier, upscaler or segmenter only turns its feature off (see `notes`).
        framing: how much of the head and shoulders around the detected face each crop (and
        portrait) shows (`twingan.faces`: PORTRAIT_MARGINS, or TRAIN_A_MARGINS, the training
        selfies' framing)."""
        dev, dtype = pick_device(device)
        folder = resolve_checkpoint(checkpoint)
        model = load_pretrained(TwinGAN, folder, dev, dtype)
        notes = [] if model.config.tag_dim else ["This checkpoint has no colour conditioning: "
                                                 "the colour controls have no effect"]
        tagger_model = _load_optional(Tagger, tagger, dev, dtype, "Reference images are off", notes)
        hair_model = _load_optional(HumanHairClassifier, hair_classifier, dev, dtype,
                                    '"Keep my hair colour" is off', notes)
        upscaler_model = _load_optional(AnimeUpscaler, upscaler, dev, dtype,
                                        "The anime upscaler is off (portraits are resized)", notes)
        segmenter_model = _load_optional(PortraitSegmenter, segmenter, dev, dtype,
                                         "The plain background is off (the photo's is translated)", notes)
        # Crops at twice the model's resolution still look sharp at display size and cost a quarter
        # of display-size crops (crop_face's resampling was ~40 ms of a 1024 px photo at 256 px).
        crop_size = max(min(display_size, 2 * model.config.resolution), model.config.resolution)
        # The hair classifier reads the CelebA-like frame it was trained on (more hair than any model crop).
        context = CELEBA_MARGINS if hair_model is not None else None
        cropper = FaceCropper(crop_size, device=str(dev), max_faces=max_faces, margins=framing,
                              context_margins=context)
        return cls(model, cropper, tagger_model, hair_model, display_size, notes, folder, upscaler_model,
                   trained_both_ways(folder), segmenter_model)

    def warm_up(self) -> None:
        """Build the face detectors now (their weights load on first use), not in the first request."""
        for cropper in (self.cropper, self.live_cropper):
            cropper.mtcnn.eval()

    @property
    def live_cropper(self) -> FaceCropper:
        """A faster cropper for webcam frames: one face, detection on a small copy, big faces only."""
        if self._live_cropper is None:
            self._live_cropper = FaceCropper(self.model.config.resolution, device=str(self.device), max_faces=1,
                                             detect_size=LIVE_DETECT_SIZE, min_face_size=LIVE_MIN_FACE,
                                             margins=self.cropper.margins, context_margins=self.cropper.context_margins)
        return self._live_cropper

    # ----------------------------------------------------------------------------------------
    # Controls -> tag vectors

    @property
    def vocab(self) -> TagVocab:
        return self.model.config.vocab

    @property
    def conditioned(self) -> bool:
        return self.model.config.tag_dim > 0

    @property
    def hair_choices(self) -> list[str]:
        return ([KEEP] if self.hair_classifier is not None else []) + [AUTO, *self.vocab.hair]

    @property
    def eye_choices(self) -> list[str]:
        return [AUTO, *self.vocab.eye]

    @property
    def default_hair(self) -> str:
        return KEEP if self.hair_classifier is not None else AUTO

    def tag_vectors(self, n: int, hair: str = KEEP, hair_strength: float = 1.0, eye: str = AUTO,
                    eye_strength: float = 1.0, keep_probs: torch.Tensor | None = None,
                    binary: torch.Tensor | None = None, eye_seeds: list[int] | None = None) -> torch.Tensor:
        """(n, vocab.dim) tag vectors from the controls: `twingan.controls.tag_vectors` with this
        checkpoint's vocabulary and eye colour counts."""
        return tag_vectors(self.vocab, self.model.config.eye_given_hair, n, hair, hair_strength, eye, eye_strength,
                           keep_probs, binary, eye_seeds)

    @torch.no_grad()
    def read_hair(self, faces: torch.Tensor) -> tuple[list[str], torch.Tensor, list[str | None]] | None:
        """Hair colour of each human face (B, 3, H, W) in [0, 1]: names, (B, n_hair) vocab probs, and
        per face why the read is unsure (None when it is fine): a greyscale face, or a top
        probability below HAIR_MIN_CONFIDENCE. Unsure reads keep their probabilities, so the
        portrait hedges between the likely colours."""
        if self.hair_classifier is None:
            return None
        probs = self.hair_classifier(faces.to(self.device, self.dtype)).float().softmax(-1).cpu()
        classes = self.hair_classifier.config.classes
        vocab_probs = torch.zeros(len(probs), len(self.vocab.hair))
        for j, name in enumerate(classes):
            if name in self.vocab.hair:
                vocab_probs[:, self.vocab.hair_index(name)] = probs[:, j]
        names = [classes[int(i)] for i in probs.argmax(-1)]
        unreliable = []
        for i, (face, confidence) in enumerate(zip(faces, probs.max(-1).values.tolist())):
            if is_greyscale(face):
                unreliable.append("greyscale photo")
            elif confidence < HAIR_MIN_CONFIDENCE:
                unreliable.append(f"low confidence, {confidence:.0%} {names[i]}")
            else:
                unreliable.append(None)
        return names, vocab_probs, unreliable

    @torch.no_grad()
    def reference_tags(self, image: ImageSource) -> dict:
        """Tags of a reference anime image: {"hair", "eye", "hair_prob", "eye_prob", "probs" (dim,)}.

        The image is centre-cropped to a square (anime faces are not detected reliably).
        Raises ValueError when the tagger is not available.
        """
        if self.tagger is None:
            raise ValueError("Reference images are disabled: no tagger checkpoint was found")
        x = images_to_tensor([square_crop(load_image(image), self.tagger.config.resolution)])
        probs = self.tagger.tag_probs(x.to(self.device, self.dtype)).float().cpu()[0]
        # The tagger's own label order may differ from the model's vocabulary: map by name.
        tv, v = self.tagger.vocab, self.vocab
        out = torch.zeros(v.dim)
        for src_names, src, dst_names, dst in ((tv.hair, tv.hair_slice, v.hair, v.hair_slice),
                                               (tv.eye, tv.eye_slice, v.eye, v.eye_slice),
                                               (tv.binary, tv.binary_slice, v.binary, v.binary_slice)):
            for name, p in zip(src_names, probs[src].tolist()):
                if name in dst_names:
                    out[dst.start + dst_names.index(name)] = p
        hair, eye = out[v.hair_slice], out[v.eye_slice]
        return {"hair": v.hair[int(hair.argmax())], "hair_prob": float(hair.max()),
                "eye": v.eye[int(eye.argmax())], "eye_prob": float(eye.max()), "probs": out}

    # ----------------------------------------------------------------------------------------
    # Translation

    def detect(self, photo: ImageSource) -> list[FaceCrop]:
        """Face crops (display size), largest first. Raises ImageError / NoFaceError."""
        return self.cropper(photo)

    @torch.no_grad()
    def translate_crops(self, crops: list[FaceCrop], hair: str = KEEP, hair_strength: float = 1.0,
                        eye: str = AUTO, eye_strength: float = 1.0,
                        binary: torch.Tensor | None = None, upscale: bool = True,
                        eye_seeds: list[int] | None = None, background: str = PLAIN) -> list[FaceResult]:
        """Translate face crops in one batch. upscale: make the display-size portraits with the anime
        upscaler (when loaded), else with a plain resize. eye_seeds: of the "auto" eye colours
        (default: `face_seed` of each crop). background: PLAIN lays what is not the person over
        light grey first (when the segmenter is loaded; the face the detector found always stays),
        PHOTO translates the crop as it is."""
        x, person = self.model_inputs(crops, background)  # (B, 3, R, R), (B, 1, R, R) or None
        read = None
        if hair == KEEP and self.hair_classifier is not None:
            frames = [c.context if c.context is not None else c.image for c in crops]
            read = self.read_hair(self._model_size(images_to_tensor(frames), self.hair_classifier.config.resolution))
        if eye_seeds is None and eye == AUTO:  # only "auto" eyes are drawn
            eye_seeds = [face_seed(c.image) for c in crops]
        tags = self.tag_vectors(len(crops), hair, hair_strength, eye, eye_strength,
                                read[1] if read else None, binary, eye_seeds)
        drawn = eye_drawn(self.vocab, self.model.config.eye_given_hair, eye, tags)
        cond = tags.to(self.device, self.dtype) if self.conditioned else None
        out = self.model.translate(x.to(self.device, self.dtype), "human", "anime", cond)  # (B, 3, R, R)
        raws = tensor_to_images(out)
        if upscale and self.upscaler is not None:
            portraits = tensor_to_images(self.super_resolve(out))
        else:
            portraits = [self.upscale(raw) for raw in raws]
        masks = [None] * len(crops) if person is None else [
            Image.fromarray(m) for m in (resize_square(person, self.display_size)[:, 0] * 255).round().byte().numpy()]
        results = []
        for i, (crop, raw, portrait) in enumerate(zip(crops, raws, portraits)):
            results.append(FaceResult(
                crop=self.upscale(crop.image), anime=portrait, anime_raw=raw, box=crop.box,
                confidence=crop.confidence, hair_read=read[0][i] if read else None,
                hair_unreliable=read[2][i] if read else None, tags=tags[i].tolist(), eye_drawn=drawn[i],
                person=masks[i]))
        return results

    def translate(self, photo: ImageSource, hair: str = KEEP, hair_strength: float = 1.0, eye: str = AUTO,
                  eye_strength: float = 1.0, reference: ImageSource | None = None,
                  paste: bool = False, max_faces: int | None = None, upscale: bool = True,
                  background: str = PLAIN) -> TranslationResult:
        """Every face of a photo (up to max_faces) to an anime portrait.

        reference: an anime image whose binary tags (hair style, hat, ...) are used too.
        paste: also return the photo with the anime faces pasted back, its long side at most
            PASTE_MAX_SIDE (face boxes are then in that photo's pixels).
        max_faces: translate only this many of the largest faces (default: the cropper's max_faces).
        upscale: the portraits go to display size through the anime upscaler (when loaded); False:
            a plain Lanczos resize.
        background: PLAIN (a plain light background) or PHOTO (the photo's), see `translate_crops`.
        Raises ImageError (bad file, too large, no face) and ValueError (bad control) with
        messages meant for the user.
        """
        notes = []
        if hair == KEEP and self.hair_classifier is None:
            notes.append('"Keep my hair colour" is unavailable (no hair classifier); the model infers it')
        binary = None
        if reference is not None:
            binary = self.reference_tags(reference)["probs"][self.vocab.binary_slice]
        if paste:
            # Decode once (the cropper and paste_back both need the pixels), at a size worth pasting
            # into: a 12 MP photo decodes at half scale straight from the JPEG, 4x less work.
            photo = load_image(photo, PASTE_MAX_SIDE)
        crops = self.detect(photo)[:max_faces]
        faces = self.translate_crops(crops, hair, hair_strength, eye, eye_strength, binary, upscale,
                                     background=background)
        pasted = None
        if paste:
            # Paste the display-size images: upscaled with a good filter, softer than the raw pixels;
            # with the plain background only the person, so that the photo's background stays.
            masks = [f.person for f in faces]
            pasted = paste_back(photo, crops, [f.anime for f in faces], None if any(m is None for m in masks) else masks)
        return TranslationResult(faces, pasted, notes)

    def translate_frame(self, frame: ImageSource, hair: str = KEEP, hair_strength: float = 1.0,
                        eye: str = AUTO, eye_strength: float = 1.0,
                        track: LiveTrack | None = None, upscale: bool = False) -> tuple[Image.Image, LiveTrack]:
        """Live mode: the largest face of a webcam frame as an anime portrait (display size).

        Detection is most of a frame's cost, so it runs every LIVE_REDETECT_EVERY frames; the
        frames between reuse the face box of `track` (returned for the next frame). The anime
        upscaler is off unless `upscale`, and the background is the frame's (PHOTO): speed first.
        Raises NoFaceError when a detection finds no face.
        """
        image = load_image(frame)
        if track is None or track.age + 1 >= LIVE_REDETECT_EVERY:
            crop = self.live_cropper(image)[0]
            seed = face_seed(crop.image) if track is None or track.eye_seed is None else track.eye_seed
            track = LiveTrack(crop.box, crop.angle, 0, crop.context_box, seed)
        else:
            res = self.live_cropper.resolution
            face = crop_face(image, track.box, res, track.angle)
            context = None
            if track.context_box is not None and hair == KEEP:
                context = crop_face(image, track.context_box, res, track.angle, fade_outside=False)
            crop = FaceCrop(face, track.box, None, 0.0, None, track.angle, context, track.context_box)
            track = LiveTrack(track.box, track.angle, track.age + 1, track.context_box, track.eye_seed)
        result = self.translate_crops([crop], hair, hair_strength, eye, eye_strength, upscale=upscale,
                                      eye_seeds=[track.eye_seed], background=PHOTO)[0]
        return result.anime, track

    @torch.no_grad()
    def to_human(self, image: ImageSource) -> HumanResult:
        """An anime face to a human portrait. The image's centre square is used as it is (anime faces
        are not detected reliably), as for reference images; crop it to the face first. A checkpoint
        not trained that way (`translates_back`) raises ValueError: its output would mean nothing."""
        if not self.translates_back:
            raise ValueError("This checkpoint was not trained to translate anime faces to human ones")
        square = square_crop(load_image(image), self.display_size)
        x = self._model_size(images_to_tensor([square]))
        raw = tensor_to_images(self.model.translate(x.to(self.device, self.dtype), "anime", "human", None))[0]
        return HumanResult(anime=square, human=self.upscale(raw), human_raw=raw)

    @torch.no_grad()
    def model_inputs(self, crops: list[FaceCrop], background: str = PLAIN) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the translator sees of `crops`: (B, 3, R, R) in [0, 1] at its resolution, with the
        plain background where asked for and the segmenter is loaded (see `translate_crops`): the
        rest laid over the grey the crops fade to past the photo's edges. Also the person's mask
        (B, 1, R, R) in [0, 1] then, else None."""
        if background not in BACKGROUNDS:
            raise ValueError(f"Unknown background {background!r}; choose one of {', '.join(BACKGROUNDS)}")
        x = self._model_size(images_to_tensor([c.image for c in crops]))
        if background != PLAIN or self.segmenter is None:
            return x, None
        faces = [face_in_crop(c.box, c.face_box, c.angle) if c.face_box is not None else None for c in crops]
        x, person = segment_and_grey(self.segmenter, x.to(self.device, self.dtype), faces, OUTSIDE_GREY / 255)
        return x.float().cpu(), person.float().cpu()

    def _model_size(self, x: torch.Tensor, res: int | None = None) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, R, R) at the model's resolution, or `res` (antialiased bilinear)."""
        return resize_square(x, res or self.model.config.resolution)

    @torch.no_grad()
    def super_resolve(self, portraits: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) in [0, 1] on the model's device -> (B, 3, D, D) at display size: the anime
        upscaler (x2) as many times as it takes to reach display size, then an antialiased resize
        down to it where that overshoots."""
        x = portraits.clamp(0, 1)
        while x.shape[-1] < self.display_size:
            x = self.upscaler.upscale(x)  # (B, 3, 2S, 2S)
        return resize_square(x, self.display_size).clamp(0, 1)

    def upscale(self, image: Image.Image) -> Image.Image:
        """A plain resize to display size (Lanczos): the face crops, and portraits without the upscaler."""
        if image.width == self.display_size:
            return image
        return image.resize((self.display_size, self.display_size), Image.Resampling.LANCZOS)

    # ----------------------------------------------------------------------------------------
    # Lookalikes

    def build_index(self, gallery: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> LatentIndex:
        """Index a gallery folder (sub-folders anime/ and human/), or load its cached index."""
        res = self.model.config.resolution
        self.index = LatentIndex.build(
            Path(gallery), lambda images, domain: self.encode_faces(images_to_tensor(images), domain),
            cache_key=f"{self.checkpoint_fingerprint()}:{res}", image_size=res,
            cache_dir=Path(cache_dir) if cache_dir else default_cache_dir())
        return self.index

    @torch.no_grad()
    def lookalikes(self, photo: ImageSource, k: int = 4) -> dict[str, list[Lookalike]]:
        """For the largest face of a photo: the k nearest anime and human gallery faces."""
        if self.index is None:
            raise ValueError("No gallery is configured for lookalikes")
        crop = self.detect(photo)[:1]
        x = images_to_tensor([c.image for c in crop])
        query = self.encode_faces(x, "human")[0]
        return self.index.nearest(query, k)

    @torch.no_grad()
    def encode_faces(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, D) unit-length flattened latents."""
        latent, _ = self.model.encode(self._model_size(x).to(self.device, self.dtype), domain)
        return F.normalize(latent.float().flatten(1), dim=1).cpu()

    def checkpoint_fingerprint(self) -> str:
        """A short hash of the weights (the file when known, else the tensors)."""
        h = hashlib.sha256()
        weights = self.checkpoint / WEIGHTS_NAME if self.checkpoint else None
        if weights is not None and weights.is_file():
            with open(weights, "rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
        else:
            for name, t in sorted(self.model.state_dict().items()):
                h.update(name.encode())
                h.update(t.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    """$TWINGAN_CACHE, else $XDG_CACHE_HOME/twingan (~/.cache/twingan): outside the repository."""
    if os.environ.get("TWINGAN_CACHE"):
        return Path(os.environ["TWINGAN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "twingan"


def _load_optional(cls, path, device, dtype, disabled: str, notes: list[str]):
    if path is None:
        notes.append(f"{disabled} (no {cls.__name__} checkpoint given)")
        return None
    try:
        return load_pretrained(cls, path, device, dtype)
    except CheckpointError as err:
        notes.append(f"{disabled}: {err}")
        return None


def is_greyscale(face: torch.Tensor) -> bool:
    """Whether a (3, H, W) image in [0, 1] has (almost) no colour: R, G and B about equal."""
    return bool((face.amax(0) - face.amin(0)).mean() < GREY_CHROMA)

