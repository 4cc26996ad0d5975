"""Gold decoys: a heavily degraded copy of an image, whose answer nobody can doubt."""

import io
from pathlib import Path

import PIL.Image
from PIL import ImageFilter

DECOY_CONDITION = "gold-decoy"


def write_decoy(source: Path, destination: Path) -> None:
    """Blur ``source`` strongly, compress it to JPEG quality 10, and save it as PNG.

    The PNG keeps the degraded pixels exactly; the size is the source's, so FR metrics
    and side-by-side display treat the decoy like any test image.
    """
    with PIL.Image.open(source) as image:
        rgb = image.convert("RGB")
    radius = max(2.0, min(rgb.size) / 40)
    buffer = io.BytesIO()
    rgb.filter(ImageFilter.GaussianBlur(radius)).save(buffer, format="JPEG", quality=10)
    buffer.seek(0)
    with PIL.Image.open(buffer) as degraded:
        degraded.convert("RGB").save(destination, format="PNG")
