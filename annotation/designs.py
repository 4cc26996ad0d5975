"""What each study design asks of a scene, and which pairs it compares. Pure functions."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Generic, Protocol, TypeVar

from annotation.errors import StudyImportError
from annotation.models import Design


class SceneImage(Protocol):
    name: str
    role: str


T = TypeVar("T", bound="SceneImage")


@dataclass(frozen=True)
class PlannedPair(Generic[T]):
    a: T
    b: T
    shown_reference: T | None
    gold_answer: str = ""  # "a" or "b" for gold pairs


def is_gold(image: "SceneImage") -> bool:
    """A gold image or the worked example's decoy: compared in no ordinary pair."""
    return bool(getattr(image, "gold", ""))


# Gold images with a gold pair, and the pair's answer; the worked example's decoy
# ("example") has none.
GOLD_ANSWERS = {"worse": "b", "better": "a"}


def gold_anchor(images: Sequence[T]) -> T | None:
    """What gold images are compared with: the reference, else the first image by name."""
    ordinary = sorted((image for image in images if not is_gold(image)), key=lambda i: i.name)
    return next((image for image in ordinary if image.role == "reference"), None) or next(
        iter(ordinary), None
    )


def plan_gold_pairs(
    design: str, images: Sequence[T], *, show_reference: bool = False
) -> Iterator[PlannedPair[T]]:
    """One gold pair per gold image: (gold image, anchor), with its known answer. The
    worked example's decoy gets none (it is never shown as a trial)."""
    anchor = gold_anchor(images)
    if anchor is None:
        return
    shown = gold_shown_reference(design, anchor, show_reference=show_reference)
    for image in sorted((i for i in images if i.gold in GOLD_ANSWERS), key=lambda i: i.name):
        yield PlannedPair(image, anchor, shown, gold_answer=GOLD_ANSWERS[image.gold])


def gold_shown_reference(design: str, anchor: T, *, show_reference: bool) -> T | None:
    """What a gold pair (or the worked example) shows between its images: the anchor, in
    a pairwise study that shows its reference."""
    return anchor if design == Design.PAIRWISE and show_reference else None


def needs_reference(design: str, *, show_reference: bool) -> bool:
    """ref-vs-test always compares against the reference; pairwise does when it shows it."""
    return design == Design.REF_VS_TEST or (design == Design.PAIRWISE and show_reference)


def is_full_reference(design: str) -> bool:
    """Designs whose scenes carry a reference that FR metrics score every image against."""
    return design in (Design.REF_VS_TEST, Design.PAIRWISE)


def check_scene_roles(
    design: str,
    scene: str,
    roles: Sequence[tuple[str, str]],
    *,
    show_reference: bool,
    reference_is_candidate: bool = True,
) -> None:
    """Refuse a scene whose roles do not fit the design. ``roles`` is (origin, role) per image."""
    references = [origin for origin, role in roles if role == "reference"]
    if len(references) > 1:
        raise StudyImportError(
            f"{references[1]}: scene {scene!r} has two references ({references[0]} and "
            f"{references[1]})"
        )
    if needs_reference(design, show_reference=show_reference) and not references:
        raise StudyImportError(
            f"scene {scene!r}: no reference image, which the {design} design needs "
            "(name its file 'reference.<ext>', give the reference's file name as the "
            "reference name, or set its role to reference in the manifest)"
        )
    tests = len(roles) - len(references)
    if design == Design.REF_VS_TEST and tests == 0:
        raise StudyImportError(f"scene {scene!r}: empty scene (a reference but no test images)")
    candidates = len(roles) if design != Design.PAIRWISE or reference_is_candidate else tests
    if design != Design.REF_VS_TEST and candidates < 2:
        raise StudyImportError(f"scene {scene!r}: empty scene (fewer than two images to compare)")


def plan_pairs(
    design: str,
    images: Sequence[T],
    *,
    show_reference: bool = False,
    reference_is_candidate: bool = True,
) -> Iterator[PlannedPair[T]]:
    """The pairs of one scene, in a stable order (by image name).

    - ref-vs-test: (test, reference) for each test image; both are shown.
    - pairwise: every couple of candidates (the reference too, unless
      ``reference_is_candidate`` is false); the reference is shown between them when
      ``show_reference``.
    - nr-pairwise: every couple of images; nothing is shown as reference.
    """
    # Gold images are compared only in their gold pairs (plan_gold_pairs).
    ordered = sorted((i for i in images if not is_gold(i)), key=lambda image: image.name)
    reference = next((image for image in ordered if image.role == "reference"), None)
    if design == Design.REF_VS_TEST:
        if reference is None:
            raise StudyImportError("ref-vs-test needs a reference in every scene")
        for image in ordered:
            if image is not reference:
                yield PlannedPair(image, reference, None)
        return
    if design == Design.PAIRWISE:
        shown = reference if show_reference else None
        candidates = [
            image for image in ordered if reference_is_candidate or image is not reference
        ]
        for a, b in combinations(candidates, 2):
            yield PlannedPair(a, b, shown)
        return
    if design == Design.NR_PAIRWISE:
        for a, b in combinations(ordered, 2):
            yield PlannedPair(a, b, None)
        return
    raise StudyImportError(
        f"unknown design {design!r} (expected one of {', '.join(Design.values)})"
    )
