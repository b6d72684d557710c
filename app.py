"""TwinGAN demo: selfie in, anime portraits out, with hair and eye colour controls.

    python app.py                                  # http://127.0.0.1:7860, bundled checkpoint
    python app.py --checkpoint user/repo --gallery ../shared/data/selfie2anime --share

Every option also reads an environment variable (for a Hugging Face Space): TWINGAN_CHECKPOINT,
TWINGAN_DEVICE, TWINGAN_TAGGER, TWINGAN_HAIR_CLASSIFIER, TWINGAN_GALLERY,
GRADIO_SERVER_NAME, GRADIO_SERVER_PORT. The UI lives in
`create_demo(pipeline)`; the model work in `twingan.pipeline`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from twingan.checkpoint import CheckpointError
from twingan.controls import hair_read_lines
from twingan.faces import NoFaceError
from twingan.images import ImageError, load_image
from twingan.pipeline import (
    AUTO,
    DEFAULT_CHECKPOINT,
    DEFAULT_HAIR_CLASSIFIER,
    DEFAULT_TAGGER,
    KEEP,
    PHOTO,
    PLAIN,
    TranslationPipeline,
    default_cache_dir,
)
from twingan.video import translate_video
from twingan.vocab import EYE_COLORS, HAIR_COLORS

ROOT = Path(__file__).resolve().parent
# Public domain / CC0 photos; their sources are in examples/README.md.
EXAMPLES = [ROOT / "examples" / "astronaut.png", ROOT / "examples" / "camera.png"]
MAX_FILE_SIZE = "25mb"  # uploads above this are refused before they reach the pipeline
VIDEO_MAX_SECONDS = 20  # longer clips are refused: about a minute of work on a 2-core CPU at 640x480
log = logging.getLogger("twingan.app")

# After a translation: scroll the portraits into view if they are not (no-op when already visible).
SHOW_RESULTS = "() => document.getElementById('portraits')?.scrollIntoView({block: 'nearest', behavior: 'smooth'})"
CHOICE_LABELS = {KEEP: "Keep my hair colour", AUTO: "Let the model choose"}
STRENGTH_INFO = "0: the colour the model settles on, 1: the chosen colour fully"


def with_clear_image_errors(image: gr.Image) -> gr.Image:
    """Make a bad upload fail with the face module's clear message (gr.Image alone fails with an
    unexplained "Error"). Wraps the instance's preprocess: subclassing a Gradio component would
    write a .pyi file next to this module at import."""
    preprocess = image.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise gr.Error(_image_error_message(payload, err), print_exception=False) from None

    image.preprocess = checked
    return image


def _image_error_message(payload, err: Exception) -> str:
    path = getattr(payload, "path", None)
    if path:
        try:
            load_image(path)
        except ImageError as image_err:
            return str(image_err)
    return f"The upload could not be read as an image ({err})"


def swatch_css(elem_id: str, colors: dict[str, str]) -> str:
    """CSS that paints each radio option of `#elem_id` with its colour (a swatch before the name)."""
    rules = [f"#{elem_id} label:has(input[value='{name}'])::before {{ background: {hex_}; }}"
             for name, hex_ in colors.items()]
    rules.append(
        f"#{elem_id} label::before {{ content: ''; display: inline-block; width: 1.1em; height: 1.1em;"
        " border-radius: 50%; margin-right: 0.35em; border: 1px solid #8888; flex: none;"
        " background: conic-gradient(#f3d36b, #cf2d2d, #8a4fc8, #3a6fd8, #3f9e4c, #f3d36b); }")
    rules.append(f"#{elem_id} label:has(input[value='{KEEP}'])::before {{ background:"
                 " linear-gradient(135deg, #1d1d23, #7a4a2a 50%, #f3d36b); }")
    # The swatch replaces the radio dot; the chosen option gets a ring (keyboard focus too).
    rules.append(f"#{elem_id} input[type=radio] {{ position: absolute; opacity: 0; width: 1px; height: 1px; }}")
    rules.append(f"#{elem_id} label.selected, #{elem_id} label:focus-within {{"
                 " outline: 2px solid var(--color-accent); outline-offset: 1px; }")
    return "\n".join(rules[-4:] + rules[:-4])  # generic rules first so the colour rules win


def demo_css(vocab) -> str:
    """The page's CSS: colour swatches on the hair and eye radios, results kept in view."""
    return "\n".join([swatch_css("hair-color", {c: HAIR_COLORS.get(c, "#888") for c in vocab.hair}),
                      swatch_css("eye-color", {c: EYE_COLORS.get(c, "#888") for c in vocab.eye}),
                      ".swatches .wrap { gap: 0.3em; }",
                      # The results stay in view while the controls scroll (side by side, wide screens).
                      "#results { position: sticky; top: 0.5em; align-self: flex-start; }"])


