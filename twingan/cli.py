"""Command line: translate photos in bulk, and push a checkpoint or the app to the Hugging Face Hub.

    python -m twingan translate photos/ me.jpg --out anime/ --hair pink --paste
    python -m twingan push checkpoints/twingan-selfie2anime user/twingan-selfie2anime --dry-run
    python -m twingan push --space user/twingan-selfie2anime

`translate` loads the pipeline once and writes, per photo, one PNG per face (`<stem>_face<N>.png`,
the portrait as the app shows it) and with `--paste` the photo with the faces pasted back
(`<stem>_pasted.jpg`); a video becomes `<stem>_anime.mp4` where `twingan.video` is installed.
Files that cannot be translated are skipped with the reason; the exit status is 1 only when no
file was translated (or found already done).

`push` uploads with `huggingface_hub`; the files it sends are chosen by `checkpoint_files` and
`space_files`, pure functions of a folder.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from twingan.images import IMAGE_SUFFIXES
from twingan.pipeline import AUTO, DEFAULT_CHECKPOINT, KEEP, PHOTO, PLAIN
from twingan.vocab import EYE_COLORS, HAIR_COLORS

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi")
REPO_ROOT = Path(__file__).resolve().parent.parent
PASTE_JPEG_QUALITY = 92  # the pasted photo: a photo, so JPEG; 92 shows no blocks around the faces

# What a Space needs to run the app, relative to the repository root; nothing else is uploaded.
SPACE_TOP_FILES = ("app.py", "requirements.txt", "README.md")
SPACE_FOLDERS = ("twingan", "checkpoints", "examples", "docs")  # docs/: the pictures the README shows
# Never uploaded from inside those folders: caches, and training-only parts of exports (the app
# never reads a checkpoint's discriminators).
SKIPPED_DIRS = frozenset({"__pycache__", "discriminators"})
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".partial")
# The Hub advises fewer than 100 files per commit. The app with every bundled checkpoint is about
# 15 MB; 500 MB means data or a run folder slipped in.
MAX_UPLOAD_FILES = 100
SPACE_MAX_BYTES = 500_000_000
EXAMPLES = ("python -m twingan translate photos/ me.jpg --out anime/ --hair pink --paste",
            "python -m twingan push checkpoints/twingan-selfie2anime user/twingan-selfie2anime --dry-run",
            "python -m twingan push --space user/twingan-selfie2anime --private")
HUB_PROBE_TIMEOUT = 1.0  # seconds: an offline machine fails at once instead of in the Hub's retries


class CommandError(Exception):
    """An expected failure; the message (one line, for a person) is all that is printed."""


# ---------------------------------------------------------------------------------------------
# translate


@dataclass(frozen=True)
class Job:
    """One input file and where its outputs go (`stem` is relative to --out, without suffix)."""

    source: Path
    stem: Path
    is_video: bool

    def face_path(self, out: Path, n: int) -> Path:
        return out / self.stem.parent / f"{self.stem.name}_face{n}.png"

    def pasted_path(self, out: Path) -> Path:
        return out / self.stem.parent / f"{self.stem.name}_pasted.jpg"

    def video_path(self, out: Path) -> Path:
        return out / self.stem.parent / f"{self.stem.name}_anime.mp4"

    def done(self, out: Path, paste: bool) -> bool:
        """Whether a previous run finished this file (face 1 is written last, see `_write_faces`)."""
        if self.is_video:
            return self.video_path(out).is_file()
        return self.face_path(out, 1).is_file() and (not paste or self.pasted_path(out).is_file())


def collect_jobs(paths: list[Path], out: Path) -> tuple[list[Job], list[tuple[Path, str]]]:
    """Jobs for the given files and folders, and (path, reason) for what cannot be a job.

    Folders are searched recursively for image and video files (hidden names and the output
    folder are left out) and their sub-folders are kept under --out. A file named directly is
    tried whatever its suffix; a video suffix makes it a video.
    """
    out_resolved = out.resolve()
    jobs, skipped, taken = [], [], {}
    for path in paths:
        if path.is_dir():
            found = []
            for f in sorted(path.rglob("*")):
                rel = f.relative_to(path)
                if (f.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES and f.is_file()
                        and not any(part.startswith(".") for part in rel.parts)
                        and not f.resolve().is_relative_to(out_resolved)):
                    found.append((f, rel.with_suffix("")))
            if not found:
                skipped.append((path, "no image or video files in this folder"))
        elif path.is_file():
            found = [(path, Path(path.stem))]
        else:
            skipped.append((path, "no such file or folder"))
            continue
        for source, stem in found:
            key = stem.as_posix().lower()  # case-insensitive file systems would merge these
            if key in taken:
                skipped.append((source, f"its outputs would have the same names as those of {taken[key]}"))
                continue
            taken[key] = source
            jobs.append(Job(source, stem, source.suffix.lower() in VIDEO_SUFFIXES))
    return jobs, skipped


def _save(image, path: Path, **kwargs) -> None:
    """Write next to the target, then rename: an interrupted run leaves no half-written image."""
    tmp = path.with_name(f".{path.name}.partial")
    image.save(tmp, format="PNG" if path.suffix == ".png" else "JPEG", **kwargs)
    os.replace(tmp, path)


def _write_faces(job: Job, out: Path, result) -> None:
    """The portraits and the pasted photo. Face 1 goes last, so that its file says the photo is
    complete; portraits of a previous run with more faces are removed."""
    folder = job.face_path(out, 1).parent
    folder.mkdir(parents=True, exist_ok=True)
    stale = re.compile(re.escape(job.stem.name) + r"_face(\d+)\.png")
    for f in folder.iterdir():
        m = stale.fullmatch(f.name)
        if m and int(m.group(1)) > len(result.faces):
            f.unlink()
    for n in range(len(result.faces), 1, -1):
        _save(result.faces[n - 1].anime, job.face_path(out, n))
    if result.pasted is not None:
        _save(result.pasted, job.pasted_path(out), quality=PASTE_JPEG_QUALITY)
    _save(result.faces[0].anime, job.face_path(out, 1))


def _translate_video(pipeline, job: Job, out: Path, controls: dict) -> None:
    """Translate a video with `twingan.video`; raises CommandError (the skip reason) without it."""
    try:
        from twingan.video import translate_video
    except ModuleNotFoundError as err:
        if err.name == "twingan.video":
            raise CommandError("video is not supported in this install") from None
        raise CommandError(f"video needs the {err.name} package, which is not installed") from None
    dst = job.video_path(out)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.partial.mp4")  # keeps .mp4: writers pick the format by suffix
    try:
        translate_video(pipeline, job.source, tmp, **controls, progress=True)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def run_translate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from twingan.checkpoint import CheckpointError
    from twingan.images import ImageError, load_image
    from twingan.pipeline import TranslationPipeline

    out = Path(args.out)
    jobs, skipped = collect_jobs([Path(p) for p in args.paths], out)
    for path, reason in skipped:
        print(f"skipped {path}: {reason}")
    pending = [j for j in jobs if args.overwrite or not j.done(out, args.paste)]
    already = len(jobs) - len(pending)
    translated, faces = 0, 0
    if pending:
        try:
            pipeline = TranslationPipeline.load(args.checkpoint, device=args.device, max_faces=args.max_faces)
        except (CheckpointError, ValueError) as err:
            raise CommandError(str(err)) from None
        for note in pipeline.notes:
            print(f"note: {note}")
        reference = None
        if args.reference:
            try:
                reference = load_image(args.reference)
            except ImageError as err:
                raise CommandError(f"--reference {args.reference}: {err}") from None
        controls = dict(hair=args.hair, hair_strength=args.hair_strength, eye=args.eye,
                        eye_strength=args.eye_strength)
        notes_shown = set(pipeline.notes)
        for job in tqdm(pending, desc="translating", unit="file"):
            try:
                if job.is_video:
                    _translate_video(pipeline, job, out, controls)
                else:
                    result = pipeline.translate(str(job.source), **controls, reference=reference, paste=args.paste,
                                                upscale=not args.no_upscale,
                                                background=PHOTO if args.keep_background else PLAIN)
                    _write_faces(job, out, result)
                    faces += len(result.faces)
                    for note in result.notes:
                        if note not in notes_shown:
                            notes_shown.add(note)
                            tqdm.write(f"note: {note}")
            except (CommandError, ValueError) as err:  # ImageError, NoFaceError, a bad control: for people
                skipped.append((job.source, str(err)))
                tqdm.write(f"skipped {job.source}: {err}")
                continue
            translated += 1
    summary = f"{translated} translated"
    if faces:
        summary += f" ({faces} face{'s' if faces != 1 else ''})"
    summary += f", {len(skipped)} skipped, {already} already done"
    if already:
        summary += " (--overwrite redoes them)"
    print(f"{summary}; outputs in {out}")
    return 0 if translated or already else 1


# ---------------------------------------------------------------------------------------------
# push


def _walk(root: Path, folder: Path) -> list[Path]:
    """Files under root/folder, relative to root, without hidden names, caches and partial files."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root / folder):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and not name.endswith(SKIPPED_SUFFIXES):
                files.append((Path(dirpath) / name).relative_to(root))
    return files


