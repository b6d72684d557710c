"""The app in a real browser: headless Chromium (playwright) uploads a photo, picks a hair colour,
clicks Translate and finds the portraits. Saves a screenshot to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import ASTRONAUT, ROOT
from samples import webcam_frame

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)", allow_module_level=True)

# Never let playwright fetch a browser or Chromium call home.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def page(playwright, app_server):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # a laptop screen
    page.set_default_timeout(60_000)
    page.goto(app_server.url, wait_until="domcontentloaded")
    yield page
    browser.close()


def in_viewport(page, selector: str) -> bool:
    """Whether the element's top-left and most of it are on screen without scrolling further."""
    box = page.locator(selector).first.bounding_box()
    view = page.viewport_size
    return box is not None and 0 <= box["y"] and box["y"] + min(box["height"], 200) <= view["height"] \
        and 0 <= box["x"] and box["x"] + box["width"] <= view["width"]


def test_upload_pick_hair_colour_translate(page):
    page.locator("#photo input[type=file]").set_input_files(str(ASTRONAUT))
    page.locator("#photo img").first.wait_for()  # the upload shows as a preview
    assert in_viewport(page, "#translate"), "the Translate button is below the fold at 1280x900"
    page.locator("#hair-color label", has_text="pink").click()
    assert page.locator("#hair-color input[value=pink]").is_checked()
    page.locator("#translate").click()
    portraits = page.locator("#portraits img")
    portraits.nth(1).wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('#portraits img')]"
                           ".every(img => img.complete && img.naturalWidth > 0)")
    assert portraits.count() == 2
    assert "1 face translated" in page.locator("#info").inner_text()
    page.wait_for_timeout(500)  # let a smooth scroll finish
    assert in_viewport(page, "#portraits img"), "the result appeared out of view"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_translate.png"))  # what the user sees at 1280x900


def test_no_face_shows_the_error_and_the_page_keeps_working(page, tmp_path):
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:256, 0:256]
    Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8)).save(tmp_path / "gradient.png")
    page.reload(wait_until="domcontentloaded")
    page.locator("#photo input[type=file]").set_input_files(str(tmp_path / "gradient.png"))
    page.locator("#photo img").first.wait_for()
    page.locator("#translate").click()
    toast = page.get_by_text("No face found in the image").first
    toast.wait_for()
    page.wait_for_timeout(500)  # let the toast finish sliding in
    assert toast.is_visible() and in_viewport(page, "text=No face found in the image")
    assert page.locator("#portraits img").count() == 0  # no stale or broken result
    assert "Traceback" not in page.content()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_no_face.png"))  # the toast is fixed to the viewport
    # The app still translates a good photo afterwards.
    page.reload(wait_until="domcontentloaded")
    page.locator("#photo input[type=file]").set_input_files(str(ASTRONAUT))
    page.locator("#photo img").first.wait_for()
    page.locator("#translate").click()
    page.locator("#portraits img").nth(1).wait_for()
    assert "1 face translated" in page.locator("#info").inner_text()


def test_live_mode_translates_webcam_frames_continuously(playwright, app_server, tmp_path):
    """Chromium's fake camera plays a clip of the example photo; the Live tab must keep translating."""
    import time

    import numpy as np

    ycc = np.asarray(webcam_frame().convert("YCbCr"))
    clip = tmp_path / "face.y4m"  # raw YUV 4:2:0 video, the format Chromium's fake camera reads
    with open(clip, "wb") as f:
        f.write(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n")
        for _ in range(5):
            f.write(b"FRAME\n" + ycc[..., 0].tobytes() + ycc[::2, ::2, 1].tobytes() + ycc[::2, ::2, 2].tobytes())
    camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              f"--use-file-for-fake-video-capture={clip}"]

    pipeline = app_server.pipeline
    calls = []
    translate_frame = pipeline.translate_frame
    pipeline.translate_frame = lambda *a, **k: calls.append(time.perf_counter()) or translate_frame(*a, **k)
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS + camera)
        page = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["camera"]).new_page()
        page.set_default_timeout(60_000)
        page.goto(app_server.url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Live").click()
        page.get_by_text("Click to Access Webcam").click()
        page.get_by_role("button", name="capture photo").click()  # start streaming
        page.locator("#live img").first.wait_for()
        page.wait_for_timeout(4000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser_live.png"))
        browser.close()
    finally:
        del pipeline.translate_frame  # back to the class's method
    assert len(calls) >= 3, f"only {len(calls)} frames translated"
    print(f"live mode in the browser: {(len(calls) - 1) / (calls[-1] - calls[0]):.1f} frames/s")


def test_anime_to_human_tab_translates_an_upload(page, tmp_path):
    from PIL import Image

    Image.new("RGB", (300, 200), "#f29ac0").save(tmp_path / "anime.png")
    page.reload(wait_until="domcontentloaded")
    page.get_by_role("tab", name="Anime to human").click()
    page.locator("#anime-in input[type=file]").set_input_files(str(tmp_path / "anime.png"))
    page.locator("#anime-in img").first.wait_for()
    page.locator("#translate-reverse").click()
    page.locator("#humans img").nth(1).wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('#humans img')]"
                           ".every(img => img.complete && img.naturalWidth > 0)")
    assert page.locator("#humans img").count() == 2
    assert "Traceback" not in page.content()