def create_demo(pipeline: TranslationPipeline) -> gr.Blocks:
    """The Gradio UI around a loaded pipeline (queued; call `.launch()` on the result)."""
    with gr.Blocks(title="TwinGAN: selfie to anime") as demo:
        gr.HTML(f"<style>{demo_css(pipeline.vocab)}</style>", padding=False)  # Blocks(css=) moved to launch() in Gradio 6
        gr.Markdown("# TwinGAN: selfie to anime\nUpload a photo with up to four faces; each becomes "
                    "an anime portrait. Pick the hair and eye colour, or let the model choose.")
        if pipeline.notes:
            gr.Markdown("\n".join(f"- {n}" for n in pipeline.notes), elem_id="notes")
        with gr.Tab("Photo"):
            controls = photo_tab(pipeline)
        with gr.Tab("Live"):
            live_tab(pipeline, controls)
        with gr.Tab("Video"):
            video_tab(pipeline)
        with gr.Tab("Anime to human", visible=pipeline.translates_back):
            reverse_tab(pipeline)
    # CPU: one request at a time is fastest (torch already uses every core); a GPU overlaps a few.
    demo.queue(max_size=32, default_concurrency_limit=4 if pipeline.device.type == "cuda" else 1)
    return demo


def colour_choices(pipeline: TranslationPipeline) -> tuple[list, list]:
    """The hair and eye radio choices as (label, value) pairs."""
    return ([(CHOICE_LABELS.get(c, c), c) for c in pipeline.hair_choices],
            [(CHOICE_LABELS.get(c, c), c) for c in pipeline.eye_choices])


@dataclass
class PhotoControls:
    """The Photo tab's inputs; the Live tab reads its colour controls too."""

    photo: gr.Image
    button: gr.Button
    hair: gr.Radio
    hair_strength: gr.Slider
    eye: gr.Radio
    eye_strength: gr.Slider
    reference: gr.Image
    reference_info: gr.Markdown
    paste: gr.Checkbox
    max_faces: gr.Slider
    upscale: gr.Checkbox
    plain: gr.Checkbox


def photo_controls(pipeline: TranslationPipeline) -> PhotoControls:
    """The photo, the Translate button, the colour controls and the two closed accordions."""
    hair_choices, eye_choices = colour_choices(pipeline)
    photo = with_clear_image_errors(gr.Image(
        label="Photo", type="filepath", image_mode=None,  # the pipeline decodes it
        sources=["upload", "webcam", "clipboard"], elem_id="photo", height=320))
    # Right under the photo: above the fold at 1280x900, next to where results appear.
    button = gr.Button("Translate", variant="primary", elem_id="translate")
    hair = gr.Radio(hair_choices, value=pipeline.default_hair, label="Hair colour",
                    elem_id="hair-color", elem_classes="swatches")
    hair_strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Hair colour strength", info=STRENGTH_INFO)
    eye = gr.Radio(eye_choices, value=AUTO, label="Eye colour", elem_id="eye-color",
                   elem_classes="swatches",
                   info=("Let the model choose: a colour anime characters with that hair often have, the same "
                         "for the same photo. " if pipeline.model.config.eye_given_hair else "")
                        + "Pink, aqua and orange eyes often come out weak or off the eyes (see the README)")
    eye_strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Eye colour strength", info=STRENGTH_INFO)
    with gr.Accordion("Look like this character (optional)", open=False,
                      visible=pipeline.tagger is not None):
        reference = with_clear_image_errors(gr.Image(
            label="Reference anime image", type="filepath", image_mode=None,
            sources=["upload", "clipboard"], elem_id="reference"))
        reference_info = gr.Markdown(label="Reference tags")
    with gr.Accordion("Advanced settings", open=False):
        paste = gr.Checkbox(False, label="Also paste the anime faces back into the photo")
        max_faces = gr.Slider(1, pipeline.cropper.max_faces, value=pipeline.cropper.max_faces,
                              step=1, label="Faces to show (largest first)")
        upscale = gr.Checkbox(True, label="Sharpen with the anime upscaler",
                              info=f"Off: the portrait is only resized to {pipeline.display_size} px",
                              visible=pipeline.upscaler is not None)
        plain = gr.Checkbox(True, label="Plain background",
                            info="Off: what is behind you is drawn too, as smudges and strands; pasted back, the whole square",
                            visible=pipeline.segmenter is not None)
    return PhotoControls(photo, button, hair, hair_strength, eye, eye_strength, reference, reference_info,
                         paste, max_faces, upscale, plain)


