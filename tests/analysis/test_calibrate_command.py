"""``agreement_report --calibrate-delta [--save]`` on a study annotated through the API."""

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from annotation.models import Image
from scoring.models import Score
from tests.annotation.sessions import post_vote
from tests.factories import LiveStudyFactory, make_pairs

pytestmark = pytest.mark.django_db

BAND = 0.3  # the annotators say "similar" below this difference of quality


@pytest.fixture
def study():
    """80 pairs of one vote each, annotated by people who see each image's quality and
    say "similar" below BAND; an NR metric "q" that is that quality plus a little noise.

    The side-bias rule is off: the server puts the better image left or right at random,
    and about one fixture in 150 drew a side split that the rule excludes the one
    annotator for (leaving no label to calibrate on)."""
    study = LiveStudyFactory(gold_rate=0.0, metric_deltas={"q": 0.05}, qc_side_bias_alpha=None)
    make_pairs(study, 80, votes=1, scenes=4)
    rng = np.random.default_rng(7)
    images = list(Image.objects.filter(scene__study=study))
    quality = {image.id: float(rng.uniform(0, 2)) for image in images}
    Score.objects.bulk_create(
        Score(metric="q", version="test", image=image, lower_better=False,
              value=quality[image.id] + rng.normal(0, 0.01))
        for image in images
    )  # fmt: skip
    by_url = {f"/media/{image.file}": quality[image.id] for image in images}
    api = APIClient()
    token = api.post(
        f"/api/v1/studies/{study.slug}/sessions", {"participant_id": "p1"}, format="json"
    ).json()["token"]
    while (trial := api.get(f"/api/v1/sessions/{token}/next-trial")).status_code == 200:
        shown = trial.json()["images"]
        gap = by_url[shown["left"]] - by_url[shown["right"]]
        choice = "similar" if abs(gap) < BAND else "left" if gap > 0 else "right"
        body = {"trial_id": trial.json()["trial_id"], "choice": choice, "response_ms": 1500}
        assert post_vote(api, token, body).status_code == 201
    return study


def test_calibrate_delta_reports_the_held_out_accuracy_and_saves_the_delta(study):
    out, err = StringIO(), StringIO()
    call_command(
        "agreement_report", study.slug, "--calibrate-delta", "--save", "--json",
        "--samples", "50", stdout=out, stderr=err,
    )  # fmt: skip
    (report,) = json.loads(out.getvalue())
    (row,) = report["delta_calibration"]
    assert row["metric"] == "q"
    assert row["n_pairs"] == 80
    assert row["folds"] == 5
    assert row["few_pairs"] is False
    assert row["hand_delta"] == 0.05
    assert row["delta"] == pytest.approx(BAND, rel=0.2)
    assert row["accuracy"] > row["accuracy_zero"]
    curve = report["delta_curves"]["q"]
    assert curve[0]["delta"] == 0
    assert curve[0]["n_pairs"] == 80
    study.refresh_from_db()
    assert study.metric_deltas["q"] == pytest.approx(row["delta"])
    assert "saved metric deltas q" in err.getvalue()
    text = StringIO()
    call_command(
        "agreement_report", study.slug, "--calibrate-delta", "--samples", "50", stdout=text
    )
    assert "Delta chosen by 5-fold cross-validation" in text.getvalue()
    assert "(n=80)" in text.getvalue()


def test_save_needs_calibrate_delta(study):
    with pytest.raises(CommandError, match="--save needs --calibrate-delta"):
        call_command("agreement_report", study.slug, "--save")
