"""Checking that a file is a whole, decodable image of an acceptable size."""

import warnings
from dataclasses import dataclass
from pathlib import Path

import PIL.Image

from annotation.errors import StudyImportError
from annotation.storage import EXTENSIONS

# Only the decoders of the formats the store keeps read a study's files: uploads come
# from strangers' zips, and Pillow's rarer decoders (EPS runs Ghostscript) stay unused.
DECODERS = tuple(EXTENSIONS)

# Formats every browser shows as they are. Others (TIFF, PPM, BMP, ...) get a PNG of the same
# pixels for display, stored beside the original (``Image.display_file``).
BROWSER_FORMATS = frozenset({"PNG", "JPEG", "GIF", "WEBP"})
# Pillow modes a PNG holds exactly; any other mode (CMYK, 32-bit integer, float, ...) is
# shown as its RGB(A) conversion, which is what scoring reads too (``convert("RGB")``).
PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B"})


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str


def inspect_image(path: Path, *, origin: str, max_pixels: int) -> ImageInfo:
    """Open, size-check and fully decode ``path``; raise ``StudyImportError`` naming ``origin``.

    The pixel count is read from the header and checked before any decoding, so a
    decompression bomb is refused without allocating its pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(path, formats=DECODERS) as image:
                width, height = image.size
                image_format = image.format or ""
                if width * height > max_pixels:
                    raise StudyImportError(
                        f"{origin}: {width}x{height} = {width * height:,} pixels exceeds the "
                        f"maximum of {max_pixels:,} (IQA_MAX_IMAGE_PIXELS); "
                        "refused as a possible decompression bomb"
                    )
                if getattr(image, "n_frames", 1) > 1:
                    raise StudyImportError(
                        f"{origin}: an animated or multi-page image ({image.n_frames} frames)"
                    )
                # load() decodes every pixel: a truncated file fails here, not later in a worker.
                image.load()
    except StudyImportError:
        raise
    except FileNotFoundError as exc:
        raise StudyImportError(f"{origin}: file not found") from exc
    except IsADirectoryError as exc:
        raise StudyImportError(f"{origin}: a folder, not an image file") from exc
    except PermissionError as exc:
        raise StudyImportError(f"{origin}: cannot read the file (permission denied)") from exc
    except PIL.UnidentifiedImageError as exc:
        raise StudyImportError(f"{origin}: not an image (unrecognised format)") from exc
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as exc:
        raise StudyImportError(
            f"{origin}: too many pixels, refused as a possible decompression bomb ({exc})"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise StudyImportError(f"{origin}: truncated or corrupt image ({exc})") from exc
    if width < 1 or height < 1:
        raise StudyImportError(f"{origin}: an image with no pixels")
    return ImageInfo(width=width, height=height, format=image_format)


def needs_display_copy(info: ImageInfo) -> bool:
    """Whether browsers cannot show the image's format, so a PNG copy is shown instead."""
    return info.format.upper() not in BROWSER_FORMATS


def write_display_png(source: Path, target: Path) -> None:
    """Write ``source``'s pixels to ``target`` as a PNG, losslessly for every mode a PNG
    holds (with its ICC profile, so browsers show the same colours)."""
    with PIL.Image.open(source, formats=DECODERS) as image:
        image.load()
        icc = image.info.get("icc_profile")
        if image.mode not in PNG_MODES:
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        image.save(target, format="PNG", **({"icc_profile": icc} if icc else {}))
