"""The demo studies: built from scikit-image's photographs, once."""

import pytest
from django.core.management import call_command

from annotation.models import Image, Pair, Study

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_build_demo_creates_both_studies_once(capsys):
    call_command("build_demo")
    call_command("build_demo")
    out = capsys.readouterr().out
    # Images: the photographs' renderings, a gold decoy per scene and the worked example.
    assert (
        "Created demo study 'demo' (ref-vs-test): 4 scenes, 53 images, 44 pairs (+ 4 gold), live"
        in out
    )
    assert (
        "Created demo study 'demo-pairwise' (pairwise): 2 scenes, 25 images, 110 pairs "
        "(+ 2 gold), live" in out
    )
    assert "Demo studies already present" in out
    assert Study.objects.count() == 2

    pairwise = Study.objects.get(slug="demo-pairwise")
    assert pairwise.show_reference
    for scene in pairwise.scenes.all():
        assert scene.pairs.filter(gold_answer="").count() == 55
        assert scene.pairs.filter(shown_reference__role="reference").count() == 56
    demo = Study.objects.get(slug="demo")
    conditions = set(
        Image.objects.filter(scene__study=demo, role="test").values_list("condition", flat=True)
    )
    # Degradations that make the test worse and enhancements that can make it better.
    assert {"blur-s2.5", "jpeg-q8", "noise-s20", "contrast-0.6"} <= conditions
    assert {"sharpen-a0.8", "contrast-1.2", "original"} <= conditions
    assert Pair.objects.filter(study=demo, gold_answer="").count() == 44
    # Each scene's reference against its gold decoy; the reference is the known answer.
    gold = Pair.objects.filter(study=demo).exclude(gold_answer="")
    assert [(p.image_a.condition, p.image_b.role, p.gold_answer) for p in gold] == [
        ("gold-decoy", "reference", "b")
    ] * 4
    assert {s.status for s in Study.objects.all()} == {"live"}


def test_demo_test_images_differ_from_their_reference(media_root):
    call_command("build_demo")
    for scene_reference in Image.objects.filter(role="reference"):
        tests = Image.objects.filter(scene=scene_reference.scene, role="test")
        assert scene_reference.sha256 not in set(tests.values_list("sha256", flat=True))
        assert {(t.width, t.height) for t in tests} == {(384, 288)}
