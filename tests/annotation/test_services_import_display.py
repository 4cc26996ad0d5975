"""Images browsers cannot show (TIFF, PPM, BMP) get a PNG of the same pixels at import,
stored content-addressed beside the original: the pages show the PNG, scoring reads the
original, and the pixels are identical."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from annotation.errors import StudyImportError
from annotation.models import Image
from annotation.presenters import image_url
from annotation.services import study_import
from tests.images import write_png

pytestmark = pytest.mark.django_db

rng = np.random.default_rng(5)


def noise(mode: str, size=(40, 24)) -> PIL.Image.Image:
    w, h = size
    if mode == "RGB":
        return PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if mode == "L":
        return PIL.Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
    if mode == "RGBA":
        return PIL.Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))
    if mode == "I;16":
        return PIL.Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "CMYK":
        return PIL.Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "CMYK")
    raise ValueError(mode)


# (extension, Pillow format, mode): what a lab's folder holds.
CASES = [
    ("tif", "TIFF", "RGB"),
    ("tif", "TIFF", "L"),
    ("tif", "TIFF", "RGBA"),
    ("tif", "TIFF", "I;16"),
    ("ppm", "PPM", "RGB"),
    ("pgm", "PPM", "L"),
    ("bmp", "BMP", "RGB"),
]


def pixels(path: Path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        return np.asarray(image)


@pytest.mark.parametrize(("ext", "fmt", "mode"), CASES, ids=lambda v: str(v))
def test_a_display_png_with_the_same_pixels_is_stored(tmp_path, media_root, ext, fmt, mode):
    src = tmp_path / "src"
    (src / "s").mkdir(parents=True)
    originals = {}
    for stem in ("reference", "a"):
        path = src / f"s/{stem}.{ext}"
        noise(mode).save(path, format=fmt)
        originals[f"s/{stem}.{ext}"] = path
    study_import(source=src, slug="d", design="ref-vs-test")

    for image in Image.objects.filter(scene__study__slug="d"):
        assert image.format == fmt
        assert image.file.endswith(f".{ {'TIFF': 'tif', 'PPM': 'ppm', 'BMP': 'bmp'}[fmt] }")
        assert image.display_file.startswith("images/")
        assert image.display_file.endswith(".png")
        png = media_root / image.display_file
        with PIL.Image.open(png) as shown, PIL.Image.open(media_root / image.file) as stored:
            assert shown.format == "PNG"
            assert shown.mode == stored.mode
            # Lossless: the same values in the same mode, and so what scoring reads
            # (convert("RGB") of the original) is what the page shows.
            assert np.array_equal(np.asarray(shown), np.asarray(stored))
            assert np.array_equal(
                np.asarray(shown.convert("RGB")), np.asarray(stored.convert("RGB"))
            )
        # The original is stored unchanged: scoring reads its bytes.
        assert (media_root / image.file).read_bytes() == originals[image.name].read_bytes()
        assert image_url(image) == f"/media/{image.display_file}"


def test_a_mode_png_cannot_hold_is_shown_as_what_scoring_reads(tmp_path, media_root):
    """CMYK has no PNG form: the page shows its RGB conversion, which is exactly what the
    scoring worker reads (``convert("RGB")``)."""
    src = tmp_path / "src"
    (src / "s").mkdir(parents=True)
    for stem in ("reference", "a"):
        noise("CMYK").save(src / f"s/{stem}.tif", format="TIFF")
    study_import(source=src, slug="cmyk", design="ref-vs-test")
    for image in Image.objects.filter(scene__study__slug="cmyk"):
        with (
            PIL.Image.open(media_root / image.display_file) as shown,
            PIL.Image.open(media_root / image.file) as stored,
        ):
            assert stored.mode == "CMYK"
            assert shown.mode == "RGB"
            assert np.array_equal(np.asarray(shown), np.asarray(stored.convert("RGB")))


def test_images_browsers_show_get_no_copy(tmp_path, media_root):
    src = tmp_path / "src"
    write_png(src / "s/reference.png", size=(40, 24))
    noise("RGB").save(src / "s/a.jpg", format="JPEG", quality=95)
    noise("RGB").save(src / "s/b.webp", format="WEBP", lossless=True)
    study_import(source=src, slug="web", design="ref-vs-test")
    for image in Image.objects.filter(scene__study__slug="web"):
        assert image.display_file == ""
        assert image_url(image) == f"/media/{image.file}"


def test_a_refused_import_removes_the_display_pngs_too(tmp_path, media_root, snapshot):
    """All or nothing: a failure after some PNGs were made removes them with the originals."""
    src = tmp_path / "src"
    (src / "aaa").mkdir(parents=True)
    for stem in ("reference", "a", "b"):
        noise("RGB").save(src / f"aaa/{stem}.tif", format="TIFF")
    write_png(src / "zzz/reference.png", size=(48, 32))
    write_png(src / "zzz/wide.png", size=(64, 32), seed=4)
    before = snapshot()
    with pytest.raises(StudyImportError, match=r"zzz/wide\.png"):
        study_import(source=src, slug="refused", design="ref-vs-test")
    assert snapshot() == before
    assert not list(media_root.rglob("*.png"))
