"""Gold decoys: a heavily degraded copy of an image, whose answer nobody can doubt.

Two kinds, made at import from the scene's gold anchor: the gold decoy of each scene
(its gold pair checks annotators) and one example decoy per study, shown with its answer
as the instructions page's worked example. The example decoy is degraded differently and
is in no pair, so the worked example never gives away a gold trial's answer.
"""

import io
from pathlib import Path

import PIL.Image
from PIL import ImageFilter

DECOY_CONDITION = "gold-decoy"
EXAMPLE_CONDITION = "worked-example"


def write_decoy(source: Path, destination: Path) -> None:
    """Blur ``source`` strongly, compress it to JPEG quality 10, and save it as PNG.

    The PNG keeps the degraded pixels exactly; the size is the source's, so FR metrics
    and side-by-side display treat the decoy like any test image.
    """
    with PIL.Image.open(source) as image:
        rgb = image.convert("RGB")
    radius = max(2.0, min(rgb.size) / 40)
    _save_as_jpeg_q10_png(rgb.filter(ImageFilter.GaussianBlur(radius)), destination)


def write_example_decoy(source: Path, destination: Path) -> None:
    """Pixelate ``source`` into blocks of about a twentieth of its shorter side, compress
    it to JPEG quality 10, and save it as PNG (the source's size): plainly worse, and
    unlike the blurred gold decoys."""
    with PIL.Image.open(source) as image:
        rgb = image.convert("RGB")
    block = max(4, min(rgb.size) // 20)
    small = rgb.resize(
        (max(1, rgb.width // block), max(1, rgb.height // block)), PIL.Image.Resampling.BOX
    )
    _save_as_jpeg_q10_png(small.resize(rgb.size, PIL.Image.Resampling.NEAREST), destination)


def _save_as_jpeg_q10_png(rgb: PIL.Image.Image, destination: Path) -> None:
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=10)
    buffer.seek(0)
    with PIL.Image.open(buffer) as degraded:
        degraded.convert("RGB").save(destination, format="PNG")
