"""The stored agreement snapshot equals ``agreement_report --json`` on the same data: the
demo studies (ref-vs-test and pairwise) annotated through the API, scored with psnr and
ssim by a real worker, one annotator excluded by hand and a per-metric delta set, and the
snapshot computed by the refresh task on that worker."""

import json

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from analysis.models import AgreementSnapshot
from analysis.services import agreement_snapshot_request
from analysis.snapshot_selectors import agreement_mark, agreement_snapshot_get
from annotation.models import AnnotatorSession, Study, Vote
from annotation.services import annotator_exclusion_decide
from tests.analysis import test_agreement_report
from tests.conftest import wait_until
from workspace.services import study_settings_change

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def refreshed(study: Study, variant: str = "counted") -> AgreementSnapshot:
    """Ask for a refresh as a reader does, and wait for the worker to store it."""
    agreement_snapshot_request(study=study, variant=variant)

    def done() -> bool:
        snapshot = agreement_snapshot_get(study=study, variant=variant)
        return snapshot is not None and snapshot.mark == agreement_mark(study=study).digest

    wait_until(done, timeout=120, what=f"the {variant} snapshot of {study.slug}")
    return agreement_snapshot_get(study=study, variant=variant)


def test_the_snapshot_equals_agreement_report_json_after_votes_stop(
    manage, celery_worker, monkeypatch
):
    # Conditions the simulated annotators judge (the demo's worked example is not compared).
    monkeypatch.setitem(test_agreement_report.QUALITY, "worked-example", 0.0)
    assert manage("build_demo").returncode == 0
    rng = np.random.default_rng(5)
    for slug in ("demo", "demo-pairwise"):
        assert test_agreement_report.annotate(Study.objects.get(slug=slug), rng) > 0
    scored = manage(
        "score_study", "demo*", "--metrics", "psnr,ssim", "--wait", "--timeout", "300",
        env_extra={"IQA_SCORING_QUEUE": celery_worker.queue}, timeout=400,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr

    staff = get_user_model().objects.create_user("ada", password="x", is_staff=True)
    demo = Study.objects.get(slug="demo")
    excluded = AnnotatorSession.objects.filter(study=demo, n_done__gt=0).order_by("id").first()
    annotator_exclusion_decide(
        study=demo, annotator=excluded.pseudonym, excluded=True, reason="test", user=staff
    )
    study_settings_change(study=demo, changes={"metric_deltas": {"psnr": 0.5}})

    done = manage("agreement_report", "demo*", "--json")
    assert done.returncode == 0, done.stderr
    expected = {report["study"]: report for report in json.loads(done.stdout)}
    api = APIClient()
    api.force_authenticate(staff)
    for slug in ("demo", "demo-pairwise"):
        study = Study.objects.get(slug=slug)
        snapshot = refreshed(study)
        # Every key of the command's object, with the same values.
        assert {key: snapshot.report[key] for key in expected[slug]} == expected[slug]
        assert snapshot.votes == expected[slug]["counts"]["votes"]
        body = api.get(f"/api/v1/studies/{slug}/agreement").json()
        assert {key: body[key] for key in expected[slug]} == expected[slug]
        assert body["votes"] == snapshot.votes
        assert body["stale"] is False
        assert body["metric_kinds"] == {"psnr": "FR", "ssim": "FR"}
        # Every compared image carries its human score and both metrics' scores, read per
        # scene; the main JSON has the scenes, not the images.
        assert "images" not in body
        images = []
        for scene in body["scenes"]:
            block = api.get(f"/api/v1/studies/{slug}/agreement/images", {"scene": scene})
            assert block.status_code == 200
            assert {image["scene"] for image in block.json()["images"]} == {scene}
            images += block.json()["images"]
        assert len(images) == expected[slug]["counts"]["images_scored"]
        assert all(set(image["scores"]) == {"psnr", "ssim"} for image in images)
        pairs = sum(row["pairs"] for row in body["votes_per_pair"])
        assert pairs == expected[slug]["counts"]["pairs"]

    report = expected["demo"]
    assert [row["annotator"] for row in report["manual_decisions"]] == [excluded.pseudonym]
    assert {r["metric"] for r in report["agreement"] if r["delta"]} == {"psnr"}

    # The variant with every annotator counts the excluded annotator's votes again.
    everyone = refreshed(demo, "all")
    assert everyone.report["exclusions"] == []
    assert everyone.report["manual_decisions"] == []
    counted = report["counts"]["counted_votes"]
    labels = Vote.objects.filter(session=excluded, kind="label").count()
    assert labels > 0
    assert everyone.report["counts"]["counted_votes"] == counted + labels

    # A vote-free read does not queue another computation.
    assert agreement_snapshot_request(study=demo) is False
