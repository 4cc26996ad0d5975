"""Pair generation and scene checks per design (pure functions, hand-checked counts)."""

from dataclasses import dataclass

import pytest

from annotation.designs import check_scene_roles, plan_pairs
from annotation.errors import StudyImportError


@dataclass(frozen=True)
class Img:
    name: str
    role: str = "test"


def scene(n_tests: int, *, reference: bool = True) -> list[Img]:
    images = [Img(f"s/t{i:02d}.png") for i in range(n_tests)]
    return ([Img("s/reference.png", "reference")] if reference else []) + images


def test_ref_vs_test_gives_one_pair_per_test_image_against_the_reference():
    images = scene(10)
    pairs = list(plan_pairs("ref-vs-test", images))
    assert len(pairs) == 10
    assert {p.a.name for p in pairs} == {f"s/t{i:02d}.png" for i in range(10)}
    assert all(p.b.role == "reference" and p.shown_reference is None for p in pairs)


def test_pairwise_scene_of_eleven_images_gives_55_pairs_with_the_reference_as_candidate():
    pairs = list(plan_pairs("pairwise", scene(10)))
    assert len(pairs) == 55  # C(11, 2)
    assert sum(1 for p in pairs if "reference" in (p.a.role, p.b.role)) == 10
    assert all(p.shown_reference is None for p in pairs)


def test_pairwise_shows_the_reference_as_context_when_asked():
    pairs = list(plan_pairs("pairwise", scene(10), show_reference=True))
    assert len(pairs) == 55
    assert {p.shown_reference.name for p in pairs} == {"s/reference.png"}


def test_pairwise_without_the_reference_as_candidate_compares_only_test_images():
    pairs = list(plan_pairs("pairwise", scene(10), reference_is_candidate=False))
    assert len(pairs) == 45  # C(10, 2)
    assert all(p.a.role == p.b.role == "test" for p in pairs)


def test_nr_pairwise_compares_all_images_and_shows_no_reference():
    pairs = list(plan_pairs("nr-pairwise", scene(5, reference=False)))
    assert len(pairs) == 10  # C(5, 2)
    assert all(p.shown_reference is None for p in pairs)


def test_every_unordered_couple_appears_once_in_a_stable_order():
    first = [(p.a.name, p.b.name) for p in plan_pairs("pairwise", scene(6)[::-1])]
    second = [(p.a.name, p.b.name) for p in plan_pairs("pairwise", scene(6))]
    assert first == second
    assert len({frozenset(pair) for pair in first}) == len(first) == 21


@pytest.mark.parametrize(
    ("design", "roles", "show", "message"),
    [
        ("ref-vs-test", ["test", "test"], False, "no reference image"),
        ("pairwise", ["test", "test"], True, "no reference image"),
        ("pairwise", ["reference", "reference", "test"], False, "two references"),
        ("ref-vs-test", ["reference"], False, "empty scene"),
        ("nr-pairwise", ["test"], False, "empty scene"),
    ],
)
def test_scene_roles_that_do_not_fit_the_design_are_refused(design, roles, show, message):
    with pytest.raises(StudyImportError, match=message):
        check_scene_roles(
            design, "s", [(f"s/{i}.png", r) for i, r in enumerate(roles)], show_reference=show
        )


def test_pairwise_without_a_shown_reference_needs_no_reference():
    check_scene_roles("pairwise", "s", [("a", "test"), ("b", "test")], show_reference=False)
    assert len(list(plan_pairs("pairwise", scene(2, reference=False)))) == 1