def translate_handlers(pipeline: TranslationPipeline):
    """(translate, translate_example): the /translate endpoint and the examples' function."""

    # Every input but the photo has a default, so `client.predict(handle_file(p), api_name="/translate")` works.
    def translate(photo, hair=pipeline.default_hair, hair_strength=1.0, eye=AUTO, eye_strength=1.0,
                  reference=None, paste=False, max_faces=pipeline.cropper.max_faces, upscale=True,
                  plain_background=True):
        if photo is None:
            raise gr.Error("Upload a photo first (or take one with the webcam)", print_exception=False)
        try:
            result = pipeline.translate(photo, hair, hair_strength, eye, eye_strength, reference, paste,
                                        max_faces=int(max_faces), upscale=bool(upscale),
                                        background=PLAIN if plain_background else PHOTO)
        except ValueError as err:  # ImageError / NoFaceError / bad control: the message is for the user
            raise gr.Error(str(err), print_exception=False) from None
        faces = result.faces
        gallery = []
        for i, face in enumerate(faces, 1):
            gallery += [(face.crop, f"Face {i}: photo"), (face.anime, f"Face {i}: anime")]
        lines = [f"{len(faces)} face{'s' if len(faces) != 1 else ''} translated."]
        if hair == KEEP:
            lines += hair_read_lines([(f.hair_read, f.hair_unreliable) for f in faces])
        drawn = [f.eye_drawn for f in faces if f.eye_drawn]
        if drawn:
            lines.append("Eye colour the model chose: " + ", ".join(drawn) + ".")
        lines += result.notes
        return gallery, result.pasted, " ".join(lines)

    def translate_example(photo):
        # No pasted photo: Gradio 6.31 caches a None image as "" and then fails to read it back.
        gallery, _, status = translate(photo, pipeline.default_hair, 1.0, AUTO, 1.0, None, False,
                                       pipeline.cropper.max_faces)
        return gallery, status

    return translate, translate_example


def reference_handler(pipeline: TranslationPipeline):
    """The /reference_tags endpoint: a reference anime image sets the colour controls."""

    def reference_controls(reference):
        if reference is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), ""
        try:
            tags = pipeline.reference_tags(reference)
        except ValueError as err:
            raise gr.Error(str(err), print_exception=False) from None
        info = (f"Reference: {tags['hair']} hair ({tags['hair_prob']:.0%}), "
                f"{tags['eye']} eyes ({tags['eye_prob']:.0%}). Its hair style and accessories are used too.")
        return tags["hair"], 1.0, tags["eye"], 1.0, info

    return reference_controls


def photo_tab(pipeline: TranslationPipeline) -> PhotoControls:
    """The Photo tab: the controls beside the portraits, the examples and the lookalikes."""
    with gr.Row():
        with gr.Column():
            c = photo_controls(pipeline)
        with gr.Column(elem_id="results"):
            gallery = gr.Gallery(label="Face crops and anime portraits", columns=2, format="png",
                                 buttons=["download", "fullscreen"], elem_id="portraits",
                                 object_fit="contain", height="auto")
            info = gr.Markdown(label="Status", elem_id="info")
            # JPEG: a 2000 px photo encodes in ~20 ms, as PNG in ~2 s.
            pasted = gr.Image(label="Photo with anime faces", format="jpeg", interactive=False,
                              buttons=["download"], elem_id="pasted", visible=False)
    translate, translate_example = translate_handlers(pipeline)
    c.paste.change(lambda on: gr.Image(visible=on), c.paste, pasted, api_visibility="private")
    c.button.click(translate, [c.photo, c.hair, c.hair_strength, c.eye, c.eye_strength, c.reference, c.paste,
                               c.max_faces, c.upscale, c.plain], [gallery, pasted, info], api_name="translate").then(
        None, js=SHOW_RESULTS, api_visibility="private")  # narrow screens stack the columns
    c.reference.change(reference_handler(pipeline), c.reference,
                       [c.hair, c.hair_strength, c.eye, c.eye_strength, c.reference_info], api_name="reference_tags",
                       api_visibility="public" if pipeline.tagger is not None else "private")
    if EXAMPLES:
        gr.Examples([[str(p)] for p in EXAMPLES if p.is_file()], inputs=[c.photo], outputs=[gallery, info],
                    fn=translate_example, cache_examples=True, cache_mode="lazy",
                    label="Examples (public domain, see examples/README.md)")
    lookalikes_section(pipeline, c.photo)
    return c