def space_files(repo_root: str | os.PathLike) -> list[Path]:
    """The files a Gradio Space needs to run the app, relative to `repo_root`: app.py,
    requirements.txt, README.md (with the Space's front matter), twingan/, checkpoints/ (every
    bundled checkpoint, without discriminators), examples/ and docs/ (the README's pictures). No data,
    runs, tests or caches."""
    root = Path(repo_root)
    files = [Path(name) for name in SPACE_TOP_FILES if (root / name).is_file()]
    for folder in SPACE_FOLDERS:
        files += _walk(root, Path(folder))
    return files


def checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    """The files of a checkpoint folder that go to the Hub, relative to it: config.json, every
    *.safetensors (sub-folders too, such as discriminators/), README.md and training.json."""
    root = Path(folder)
    files = [Path(name) for name in ("config.json", "README.md", "training.json") if (root / name).is_file()]
    files += sorted(p.relative_to(root) for p in root.rglob("*.safetensors")
                    if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    return files


def card_metadata(readme: Path) -> dict:
    """The YAML front matter of a model or Space card. Raises CommandError naming what is missing."""
    import yaml  # a dependency of huggingface_hub
    from huggingface_hub.repocard import metadata_load

    if not readme.is_file():
        raise CommandError(f"{readme} is missing: the Hub shows it as the card")
    try:
        meta = metadata_load(readme)
    except (yaml.YAMLError, ValueError) as err:
        raise CommandError(f"{readme}: the front matter is not valid YAML ({_first_line(err)})") from None
    if not meta:
        raise CommandError(f"{readme} has no YAML front matter: start it with a block between '---' "
                           f"lines (for a model, e.g. license:, library_name:, tags:)")
    return meta


def check_upload(root: Path, files: list[Path], space: bool) -> None:
    """What the Hub needs before an upload; raises CommandError with what is wrong."""
    names = {f.as_posix() for f in files}
    needed = SPACE_TOP_FILES if space else ("config.json", "model.safetensors")
    missing = [n for n in needed if n not in names]
    if missing:
        what = "the app" if space else "a checkpoint folder"
        raise CommandError(f"{root} is not {what}: {', '.join(missing)} missing")
    meta = card_metadata(root / "README.md")
    if space:
        if "sdk" not in meta:
            raise CommandError(f"{root / 'README.md'}: the front matter has no sdk: (gradio for this app)")
        app_file = meta.get("app_file", "app.py")
        if app_file not in names:
            raise CommandError(f"{root / 'README.md'}: app_file {app_file} is not among the files uploaded")
    sizes = [(root / f).stat().st_size for f in files]
    if len(files) > MAX_UPLOAD_FILES:
        raise CommandError(f"{len(files)} files to upload, more than {MAX_UPLOAD_FILES}: something that is "
                           f"not part of it is in {root}")
    if space and sum(sizes) > SPACE_MAX_BYTES:
        raise CommandError(f"{_size(sum(sizes))} to upload, more than {_size(SPACE_MAX_BYTES)}: data or a run "
                           f"folder is inside twingan/, checkpoints/ or examples/")


def check_hub_access() -> None:
    """Fail at once, with the reason, where an upload cannot work: no token, offline, no network."""
    import huggingface_hub

    from twingan.checkpoint import _hub_reachable

    if huggingface_hub.get_token() is None:
        raise CommandError("no Hugging Face token: log in with `hf auth login` or set HF_TOKEN")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise CommandError("HF_HUB_OFFLINE is set: unset it to upload")
    if not _hub_reachable(HUB_PROBE_TIMEOUT):
        raise CommandError("huggingface.co is not reachable: check the network (or HF_ENDPOINT)")


def run_push(args: argparse.Namespace) -> int:
    if args.space:
        if args.checkpoint is not None:
            raise CommandError("--space uploads the app from the repository; give only REPO_ID")
        repo_id, root, files, repo_type = args.repo_id, REPO_ROOT, space_files(REPO_ROOT), "space"
    else:
        if args.checkpoint is None:
            raise CommandError("give CHECKPOINT REPO_ID (or --space REPO_ID)")
        root = Path(args.checkpoint)
        if not root.is_dir():
            raise CommandError(f"checkpoint folder {root} does not exist")
        repo_id, files, repo_type = args.repo_id, checkpoint_files(root), "model"
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise CommandError(f"REPO_ID must be user/name or org/name, got {repo_id!r}")
    check_upload(root, files, args.space)
    visibility = "private" if args.private else "public"
    if args.dry_run:
        sizes = [(root / f).stat().st_size for f in files]
        print(f"would upload {len(files)} files ({_size(sum(sizes))}) from {root} to the {repo_type} "
              f"{repo_id} ({visibility} if new):")
        for f, size in zip(files, sizes):
            print(f"  {_size(size):>9}  {f.as_posix()}")
        return 0
    check_hub_access()
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type=repo_type, private=True if args.private else None, exist_ok=True,
                              space_sdk="gradio" if args.space else None)
        # Exact paths as patterns (escaped: a [ in a name is not a character class).
        api.upload_folder(repo_id=repo_id, repo_type=repo_type, folder_path=root,
                          allow_patterns=[glob.escape(f.as_posix()) for f in files],
                          commit_message=f"Upload {'the app' if args.space else 'the checkpoint'} "
                                         f"({len(files)} files)")
    except Exception as err:  # HTTP and network errors, whose types depend on the huggingface_hub version
        raise CommandError(f"the upload to {repo_id} failed: {type(err).__name__}: {_first_line(err)}") from None
    print(f"uploaded {len(files)} files to {url}")
    return 0


