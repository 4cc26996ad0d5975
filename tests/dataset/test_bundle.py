"""``export_study SLUG --bundle FILE.zip [--with-images]``: one deterministic archive."""

import hashlib
import io
import re
import zipfile
from io import StringIO

import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.models import Pair, Study
from annotation.services import study_import
from annotation.storage import media_root
from dataset.bundle import FIXED_TIME, study_bundle
from dataset.export import TABLES
from tests.dataset.voting import QC_OFF, cast_votes
from tests.images import write_scene_folder

pytestmark = pytest.mark.django_db


def voted(tmp_path, design: str, scenes: dict[str, list[str]]) -> Study:
    """An imported study (real image files) with three annotators' votes on every pair."""
    source = write_scene_folder(tmp_path / "src", scenes)
    study_import(source=source, slug=design, design=design)
    study = Study.objects.get(slug=design)
    Study.objects.filter(pk=study.pk).update(**QC_OFF)
    study.refresh_from_db()
    pattern = [["a", "a", "b"], ["similar", "b", "b"], ["a", "similar", "similar"]]
    pairs = Pair.objects.filter(study=study).order_by("scene__name", "image_a__name", "id")
    cast_votes(
        study,
        [(f"u{n}", pair, pattern[i % 3][n]) for i, pair in enumerate(pairs) for n in range(3)],
    )
    return study


def bundle(study: Study, path, *options: str) -> bytes:
    call_command("export_study", study.slug, "--bundle", str(path), "--samples", "20",
                 *options, stdout=StringIO())  # fmt: skip
    return path.read_bytes()


def test_a_closed_studys_bundle_is_byte_identical_and_its_datasheet_checksums_match(tmp_path):
    """Built twice, a closed study's bundle has the same bytes; members carry a fixed time
    and come in a fixed order (tables, formats and metadata, then images, then the pairs'
    image copies, each by name, the datasheet last); the datasheet lists every other
    member with its sha256 and size, has no timestamp, and names the platform and library
    versions, the settings, the counts and the quality-control rules; Triplet.txt comes
    with ref-vs-test."""
    study = voted(tmp_path, "ref-vs-test", {"s1": ["reference", "a", "b", "c"], "s2": [
        "reference", "d", "e"]})  # fmt: skip
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    first = bundle(study, tmp_path / "one.zip", "--with-images")
    second = bundle(study, tmp_path / "two.zip", "--with-images")
    assert first == second
    archive = zipfile.ZipFile(io.BytesIO(first))
    names = archive.namelist()
    assert names[-1] == "README.md"
    copies = {"images": [], "pairs": []}
    for name in names:
        folder = name.split("/")[0]
        if folder in copies and not name.endswith("/metadata.jsonl"):
            copies[folder].append(name)
    files = [name for name in names[:-1] if name not in copies["images"] + copies["pairs"]]
    assert names[:-1] == sorted(files) + sorted(copies["images"]) + sorted(copies["pairs"])
    assert len(copies["images"]) == len(copies["pairs"]) == 7
    assert {f"{table}.csv" for table in TABLES} | {"Triplet.txt"} <= set(names)
    assert {info.date_time for info in archive.infolist()} == {FIXED_TIME}
    sheet = archive.read("README.md").decode()
    listed = dict(re.findall(r"^\| `([^`]+)` \| \d+ \| `([0-9a-f]{64})` \|$", sheet, re.M))
    assert set(listed) == set(names) - {"README.md"}
    for name, digest in listed.items():
        assert hashlib.sha256(archive.read(name)).hexdigest() == digest
    assert not re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", sheet)
    facts = ("iqa-preference-platform 0.1.0", "pandas ", "design: ref-vs-test",
             "votes per pair: 3", "## Exclusions", "Rules: ", "## Counts", "pairs: 5")  # fmt: skip
    for fact in facts:
        assert fact in sheet
    votes = pd.read_csv(archive.open("votes.csv"))
    assert len(votes) == 15
    triplets = archive.read("Triplet.txt").decode().splitlines()
    assert len(triplets) >= 5
    assert all(line.count(",") == 5 for line in triplets)


def test_with_images_the_images_equal_the_originals_byte_for_byte(tmp_path):
    """Every image of the study (the reference too) is in the bundle under
    ``images/<stable name>`` (and ``pairs/<stable name>``) with the stored file's bytes;
    without the flag, none are; a
    pairwise study's bundle has its MOS files and no Triplet.txt."""
    study = voted(tmp_path, "pairwise", {"s1": ["reference", "a", "b"], "s2": ["x", "y"]})
    with zipfile.ZipFile(io.BytesIO(bundle(study, tmp_path / "b.zip", "--with-images"))) as z:
        images = [name for name in z.namelist() if name.startswith("images/")]
        stored = dict(study.scenes.values_list("images__name", "images__file"))
        assert sorted(images) == sorted(
            [f"images/{name}" for name in stored] + ["images/metadata.jsonl"]
        )
        for name, file in stored.items():
            assert z.read(f"images/{name}") == (media_root() / file).read_bytes()
            # The Hugging Face pairs configuration's copy (every image here is in a pair).
            assert z.read(f"pairs/{name}") == (media_root() / file).read_bytes()
        assert {"mos/s1.txt", "mos/s2.txt"} <= set(z.namelist())
        assert "Triplet.txt" not in z.namelist()
    with zipfile.ZipFile(io.BytesIO(bundle(study, tmp_path / "plain.zip"))) as z:
        assert not [name for name in z.namelist() if name.startswith("images/")]


def test_a_live_studys_datasheet_says_when_it_was_exported(tmp_path):
    study = voted(tmp_path, "pairwise", {"s1": ["a", "b"]})
    result = study_bundle(study=study, path=tmp_path / "live.zip", samples=5)
    sheet = zipfile.ZipFile(result.path).read("README.md").decode()
    assert re.search(r"Exported \d{4}-\d{2}-\d{2}T\d{2}:\d{2}", sheet)


def test_a_missing_image_file_is_refused_and_nothing_is_written(tmp_path):
    study = voted(tmp_path, "pairwise", {"s1": ["a", "b"]})
    image = study.scenes.get().images.order_by("name").first()
    (media_root() / image.file).unlink()
    target = tmp_path / "out" / "b.zip"
    with pytest.raises(CommandError, match=f"{image.name}: image file .* is missing"):
        bundle(study, target, "--with-images")
    assert list((tmp_path / "out").iterdir()) == []


def test_with_images_needs_a_bundle(tmp_path):
    Study.objects.create(slug="empty", design="pairwise")
    with pytest.raises(CommandError, match="--with-images goes with --bundle"):
        call_command("export_study", "empty", "--out", str(tmp_path), "--with-images")