def lookalikes_section(pipeline: TranslationPipeline, photo: gr.Image) -> None:
    """The gallery faces nearest to the photo's largest face (shown when the pipeline has a gallery)."""
    has_gallery = pipeline.index is not None

    def lookalikes(photo):
        if photo is None:
            raise gr.Error("Upload a photo first", print_exception=False)
        try:
            found = pipeline.lookalikes(photo)
        except ValueError as err:
            raise gr.Error(str(err), print_exception=False) from None
        # Images, not paths: Gradio only serves files from the working and temp folders.
        return tuple([(load_image(m.path), f"{m.path.name} ({m.similarity:.2f})") for m in found.get(domain, [])]
                     for domain in ("anime", "human"))

    with gr.Column(visible=has_gallery):
        gr.Markdown("### Lookalikes\nThe gallery faces nearest to your largest face in the "
                    "model's shared latent space.")
        look_button = gr.Button("Find lookalikes", variant="secondary", elem_id="lookalikes")
        with gr.Row():
            anime_near = gr.Gallery(label="Nearest anime faces", columns=4, height=220)
            human_near = gr.Gallery(label="Nearest human faces", columns=4, height=220)
        look_button.click(lookalikes, photo, [anime_near, human_near], api_name="lookalikes",
                          api_visibility="public" if has_gallery else "private")


def live_tab(pipeline: TranslationPipeline, c: PhotoControls) -> None:
    """The Live tab: webcam frames translated continuously with the Photo tab's colours."""

    def live(frame, hair, hair_strength, eye, eye_strength, track):
        if frame is None:
            return gr.skip(), track
        try:
            return pipeline.translate_frame(frame, hair, hair_strength, eye, eye_strength, track)
        except NoFaceError:
            return gr.skip(), None  # keep the last portrait while the face is out of view
        except ValueError as err:
            raise gr.Error(str(err), print_exception=False) from None

    gr.Markdown("Start the webcam: frames are translated continuously with the colours chosen "
                "on the Photo tab, as fast as the machine allows.")
    with gr.Row():
        webcam = gr.Image(label="Webcam", sources=["webcam"], streaming=True, type="numpy", elem_id="webcam")
        live_out = gr.Image(label="Anime", format="jpeg", interactive=False, elem_id="live")
    track = gr.State(None)  # this browser tab's face box, reused between detections
    webcam.stream(live, [webcam, c.hair, c.hair_strength, c.eye, c.eye_strength, track], [live_out, track],
                  api_name="live",
                  stream_every=0.1, time_limit=120, concurrency_limit=4)


def video_tab(pipeline: TranslationPipeline) -> None:
    """The Video tab: a clip in, the anime MP4 out (/video), with its own colour controls."""
    hair_choices, eye_choices = colour_choices(pipeline)
    gr.Markdown(f"Upload a clip of up to {VIDEO_MAX_SECONDS} s (or record one): every face in every "
                "frame becomes anime, the sound is kept. Frames over 1280 px are downscaled first.")
    with gr.Row():
        with gr.Column():
            # format=None: the upload is read as it is (no conversion, which would need ffmpeg).
            clip = gr.Video(label="Video", sources=["upload", "webcam"], format=None, elem_id="video-in",
                            height=320)
            video_button = gr.Button("Translate video", variant="primary", elem_id="translate-video")
            video_hair = gr.Radio(hair_choices, value=pipeline.default_hair, label="Hair colour",
                                  elem_classes="swatches")
            video_hair_strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Hair colour strength")
            video_eye = gr.Radio(eye_choices, value=AUTO, label="Eye colour", elem_classes="swatches")
            video_eye_strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Eye colour strength")
        with gr.Column():
            video_out = gr.Video(label="Anime video", interactive=False, format=None, elem_id="video-out",
                                 buttons=["download"])
            video_info = gr.Markdown(label="Status", elem_id="video-info")
    video_button.click(video_handler(pipeline, video_out),
                       [clip, video_hair, video_hair_strength, video_eye, video_eye_strength],
                       [video_out, video_info], api_name="video")


