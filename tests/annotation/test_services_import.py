"""study_import: folders and manifests become studies, scenes, images and pairs."""

import tracemalloc
from pathlib import Path

import pytest

from annotation import storage
from annotation.errors import InvalidSetting, StudyImportError
from annotation.models import Image, Pair, Scene, Study
from annotation.services import study_import
from tests.images import write_manifest, write_png, write_scene_folder

pytestmark = pytest.mark.django_db

ELEVEN = ["reference", *(f"method-{i}" for i in range(10))]


def test_pairwise_folder_of_eleven_images_per_scene_gives_55_pairs_per_scene(tmp_path):
    source = write_scene_folder(tmp_path / "src", {"scene-a": ELEVEN, "scene-b": ELEVEN})
    result = study_import(source=source, slug="sr", design="pairwise", show_reference=True)

    assert [(s.name, s.images, s.pairs) for s in result.scenes] == [
        ("scene-a", 11, 55),
        ("scene-b", 11, 55),
    ]
    study = Study.objects.get(slug="sr")
    assert study.pairs.count() == 110
    for scene in study.scenes.all():
        reference = scene.images.get(role="reference")
        assert reference.name == f"{scene.name}/reference.png"
        assert set(scene.pairs.values_list("shown_reference", flat=True)) == {reference.pk}
    method = Image.objects.get(name="scene-a/method-3.png")
    assert (method.condition, method.role, method.width, method.height) == (
        "method-3",
        "test",
        48,
        32,
    )


def test_ref_vs_test_manifest_pairs_each_test_image_with_its_reference(tmp_path):
    for name, seed in [("r1", 1), ("a", 2), ("b", 3), ("r2", 4), ("c", 5)]:
        write_png(tmp_path / "imgs" / f"{name}.png", seed=seed)
    manifest = write_manifest(
        tmp_path / "study.csv",
        [
            ("one", "imgs/r1.png", "reference", ""),
            ("one", "imgs/a.png", "test", "jpeg-q10"),
            ("two", "imgs/c.png", "test", "SUPIR"),
            ("one", "imgs/b.png", "test", "blur"),
            ("two", "imgs/r2.png", "reference", ""),
        ],
    )
    result = study_import(source=manifest, slug="diq", design="ref-vs-test", votes_per_pair=5)

    assert (result.images, result.pairs) == (5, 3)
    pairs = {
        (p.image_a.name, p.image_b.name, p.target_votes)
        for p in Pair.objects.select_related("image_a", "image_b")
    }
    assert pairs == {
        ("one/a.png", "one/r1.png", 5),
        ("one/b.png", "one/r1.png", 5),
        ("two/c.png", "two/r2.png", 5),
    }
    assert Image.objects.get(name="two/c.png").condition == "SUPIR"
    assert Image.objects.get(name="one/r1.png").condition == "reference"


def test_images_are_stored_once_by_content_whatever_their_name_or_study(tmp_path, media_root):
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "x", "y"]})
    first = study_import(source=source, slug="first", design="ref-vs-test")
    second = study_import(source=source, slug="second", design="nr-pairwise")

    assert (first.files_stored, second.files_stored) == (3, 0)
    for image in Image.objects.all():
        stored = media_root / image.file
        assert stored.read_bytes() == (source / image.name).read_bytes()
        assert storage.file_sha256(stored) == image.sha256
        assert image.file == f"images/{image.sha256[:2]}/{image.sha256[2:4]}/{image.sha256}.png"
    assert Image.objects.values("sha256").distinct().count() == 3
    assert Image.objects.count() == 6


def test_pairwise_reference_can_be_left_out_of_the_comparisons(tmp_path):
    source = write_scene_folder(tmp_path / "src", {"s": ELEVEN})
    result = study_import(source=source, slug="p", design="pairwise", reference_is_candidate=False)
    assert result.pairs == 45
    assert not Pair.objects.filter(image_a__role="reference").exists()
    assert not Pair.objects.filter(image_b__role="reference").exists()


def test_folder_reference_stem_is_configurable(tmp_path):
    source = write_scene_folder(tmp_path / "src", {"s": ["GT", "a", "b"]})
    study_import(source=source, slug="gt", design="ref-vs-test", reference_name="GT")
    assert Image.objects.get(role="reference").name == "s/GT.png"


@pytest.mark.slow
def test_import_streams_images_instead_of_holding_them_in_memory(tmp_path):
    """200 images of 512x512 would take 150 MB decoded; the import's peak stays far below."""
    source = write_scene_folder(
        tmp_path / "src",
        {f"s{i}": ["reference", "a", "b", "c"] for i in range(50)},
        size=(512, 512),
    )
    tracemalloc.start()
    try:
        result = study_import(source=source, slug="big", design="ref-vs-test")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.images == 200
    assert Scene.objects.count() == 50
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_progress_callbacks_report_the_total_then_each_image(tmp_path):
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a", "b"]})
    seen: list = []
    study_import(
        source=source,
        slug="p",
        design="ref-vs-test",
        on_total=lambda n: seen.append(("total", n)),
        on_image=lambda: seen.append("image"),
    )
    assert seen == [("total", 3), "image", "image", "image"]


