"""Which scores the report and the export read: per metric, the latest version that has
successful scores."""

import pytest

from analysis.selectors import study_data
from scoring.models import Score
from scoring.selectors import scores_latest_versions
from tests.factories import ImageFactory, SceneFactory, StudyFactory

pytestmark = pytest.mark.django_db


def _scores(images, *, version: str, value: float | None, error: str = "") -> None:
    Score.objects.bulk_create(
        [
            Score(metric="niqe", version=version, image=image, value=value, error=error,
                  lower_better=True)
            for image in images
        ]
    )  # fmt: skip


def test_a_failed_re_run_does_not_hide_an_older_good_version():
    """Version 1 scored every image; version 2 (new weights) stored only failures: the
    report keeps version 1's values. Once version 2 has values, it is the one read."""
    study = StudyFactory()
    images = ImageFactory.create_batch(3, scene=SceneFactory(study=study))
    _scores(images, version="v1", value=1.5)
    _scores(images, version="v2", value=None, error="cannot read the image: truncated")
    assert scores_latest_versions(study) == {"niqe": "v1"}
    data = study_data(study)
    assert data.versions == {"niqe": "v1"}
    assert sorted(data.scores["value"]) == [1.5, 1.5, 1.5]

    Score.objects.filter(version="v2", image=images[0]).update(value=2.5, error="")
    assert scores_latest_versions(study) == {"niqe": "v2"}
    assert study_data(study).scores["value"].tolist() == [2.5]
