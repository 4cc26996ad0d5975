"""Real headless Chromium (Debian's package) driven by Playwright, against gunicorn."""

import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from annotation.models import Design, Study
from annotation.services import study_import
from annotation.services.studies import study_configure
from tests.conftest import ARTIFACTS
from tests.images import write_scene_folder

SCREENS = ARTIFACTS / "screens"


@pytest.fixture
def open_page(chromium) -> Iterator:
    """``open_page(url, dpr=1, width=1280, height=800)``: a fresh browser context's page.
    Page errors fail the test."""
    contexts, errors = [], []

    def open_(url: str, *, dpr: float = 1, width: int = 1280, height: int = 800):
        context = chromium.new_context(
            viewport={"width": width, "height": height}, device_scale_factor=dpr
        )
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, f"errors in the page: {errors}"


@dataclass
class Site:
    """The web server, its media folder, and studies made for it."""

    url: str
    media: Path
    tmp: Path

    def study(self, **options: object) -> Study:
        return make_study(self.tmp, **options)


@pytest.fixture
def site(web_server, media_root: Path, tmp_path: Path) -> Site:
    return Site(url=web_server.url, media=media_root, tmp=tmp_path)


def screenshot(page, name: str) -> Path:
    """Keep a screenshot of a screen as a test artifact (test-artifacts/screens)."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    page.screenshot(path=path)
    return path


def make_study(
    tmp_path: Path,
    *,
    slug: str = "page",
    design: str = Design.REF_VS_TEST,
    scenes: int = 2,
    tests_per_scene: int = 2,
    size: tuple[int, int] = (96, 64),
    show_reference: bool = False,
    break_every: int = 0,
    **settings: object,
) -> Study:
    """A live study imported from real noise PNGs (every pixel differs between images).
    Its one annotator usually answers every pair before a quota: a counted trial earns
    the completion code (``min_counted_trials`` 1) unless a test says otherwise."""
    stems = ["reference", *(f"t{i}" for i in range(tests_per_scene))]
    folder = write_scene_folder(
        tmp_path / slug, {f"s{s}": stems for s in range(scenes)}, size=size, seed=7
    )
    defaults = {"votes_per_pair": 1, "practice_trials": 0, "gold_rate": 0.0}
    min_counted = settings.pop("min_counted_trials", 1)
    study_import(
        source=folder,
        slug=slug,
        design=design,
        show_reference=show_reference,
        live=True,
        **{**defaults, **settings},
    )
    shutil.rmtree(folder)
    study = Study.objects.get(slug=slug)
    return study_configure(
        study=study, break_every=break_every, min_counted_trials=min_counted or "off"
    )


def media_pixels(media_root: Path, url: str) -> np.ndarray:
    """The RGB pixels of the stored file behind an image URL (/media/images/...)."""
    relative = url.split("/media/", 1)[1]
    with PIL.Image.open(media_root / relative) as image:
        return np.asarray(image.convert("RGB"))


def shot_pixels(page, box) -> np.ndarray:
    """What the screen shows in an element's box, in device pixels."""
    rect = box.bounding_box()
    png = page.screenshot(clip=rect, scale="device")
    with PIL.Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))