def test_the_source_may_be_given_as_a_string(tmp_path):
    source = write_scene_folder(tmp_path / "src", {"s": ["a", "b"]})
    assert study_import(source=str(source), slug="s", design="nr-pairwise").pairs == 1


def test_hidden_files_in_a_scene_folder_are_ignored(tmp_path):
    source = write_scene_folder(tmp_path / "src", {"s": ["a", "b"]})
    (source / "s" / ".DS_Store").write_bytes(b"\0\1")
    assert study_import(source=source, slug="s", design="nr-pairwise").images == 2


def test_relative_manifest_paths_may_use_subfolders(tmp_path: Path):
    write_png(tmp_path / "data" / "refs" / "r.png", seed=1)
    write_png(tmp_path / "data" / "out" / "sr.png", seed=2)
    manifest = write_manifest(
        tmp_path / "data" / "m.csv",
        [("s", "refs/r.png", "reference", ""), ("s", "./out/sr.png", "test", "SR")],
    )
    result = study_import(source=manifest, slug="m", design="ref-vs-test")
    assert result.pairs == 1
    assert Image.objects.get(role="test").name == "s/sr.png"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"slug": "Not A Slug"}, "slug 'Not A Slug' is not valid"),
        ({"votes_per_pair": 0}, "votes_per_pair must be at least 1, not 0"),
        ({"gold_rate": 1.0}, r"gold_rate must be in \[0, 1\), not 1.0"),
        ({"show_reference": True}, "show_reference applies to the pairwise design only"),
    ],
)
def test_import_options_outside_their_domain_are_refused_before_reading(
    tmp_path, snapshot, options, message
):
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a"]})
    before = snapshot()
    with pytest.raises(InvalidSetting, match=message):
        study_import(**{"source": source, "slug": "ok", "design": "ref-vs-test", **options})
    assert snapshot() == before


def write_gold_manifest(tmp_path: Path, gold_values: dict[str, str]) -> Path:
    """A ref-vs-test manifest of one scene (reference, a, b, c) with a ``gold`` column."""
    rows = ["scene,path,role,condition,gold", "s,ref.png,reference,,"]
    for i, stem in enumerate(["a", "b", "c"]):
        write_png(tmp_path / f"{stem}.png", seed=i + 1)
        rows.append(f"s,{stem}.png,test,,{gold_values.get(stem, '')}")
    write_png(tmp_path / "ref.png", seed=0)
    manifest = tmp_path / "study.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_manifest_gold_rows_become_gold_pairs_only(tmp_path):
    manifest = write_gold_manifest(tmp_path, {"b": "worse", "c": "better"})
    result = study_import(source=manifest, slug="g", design="ref-vs-test", gold_rate=0.2)
    assert (result.pairs, result.gold_pairs) == (1, 2)
    gold = {
        p.image_a.name: (p.image_b.name, p.gold_answer)
        for p in Pair.objects.exclude(gold_answer="")
    }
    # The anchor is the reference; "worse" means the reference (b) is the known answer.
    assert gold == {"s/b.png": ("s/ref.png", "b"), "s/c.png": ("s/ref.png", "a")}
    assert list(Pair.objects.filter(gold_answer="").values_list("image_a__name", flat=True)) == [
        "s/a.png"
    ]
    # Gold rows in the source: no decoy is generated.
    assert not Image.objects.filter(condition="gold-decoy").exists()


@pytest.mark.parametrize(
    ("gold", "message"),
    [("maybe", "gold 'maybe' is not one of worse, better"), ("worse@ref", "role test")],
)
def test_bad_gold_values_are_refused_naming_the_line(tmp_path, gold, message, snapshot):
    before = snapshot()
    if gold == "worse@ref":
        manifest = write_gold_manifest(tmp_path, {})
        text = manifest.read_text().replace("s,ref.png,reference,,", "s,ref.png,reference,,worse")
        manifest.write_text(text)
    else:
        manifest = write_gold_manifest(tmp_path, {"a": gold})
    with pytest.raises(StudyImportError, match=r"study.csv line \d") as caught:
        study_import(source=manifest, slug="g", design="ref-vs-test")
    assert message in str(caught.value)
    assert snapshot() == before


def test_a_gold_rate_without_gold_rows_generates_one_decoy_per_scene(tmp_path):
    source = write_scene_folder(tmp_path / "src", {"x": ["reference", "a"], "y": ["p", "q"]})
    result = study_import(source=source, slug="d", design="nr-pairwise", gold_rate=0.1)
    assert result.gold_pairs == 2
    decoys = Image.objects.filter(condition="gold-decoy").order_by("name")
    assert [(d.name, d.gold, d.width, d.height) for d in decoys] == [
        ("x/gold-decoy.png", "worse", 48, 32),
        ("y/gold-decoy.png", "worse", 48, 32),
    ]
    # Anchored on the reference, or on the first image by name where there is none.
    anchors = dict(
        Pair.objects.exclude(gold_answer="").values_list("image_a__name", "image_b__name")
    )
    assert anchors == {"x/gold-decoy.png": "x/reference.png", "y/gold-decoy.png": "y/p.png"}
    assert result.pairs == 2  # the decoys are not compared in the study's own pairs
    assert (
        study_import(source=source, slug="d0", design="nr-pairwise", gold_rate=0.0).gold_pairs == 0
    )
