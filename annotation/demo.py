"""Demo studies built from scikit-image's bundled photographs.

Each scene's reference is a slightly soft, slightly flat rendering of the photograph
(DiffIQA's references are not perfect either). Test images degrade it (blur, JPEG,
noise, low contrast) or enhance it (sharpening, contrast, the original photograph) at
several strengths, so some test images are better than their reference and some worse.
"""

import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
from PIL import ImageEnhance, ImageFilter

from annotation.models import Design, Study
from annotation.services import ImportResult, study_import

CROP = (288, 384)  # height, width: two or three fit side by side at native size

Transform = Callable[[PIL.Image.Image, PIL.Image.Image], PIL.Image.Image]


def _jpeg(image: PIL.Image.Image, quality: int) -> PIL.Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return PIL.Image.open(buffer).convert("RGB")


def _noise(image: PIL.Image.Image, sigma: float, seed: int) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(0.0, sigma, (*image.size[::-1], 3))
    return PIL.Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


# condition -> transform(reference, original photograph)
CONDITIONS: dict[str, Transform] = {
    "blur-s1.0": lambda ref, orig: ref.filter(ImageFilter.GaussianBlur(1.0)),
    "blur-s2.5": lambda ref, orig: ref.filter(ImageFilter.GaussianBlur(2.5)),
    "jpeg-q30": lambda ref, orig: _jpeg(ref, 30),
    "jpeg-q8": lambda ref, orig: _jpeg(ref, 8),
    "noise-s6": lambda ref, orig: _noise(ref, 6.0, seed=6),
    "noise-s20": lambda ref, orig: _noise(ref, 20.0, seed=20),
    "contrast-0.6": lambda ref, orig: ImageEnhance.Contrast(ref).enhance(0.6),
    "contrast-1.2": lambda ref, orig: ImageEnhance.Contrast(ref).enhance(1.2),
    "sharpen-a0.8": lambda ref, orig: ref.filter(ImageFilter.UnsharpMask(2, 80, 0)),
    "sharpen-a4.0": lambda ref, orig: ref.filter(ImageFilter.UnsharpMask(3, 400, 0)),
    "original": lambda ref, orig: orig,
}

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")

DEMO_STUDIES = {
    "demo": {
        "design": Design.REF_VS_TEST,
        "scenes": PHOTOS,
        "conditions": tuple(CONDITIONS),
        "title": "Demo: is the test image worse, similar or better than the reference?",
    },
    "demo-pairwise": {
        "design": Design.PAIRWISE,
        "scenes": ("astronaut", "coffee"),
        # 10 test images plus the reference: C(11, 2) = 55 pairs per scene.
        "conditions": tuple(c for c in CONDITIONS if c != "contrast-1.2"),
        "title": "Demo: with the reference in the middle, which of A and B looks better?",
        "show_reference": True,
    },
}


def _photograph(name: str) -> PIL.Image.Image:
    import skimage.data

    pixels = getattr(skimage.data, name)()
    height, width = pixels.shape[:2]
    top, left = (height - CROP[0]) // 2, (width - CROP[1]) // 2
    crop = pixels[top : top + CROP[0], left : left + CROP[1]]
    return PIL.Image.fromarray(crop).convert("RGB")


def _reference(original: PIL.Image.Image) -> PIL.Image.Image:
    soft = original.filter(ImageFilter.GaussianBlur(0.8))
    return ImageEnhance.Contrast(soft).enhance(0.85)


def write_demo_folder(
    folder: Path, *, scenes: tuple[str, ...], conditions: tuple[str, ...]
) -> None:
    """Write ``folder/<scene>/{reference,<condition>}.png`` for the given photographs."""
    for scene in scenes:
        original = _photograph(scene)
        reference = _reference(original)
        scene_dir = folder / scene
        scene_dir.mkdir(parents=True, exist_ok=True)
        reference.save(scene_dir / "reference.png")
        for condition in conditions:
            CONDITIONS[condition](reference, original).save(scene_dir / f"{condition}.png")


def demo_build(*, owner=None) -> list[ImportResult]:
    """Import the demo studies that do not exist yet, owned by ``owner`` (a user);
    returns what was created."""
    created = []
    for slug, spec in DEMO_STUDIES.items():
        if Study.objects.filter(slug=slug).exists():
            continue
        with tempfile.TemporaryDirectory(prefix="iqa-demo-") as tmp:
            write_demo_folder(Path(tmp), scenes=spec["scenes"], conditions=spec["conditions"])
            created.append(
                study_import(
                    source=Path(tmp),
                    slug=slug,
                    design=spec["design"],
                    title=spec["title"],
                    show_reference=spec.get("show_reference", False),
                    votes_per_pair=3 if spec["design"] == Design.REF_VS_TEST else 10,
                    # Open to annotators at once, with one gold decoy per scene.
                    gold_rate=0.1,
                    practice_trials=2,
                    trials_per_session=40,
                    live=True,
                    owner=owner,
                )
            )
    return created
