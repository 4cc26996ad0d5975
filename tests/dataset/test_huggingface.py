"""The bundle's Hugging Face layout, loaded offline with the real ``datasets`` library."""

import zipfile

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import yaml

from annotation.storage import media_root
from dataset.bundle import study_bundle
from tests.dataset.test_bundle import voted

pytestmark = pytest.mark.django_db


@pytest.fixture
def offline_datasets(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    return lambda folder: datasets.load_dataset(
        "imagefolder", data_dir=str(folder), cache_dir=str(tmp_path / "hf-cache")
    )["train"]


@pytest.mark.parametrize("design", ["pairwise", "ref-vs-test"])
def test_the_two_configurations_load_offline_and_equal_the_export(
    tmp_path, offline_datasets, design
):
    """``pairs`` and ``images`` load with ``load_dataset("imagefolder", data_dir=...)``;
    their rows equal the export's pairs (gold pairs left out) and image scores, their
    images are the stored files' pixels, and the card's front matter names both
    configurations and leaves the licence empty."""
    scenes = {"s1": ["reference", "a", "b", "c"], "s2": ["reference", "x", "y"]}
    study = voted(tmp_path, design, scenes)
    path = study_bundle(study=study, path=tmp_path / "b.zip", with_images=True, samples=20).path
    out = tmp_path / "unzipped"
    zipfile.ZipFile(path).extractall(out)
    pairs = pd.read_csv(out / "pairs.csv")
    pairs = pairs[~pairs["is_gold"]].reset_index(drop=True)
    scores = pd.read_csv(out / "image_scores.csv")

    loaded = offline_datasets(out / "pairs")
    assert len(loaded) == len(pairs) > 0
    rows = loaded.to_pandas()
    assert list(rows["pair_id"]) == list(pairs["pair_id"])
    assert list(rows["image_a_name"]) == list(pairs["image_a"])
    assert list(rows["majority"]) == list(pairs["majority"])
    assert list(rows["n_votes"]) == list(pairs["n_votes"])
    np.testing.assert_allclose(rows["p_a"], pairs["p_a"])
    files = dict(study.scenes.values_list("images__name", "images__file"))
    first = loaded[0]
    stored = PIL.Image.open(media_root() / files[first["image_a_name"]])
    assert np.array_equal(np.asarray(first["image_a"]), np.asarray(stored))

    images = offline_datasets(out / "images")
    table = images.to_pandas()
    assert list(table["image_name"]) == list(scores["image"])
    np.testing.assert_allclose(table["thurstone_0_100"], scores["thurstone_0_100"])
    np.testing.assert_allclose(table["thurstone"], scores["thurstone"])
    row = images[len(images) - 1]
    stored = PIL.Image.open(media_root() / files[row["image_name"]])
    assert np.array_equal(np.asarray(row["image"]), np.asarray(stored))

    sheet = (out / "README.md").read_text()
    card = yaml.safe_load(sheet.split("---\n")[1])
    assert card["license"] is None
    assert [c["config_name"] for c in card["configs"]] == ["pairs", "images"]
    assert card["size_categories"] == ["n<1K"]
    assert "## Hugging Face dataset" in sheet


def test_a_bundle_without_images_has_no_hugging_face_layout(tmp_path):
    study = voted(tmp_path, "pairwise", {"s1": ["a", "b"]})
    path = study_bundle(study=study, path=tmp_path / "b.zip", samples=5).path
    names = zipfile.ZipFile(path).namelist()
    assert not [n for n in names if n.endswith("metadata.jsonl")]
    assert not zipfile.ZipFile(path).read("README.md").startswith(b"---")
