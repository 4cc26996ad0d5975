"""The instructions page's worked example: a pair made for it at import (the example decoy
beside its scene's anchor), never issued as a trial, so gold trials stay unspoiled."""

import pytest

from annotation import selectors
from annotation.models import Image, Pair, Trial
from annotation.services.imports import study_import
from tests.annotation.sessions import open_session, run_session
from tests.images import write_manifest, write_png, write_scene_folder

pytestmark = pytest.mark.django_db


def shown_images(pair: Pair) -> set[int]:
    return {pair.image_a_id, pair.image_b_id}


def test_a_study_with_gold_gets_an_example_decoy_of_its_own_in_no_pair(tmp_path):
    source = write_scene_folder(
        tmp_path / "src", {"x": ["reference", "a", "b"], "y": ["reference", "q"]}
    )
    study = study_import(source=source, slug="g", design="ref-vs-test", gold_rate=0.3).study
    (decoy,) = Image.objects.filter(scene__study=study, gold=Image.Gold.EXAMPLE)
    assert (decoy.name, decoy.condition, decoy.role) == (
        "x/worked-example.png",
        "worked-example",
        "test",
    )
    assert (decoy.width, decoy.height) == (48, 32)
    # In no pair at all: neither an ordinary pair nor a gold pair can show it.
    assert not Pair.objects.filter(image_a=decoy).exists()
    assert not Pair.objects.filter(image_b=decoy).exists()
    # Its pixels are not a gold decoy's (those are blurred; this one is pixelated).
    gold_files = set(Image.objects.filter(gold=Image.Gold.WORSE).values_list("file", flat=True))
    assert len(gold_files) == 2
    assert decoy.file not in gold_files

    example = selectors.study_example_pair(study=study)
    assert example.worse == decoy
    assert example.better == Image.objects.get(name="x/reference.png")
    assert example.reference is None  # ref-vs-test shows the reference as one of the two
    # No gold pair shows the example's two images: its answer gives away no gold trial.
    gold_pairs = Pair.objects.filter(study=study).exclude(gold_answer="")
    assert gold_pairs.count() == 2
    assert all(shown_images(p) != {decoy.pk, example.better.pk} for p in gold_pairs)


def test_gold_rows_of_a_manifest_also_get_an_example_and_a_study_without_gold_none(tmp_path):
    for name in ("ref", "a", "b"):
        write_png(tmp_path / f"{name}.png", seed=len(name))
    manifest = write_manifest(
        tmp_path / "study.csv",
        [("s", "ref.png", "reference", ""), ("s", "a.png", "test", "m1"),
         ("s", "b.png", "test", "m2")],
    )  # fmt: skip
    plain = study_import(source=manifest, slug="plain", design="ref-vs-test").study
    assert selectors.study_example_pair(study=plain) is None
    assert not Image.objects.filter(gold=Image.Gold.EXAMPLE).exists()

    source = write_scene_folder(tmp_path / "pw", {"s": ["reference", "a", "b"]})
    shown = study_import(
        source=source, slug="pw", design="pairwise", show_reference=True, gold_rate=0.2
    ).study
    example = selectors.study_example_pair(study=shown)
    assert example.better.name == example.reference.name == "s/reference.png"


@pytest.mark.parametrize("ahead", [False, True], ids=["one-by-one", "ahead"])
def test_the_example_pair_is_never_issued_as_a_trial(impl, tmp_path, ahead):
    """Sessions through practice (gold pairs first), gold trials at a high rate and counted
    trials until nothing is left never see the example decoy; every gold trial is a gold
    pair whose images the worked example does not show together."""
    scenes = {"x": ["reference", "a", "b"], "y": ["r", "s"], "z": ["u", "v"]}
    study = study_import(
        source=write_scene_folder(tmp_path / "src", scenes), slug="g", design="nr-pairwise",
        gold_rate=0.9, live=True, practice_trials=1, votes_per_pair=2,
    ).study  # fmt: skip
    example = selectors.study_example_pair(study=study)
    for _ in range(4):
        run_session(open_session(study), ahead=ahead)
    trials = Trial.objects.filter(session__study=study).select_related("pair")
    assert {t.kind for t in trials} == {"practice", "gold", "label"}
    assert not trials.filter(pair__image_a=example.worse).exists()
    assert not trials.filter(pair__image_b=example.worse).exists()
    for trial in trials.filter(kind="gold"):
        assert trial.pair.gold_answer in ("a", "b")
        assert shown_images(trial.pair) != {example.worse.pk, example.better.pk}
    assert trials.filter(kind="gold").exists()