def _size(n: int) -> str:
    """Bytes in the Hub's units (powers of 1000)."""
    if n < 1000:
        return f"{n} B"
    for unit in ("kB", "MB", "GB"):  # noqa: B007 (read after the loop: the unit it stopped at)
        n /= 1000
        if n < 1000:
            break
    return f"{n:.1f} {unit}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# ---------------------------------------------------------------------------------------------
# arguments


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


TRANSLATE_HELP = f"""\
Translate every face of each photo to an anime portrait. Writes, under DIR:
  <stem>_face<N>.png   per face, largest first: the portrait as the app shows it (256 px)
  <stem>_pasted.jpg    with --paste: the photo with the anime faces pasted back
  <stem>_anime.mp4     per video ({" ".join(VIDEO_SUFFIXES)}), where twingan.video is installed
Folders are searched recursively ({" ".join(IMAGE_SUFFIXES)} and videos), their sub-folders kept
under DIR. A file without a face, or that is not an image, is skipped with the reason. A file whose
outputs exist is skipped too (--overwrite redoes it). Exit status 1 when no file was translated
or found already done."""

PUSH_HELP = """\
Upload to the Hugging Face Hub with huggingface_hub:
  CHECKPOINT REPO_ID   a checkpoint folder as a model repo: config.json, every *.safetensors
                       (sub-folders such as discriminators/ too), README.md, training.json
  --space REPO_ID      the app as a Gradio Space: app.py, requirements.txt, README.md, twingan/,
                       checkpoints/ (without discriminators) and examples/; nothing else
The README must start with YAML front matter (for a Space, with sdk:). A checkpoint card without
one is refused rather than given a made-up licence: add license:, library_name: and tags:.
Needs a token (`hf auth login` or HF_TOKEN) and the network, except with --dry-run."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m twingan", description="TwinGAN selfie-to-anime tools.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  " + "\n  ".join(EXAMPLES) +
                                       "\n\n`python -m twingan COMMAND --help` describes each command.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    raw = argparse.RawDescriptionHelpFormatter
    t = sub.add_parser("translate", help="photos (files or folders) to anime portraits", formatter_class=raw,
                       description=TRANSLATE_HELP, epilog="example:\n  " + EXAMPLES[0])
    t.add_argument("paths", nargs="+", metavar="PATH", help="photos, videos or folders")
    t.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    t.add_argument("--hair", default=KEEP, choices=[KEEP, AUTO, *HAIR_COLORS], metavar="COLOUR",
                   help=f'"{KEEP}" (default: the colour read from the photo), "{AUTO}" (the model chooses) '
                        f"or one of: {', '.join(HAIR_COLORS)}")
    t.add_argument("--hair-strength", type=_fraction, default=1.0, metavar="0-1",
                   help="0 leaves the hair colour to the model, 1 applies it fully (default 1)")
    t.add_argument("--eye", default=AUTO, choices=[AUTO, *EYE_COLORS], metavar="COLOUR",
                   help=f'"{AUTO}" (default: the model chooses) or one of: {", ".join(EYE_COLORS)}')
    t.add_argument("--eye-strength", type=_fraction, default=1.0, metavar="0-1",
                   help="0 leaves the eye colour to the model, 1 applies it fully (default 1)")
    t.add_argument("--reference", metavar="IMAGE", default=None,
                   help="an anime image whose hair style and accessories the portraits take")
    t.add_argument("--paste", action="store_true",
                   help="also write the photo with the anime faces pasted back (JPEG, long side at most 2000 px)")
    t.add_argument("--no-upscale", action="store_true",
                   help="bring the portraits to 256 px with a plain Lanczos resize, not the anime upscaler")
    t.add_argument("--keep-background", action="store_true",
                   help="translate what is behind the person too, instead of a plain light background")
    t.add_argument("--max-faces", type=_positive_int, default=4, metavar="N",
                   help="translate at most this many faces per photo, largest first (default 4)")
    t.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), metavar="FOLDER_OR_REPO",
                   help="checkpoint folder or Hugging Face Hub repo id (default: the bundled one)")
    t.add_argument("--device", default="auto", help="auto (CUDA with fp16 when available, else CPU), cpu, cuda, cuda:1")
    t.add_argument("--overwrite", action="store_true", help="translate files whose outputs already exist again")
    t.set_defaults(run=run_translate)

    u = sub.add_parser("push", help="upload a checkpoint folder, or the app as a Space, to the Hugging Face Hub",
                       formatter_class=raw, description=PUSH_HELP, epilog="examples:\n  " + "\n  ".join(EXAMPLES[1:]),
                       usage="python -m twingan push [-h] [--private] [--dry-run] (CHECKPOINT REPO_ID | --space REPO_ID)")
    u.add_argument("targets", nargs="+", metavar="CHECKPOINT REPO_ID",
                   help="the checkpoint folder and the repo id (user/name); with --space only the repo id")
    u.add_argument("--space", action="store_true", help="upload the app from this repository as a Gradio Space")
    u.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its visibility)")
    u.add_argument("--dry-run", action="store_true", help="list the files and sizes that would be uploaded; upload nothing")
    u.set_defaults(run=run_push)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "push":
        if len(args.targets) > 2:
            parser.error("push takes CHECKPOINT REPO_ID, or --space REPO_ID")
        args.checkpoint = args.targets[0] if len(args.targets) == 2 else None
        args.repo_id = args.targets[-1]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except CommandError as err:
        print(f"twingan {args.command}: {err}", file=sys.stderr)
        return 1
