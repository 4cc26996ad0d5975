"""The field's formats in the export: A-FINE ``Triplet.txt`` and SRIQA-Bench MOS files."""

import pandas as pd
import pytest

from annotation.models import Image
from dataset.export import study_export
from tests.dataset.voting import QC_OFF, cast_votes
from tests.factories import ImageFactory, PairFactory, SceneFactory, StudyFactory, make_gold_pair

pytestmark = pytest.mark.django_db

# Votes that give each DiffIQA label of (test, reference): a = test better.
POSITIVE, SIMILAR, NEGATIVE = ["a", "a", "b"], ["similar", "similar", "a"], ["b", "b"]
NO_MAJORITY = ["a", "similar", "b"]


def ref_vs_test_study(scenes: dict[str, dict[str, list[str]]]):
    """A ref-vs-test study whose scene ``name`` has ``ref.png`` and one test image per key,
    with the given votes (annotators u0, u1, ...) against the reference."""
    study = StudyFactory(design="ref-vs-test", **QC_OFF)
    votes = []
    for scene_name, tests in scenes.items():
        scene = SceneFactory(study=study, name=scene_name)
        reference = ImageFactory(scene=scene, name=f"{scene_name}/ref.png", role="reference")
        for test, answers in tests.items():
            image = ImageFactory(scene=scene, name=f"{scene_name}/{test}.png")
            pair = PairFactory(scene=scene, image_a=image, image_b=reference)
            votes += [(f"u{n}", pair, answer) for n, answer in enumerate(answers)]
    cast_votes(study, votes)
    return study


def test_triplets_of_hand_worked_scenes(tmp_path):
    """Every label combination in one scene (two Positive, two Similar, two Negative: equal
    Positive and equal Negative couples are left out, both-Similar ones kept at 0.5), an
    image without a majority and one without votes left out, a scene with one labelled
    image (only its line against the reference), and a gold pair that is no test image."""
    study = ref_vs_test_study(
        {
            "bird": {
                "n1": NEGATIVE, "n2": NEGATIVE, "p1": POSITIVE, "p2": POSITIVE,
                "s1": SIMILAR, "s2": SIMILAR, "x": NO_MAJORITY,
            },
            "cat": {"t": NEGATIVE, "u": []},
        }
    )  # fmt: skip
    make_gold_pair(study)
    written = study_export(study=study, out=tmp_path, samples=5, formats=True)
    assert "Triplet" in [table.name for table in written]
    r, c = "bird/ref.png", "cat/ref.png"
    expected = [
        f"bird/n1.png,bird/p1.png,{r},0,0,1",
        f"bird/n1.png,bird/p2.png,{r},0,0,1",
        f"bird/n1.png,bird/s1.png,{r},0,0,0.5",
        f"bird/n1.png,bird/s2.png,{r},0,0,0.5",
        f"bird/n2.png,bird/p1.png,{r},0,0,1",
        f"bird/n2.png,bird/p2.png,{r},0,0,1",
        f"bird/n2.png,bird/s1.png,{r},0,0,0.5",
        f"bird/n2.png,bird/s2.png,{r},0,0,0.5",
        f"bird/p1.png,bird/s1.png,{r},1,1,0.5",
        f"bird/p1.png,bird/s2.png,{r},1,1,0.5",
        f"bird/p2.png,bird/s1.png,{r},1,1,0.5",
        f"bird/p2.png,bird/s2.png,{r},1,1,0.5",
        f"bird/s1.png,bird/s2.png,{r},0.5,0.5,0.5",
        f"bird/n1.png,{r},{r},0,0,0.5",
        f"bird/n2.png,{r},{r},0,0,0.5",
        f"bird/p1.png,{r},{r},1,1,0.5",
        f"bird/p2.png,{r},{r},1,1,0.5",
        f"bird/s1.png,{r},{r},0.5,0.5,0.5",
        f"bird/s2.png,{r},{r},0.5,0.5,0.5",
        f"cat/t.png,{c},{c},0,0,0.5",
    ]
    assert (tmp_path / "Triplet.txt").read_text().splitlines() == expected
    assert not (tmp_path / "mos").exists()
    assert "`Triplet.txt`" in (tmp_path / "README.md").read_text()


def test_a_positive_image_ranks_above_a_negative_one_in_either_order(tmp_path):
    """gt12 is 1 when the first image's label ranks above the second's: the couple is
    written in name order, so a Positive image named first gets 1."""
    study = ref_vs_test_study({"s": {"a": POSITIVE, "b": NEGATIVE, "c": SIMILAR}})
    study_export(study=study, out=tmp_path, samples=5, formats=True)
    lines = (tmp_path / "Triplet.txt").read_text().splitlines()
    assert lines[:3] == [
        "s/a.png,s/b.png,s/ref.png,1,1,0",
        "s/a.png,s/c.png,s/ref.png,1,1,0.5",
        "s/b.png,s/c.png,s/ref.png,0,0,0.5",
    ]


def test_mos_files_equal_the_image_scores(tmp_path):
    """Per scene, ``file.png,score`` lines with the Thurstone 0..100 score of
    ``image_scores``, best first; only pairwise studies get them, ref-vs-test no
    Triplet.txt in a pairwise study."""
    study = StudyFactory(design="pairwise", **QC_OFF)
    votes = []
    for scene_name in ("bird", "cat"):
        scene = SceneFactory(study=study, name=scene_name)
        images = [ImageFactory(scene=scene, name=f"{scene_name}/{n}.png") for n in "abcd"]
        ImageFactory(scene=scene, name=f"{scene_name}/ref.png", role=Image.Role.REFERENCE)
        for i, one in enumerate(images):
            for j, two in enumerate(images[i + 1 :], start=i + 1):
                pair = PairFactory(scene=scene, image_a=one, image_b=two)
                # The earlier letter wins mostly; c and d are close.
                answers = ["a", "a", "b"] if (i, j) != (2, 3) else ["a", "similar", "b"]
                if scene_name == "cat":
                    answers = [{"a": "b", "b": "a"}.get(x, x) for x in answers]
                votes += [(f"u{n}", pair, answer) for n, answer in enumerate(answers)]
    cast_votes(study, votes)
    study_export(study=study, out=tmp_path, samples=5, formats=True)
    scores = pd.read_csv(tmp_path / "image_scores.csv")
    assert not (tmp_path / "Triplet.txt").exists()
    assert sorted(p.name for p in (tmp_path / "mos").iterdir()) == ["bird.txt", "cat.txt"]
    for scene_name in ("bird", "cat"):
        rows = [
            line.split(",") for line in (tmp_path / "mos" / f"{scene_name}.txt").read_text().split()
        ]
        mine = scores[scores["scene"] == scene_name]
        expected = dict(zip(mine["image"], mine["thurstone_0_100"], strict=True))
        assert {f"{scene_name}/{file}": float(score) for file, score in rows} == pytest.approx(
            expected, abs=1e-9
        )
        values = [float(score) for _, score in rows]
        assert values == sorted(values, reverse=True)
        assert len(rows) == 4
    bird = [line.split(",")[0] for line in (tmp_path / "mos/bird.txt").read_text().split()]
    assert bird == ["a.png", "b.png", "c.png", "d.png"]
    # In cat the later letter wins; c and d have the same votes, so they tie, by name.
    cat = [line.split(",") for line in (tmp_path / "mos/cat.txt").read_text().split()]
    assert [file for file, _ in cat] == ["c.png", "d.png", "b.png", "a.png"]
    assert cat[0][1] == cat[1][1]
