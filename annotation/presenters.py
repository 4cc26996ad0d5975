"""How an image is shown to a client: its URL and its native size.

The annotator API and the pages (``frontend.presenters``) both present images; they share
these rather than the pages importing the API's view module.
"""

from typing import Protocol

from django.conf import settings


class Sized(Protocol):
    width: int
    height: int


class Shown(Protocol):
    file: str
    display_file: str


def image_url(image: Shown | str) -> str:
    """The URL an image is shown at: its display PNG when its format is one browsers
    cannot show (``Image.display_file``), else its own file (content-addressed paths
    under MEDIA_ROOT). A plain path string is its own URL."""
    file = image if isinstance(image, str) else (image.display_file or image.file)
    return f"{settings.MEDIA_URL}{file}"


def image_size(image: Sized | None) -> dict | None:
    """The native size the page shows the image at (never rescaled), or None."""
    return None if image is None else {"width": image.width, "height": image.height}
