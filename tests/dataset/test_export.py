"""``export_study`` writes the metric_scores table."""

import pandas as pd
import pytest

from dataset.export import study_export
from scoring.models import Score
from tests.factories import ImageFactory, SceneFactory, StudyFactory

pytestmark = pytest.mark.django_db


def test_metric_scores_are_exported_with_failures_and_orientation(tmp_path):
    study = StudyFactory(design="ref-vs-test")
    scene = SceneFactory(study=study, name="s")
    reference = ImageFactory(scene=scene, name="s/reference.png", role="reference")
    test = ImageFactory(scene=scene, name="s/blur.png")
    Score.objects.create(
        metric="psnr", version="pyiqa-0.1.16", image=test, reference=reference, value=31.5,
        lower_better=False,
    )  # fmt: skip
    Score.objects.create(
        metric="lpips", version="pyiqa-0.1.16+wabc", image=test, reference=reference,
        value=None, lower_better=True, error="MissingWeights: missing weight files x.pth",
    )  # fmt: skip
    Score.objects.create(
        metric="niqe", version="pyiqa-0.1.16", image=test, value=5.0, lower_better=True
    )
    study_export(study=study, out=tmp_path, fmt="csv")
    table = pd.read_csv(tmp_path / "metric_scores.csv", keep_default_na=False)
    assert list(table.columns) == [
        "metric", "image", "reference", "value", "lower_better", "version", "error",
    ]  # fmt: skip
    rows = {row.metric: row for row in table.itertuples()}
    assert (rows["psnr"].image, rows["psnr"].reference) == ("s/blur.png", "s/reference.png")
    assert float(rows["psnr"].value) == 31.5
    assert rows["lpips"].value == ""
    assert rows["lpips"].error.startswith("MissingWeights")
    assert rows["niqe"].reference == ""
    assert str(rows["niqe"].lower_better) == "True"
    assert "metric_scores" in (tmp_path / "README.md").read_text()
