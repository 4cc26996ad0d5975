"""How an image is shown to a client: its URL and its native size.

The annotator API and the pages (``frontend.presenters``) both present images; they share
these rather than the pages importing the API's view module.
"""

from typing import Protocol

from django.conf import settings


class Sized(Protocol):
    width: int
    height: int


def image_url(file: str) -> str:
    """The URL of a stored image file (its content-addressed path under MEDIA_ROOT)."""
    return f"{settings.MEDIA_URL}{file}"


def image_size(image: Sized | None) -> dict | None:
    """The native size the page shows the image at (never rescaled), or None."""
    return None if image is None else {"width": image.width, "height": image.height}
