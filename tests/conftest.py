"""Shared fixtures: a tiny random TwinGAN (plus tagger and hair classifier) served by the app."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

# Before Gradio or huggingface_hub are imported: no telemetry, no Hub lookups.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / "examples" / "astronaut.png"


def data_root() -> Path:
    """The shared data folder: $TWINGAN_DATA, else ../shared/data next to the repository."""
    from train.config import default_data_root

    return Path(default_data_root())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> SimpleNamespace:
    """Random TwinGAN (32 px), tagger, human hair classifier, anime upscaler and portrait segmenter saved
    as checkpoint folders."""
    import torch

    from twingan import TwinGAN, TwinGANConfig, save_pretrained
    from twingan.segmenter import PortraitSegmenter, SegmenterConfig
    from twingan.tagger import HumanHairClassifier, HumanHairConfig, Tagger, TaggerConfig
    from twingan.upscaler import AnimeUpscaler, UpscalerConfig

    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    save_pretrained(TwinGAN(TwinGANConfig(resolution=32, base_channels=64, max_channels=32)), root / "twingan")
    # As a run with `reverse` exports it, so the app offers anime -> human.
    (root / "twingan" / "training.json").write_text('{"images_seen": 0, "step": 0, "config": {"reverse": true}}\n')
    save_pretrained(Tagger(TaggerConfig(resolution=32, channels=(8, 16))), root / "tagger")
    save_pretrained(HumanHairClassifier(HumanHairConfig(resolution=32, channels=(8, 16))), root / "hair")
    upscaler = AnimeUpscaler(UpscalerConfig(channels=8, blocks=1))
    torch.nn.init.normal_(upscaler.tail.weight, std=0.05)  # untrained it is exactly bicubic; this one is not
    save_pretrained(upscaler, root / "upscaler")
    save_pretrained(PortraitSegmenter(SegmenterConfig(resolution=32, channels=(4, 8))), root / "segmenter")
    return SimpleNamespace(twingan=root / "twingan", tagger=root / "tagger", hair=root / "hair",
                           upscaler=root / "upscaler", segmenter=root / "segmenter")


@pytest.fixture(scope="session")
def app_server(tiny_checkpoints, tmp_path_factory):
    """The app on localhost (in a background thread) with the tiny checkpoints and a small gallery."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("app")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(tmp / "examples-cache")  # never the repository's
    import app
    from twingan.pipeline import TranslationPipeline

    gallery = tmp / "gallery"
    for domain, colours in (("anime", ["#f29ac0", "#3a6fd8", "#3f9e4c"]), ("human", ["#7a4a2a"])):
        (gallery / domain).mkdir(parents=True)
        for i, colour in enumerate(colours):
            Image.new("RGB", (96, 96), colour).save(gallery / domain / f"{i}.png")
    Image.open(ASTRONAUT).crop((120, 20, 330, 230)).save(gallery / "human" / "astronaut-face.png")

    pipeline = TranslationPipeline.load(tiny_checkpoints.twingan, device="cpu", tagger=tiny_checkpoints.tagger,
                                        hair_classifier=tiny_checkpoints.hair, upscaler=tiny_checkpoints.upscaler,
                                        segmenter=tiny_checkpoints.segmenter)
    pipeline.build_index(gallery, cache_dir=tmp / "index-cache")
    demo = app.create_demo(pipeline)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            quiet=True, max_file_size=app.MAX_FILE_SIZE)
    yield SimpleNamespace(url=url, pipeline=pipeline, demo=demo, tmp=tmp)
    demo.close()