def video_handler(pipeline: TranslationPipeline, video_out: gr.Video):
    """The /video endpoint; its results go to a fresh folder in `video_out`'s Gradio cache."""

    def video(clip, hair=pipeline.default_hair, hair_strength=1.0, eye=AUTO, eye_strength=1.0,
              progress=gr.Progress()):
        if clip is None:
            raise gr.Error("Upload a video first (or record one with the webcam)", print_exception=False)
        # A fresh folder in Gradio's cache: served from there without a copy, never shared by two requests.
        folder = Path(tempfile.mkdtemp(prefix="video-", dir=video_out.GRADIO_CACHE))
        try:
            result = translate_video(pipeline, clip, folder / "anime.mp4", hair, hair_strength, eye, eye_strength,
                                     max_seconds=VIDEO_MAX_SECONDS,
                                     progress=lambda done, total: progress((done, total), unit="frames"))
        except ValueError as err:  # VideoError / NoFaceError / bad control: the message is for the user
            shutil.rmtree(folder, ignore_errors=True)
            raise gr.Error(str(err), print_exception=False) from None
        faces = f"{result.faces} face{'s' if result.faces != 1 else ''}"
        sound = "sound kept" if result.audio else "no sound"
        lines = [f"{result.frames} frames ({result.seconds:.1f} s at {result.fps:.3g} frames/s), {faces}, {sound}.",
                 *result.notes]
        return str(result.path), " ".join(lines)

    return video


def reverse_tab(pipeline: TranslationPipeline) -> None:
    """The Anime to human tab (/reverse): an anime face in, a human portrait out. Shown only for a
    checkpoint trained in that direction."""

    def reverse(image):
        if image is None:
            raise gr.Error("Upload an anime face first", print_exception=False)
        try:
            result = pipeline.to_human(image)
        except ValueError as err:  # ImageError / a checkpoint not trained this way: the message is for the user
            raise gr.Error(str(err), print_exception=False) from None
        return [(result.anime, "anime (centre square)"), (result.human, "human")]

    gr.Markdown("Upload an anime face: the centre square of the image becomes a human portrait. "
                "Crop the image to the face first; anime faces are not detected.")
    with gr.Row():
        with gr.Column():
            anime = with_clear_image_errors(gr.Image(label="Anime face", type="filepath", image_mode=None,
                                                     sources=["upload", "clipboard"], elem_id="anime-in",
                                                     height=320))
            button = gr.Button("Translate to human", variant="primary", elem_id="translate-reverse")
        with gr.Column():
            out = gr.Gallery(label="Anime face and human portrait", columns=2, format="png",
                             buttons=["download", "fullscreen"], elem_id="humans", object_fit="contain",
                             height="auto")
    button.click(reverse, anime, out, api_name="reverse",
                 api_visibility="public" if pipeline.translates_back else "private")


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=env("TWINGAN_CHECKPOINT", str(DEFAULT_CHECKPOINT)),
                   help="checkpoint folder or Hugging Face Hub repo id [TWINGAN_CHECKPOINT]")
    p.add_argument("--device", default=env("TWINGAN_DEVICE", "auto"),
                   help="auto (CUDA with fp16 when available, else CPU), cpu, cuda, cuda:1 [TWINGAN_DEVICE]")
    p.add_argument("--tagger", default=env("TWINGAN_TAGGER", str(DEFAULT_TAGGER)),
                   help="anime tagger checkpoint, for reference images (optional) [TWINGAN_TAGGER]")
    p.add_argument("--hair-classifier", default=env("TWINGAN_HAIR_CLASSIFIER", str(DEFAULT_HAIR_CLASSIFIER)),
                   help='human hair colour classifier, for "keep my hair colour" (optional) [TWINGAN_HAIR_CLASSIFIER]')
    p.add_argument("--gallery", default=env("TWINGAN_GALLERY"),
                   help="folder with anime/ and human/ face images for lookalikes [TWINGAN_GALLERY]")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    p.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"), help="[GRADIO_SERVER_NAME]")
    p.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")), help="[GRADIO_SERVER_PORT]")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        pipeline = TranslationPipeline.load(args.checkpoint, device=args.device, tagger=args.tagger,
                                            hair_classifier=args.hair_classifier)
        if args.gallery:
            pipeline.build_index(args.gallery)
    except (CheckpointError, ValueError) as err:
        sys.exit(f"app.py: {err}")
    for note in pipeline.notes:
        log.warning(note)
    pipeline.warm_up()
    # Cached example outputs belong to one checkpoint: one folder per weights, outside the repository.
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE",
                          str(default_cache_dir() / "examples" / pipeline.checkpoint_fingerprint()))
    demo = create_demo(pipeline)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                max_file_size=MAX_FILE_SIZE)


if __name__ == "__main__":
    main()
