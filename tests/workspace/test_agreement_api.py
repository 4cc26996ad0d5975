"""The agreement report's API and tables without a worker: the refresh task's body is
called directly, the queueing is recorded instead of published."""

import csv
import io
import re

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from analysis import services as services_module
from analysis import tasks
from analysis.models import AgreementSceneImages
from analysis.services import LOCK_NAMESPACE, VARIANTS, agreement_snapshot_refresh
from analysis.snapshot_selectors import agreement_snapshot_get
from analysis.tables import headline_csv, headline_latex
from annotation import services
from scoring.models import Score
from tests.annotation.sessions import vote_after
from tests.conftest import database_url
from tests.factories import LiveStudyFactory, make_pairs

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queued(monkeypatch) -> list:
    """The refreshes readers queued (study id, variant), instead of the broker."""
    calls: list = []
    monkeypatch.setattr(tasks.agreement_snapshot_refresh, "delay", lambda *a: calls.append(a))
    return calls


def vote(study, participant: str, n: int) -> None:
    token = services.session_open(study_slug=study.slug, participant_id=participant).session.token
    for i in range(n):
        trial = services.trial_next(token=token)
        vote_after(token, trial.trial_id, "left", 900 + i)


@pytest.fixture
def study():
    owner = get_user_model().objects.create_user("ada", password="x")
    study = LiveStudyFactory(owner=owner, slug="s1")
    pairs = make_pairs(study, 8, votes=5, scenes=2)
    images = {image for pair in pairs for image in (pair.image_a, pair.image_b)}
    Score.objects.bulk_create(
        [Score(metric="musiq", version="v1", image=image, value=float(image.pk),
               lower_better=False) for image in images]
        + [Score(metric="niqe", version="v1", image=image, value=float(image.pk % 3),
                 lower_better=True) for image in images]
    )  # fmt: skip
    vote(study, "p1", 8)
    return study


@pytest.fixture
def api(study) -> APIClient:
    client = APIClient()
    client.force_authenticate(study.owner)
    return client


def test_a_read_queues_a_refresh_debounced_and_serves_the_snapshot_with_etag(
    study, api, queued, settings
):
    """No snapshot: 202 with the flags, one refresh queued, and a second read at once queues
    none (debounce). After the task ran: 200 with an ETag; the same ETag answers 304, as
    does If-Modified-Since; a vote makes it stale (new ETag, a refresh queued once the
    debounce interval passed), and the task brings it up to date."""
    settings.IQA_AGREEMENT_DEBOUNCE_SECONDS = 0
    url = f"/api/v1/studies/{study.slug}/agreement"
    first = api.get(url)
    assert first.status_code == 202
    assert first.json() == {"study": "s1", "variant": "counted", "as_of": None, "votes": None,
                            "stale": True, "computing": True}  # fmt: skip
    assert queued == [(study.pk, "counted")]

    assert tasks.agreement_snapshot_refresh(study.pk, "counted") == 8
    ready = api.get(url)
    assert ready.status_code == 200
    body = ready.json()
    assert (body["votes"], body["stale"], body["computing"]) == (8, False, False)
    assert len(queued) == 1  # up to date: nothing queued
    etag = ready["ETag"]
    assert api.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert api.get(url, HTTP_IF_MODIFIED_SINCE=ready["Last-Modified"]).status_code == 304

    vote(study, "p2", 3)
    stale = api.get(url, HTTP_IF_NONE_MATCH=etag)
    assert stale.status_code == 200
    assert stale["ETag"] != etag
    assert (stale.json()["votes"], stale.json()["stale"]) == (8, True)
    assert len(queued) == 2
    settings.IQA_AGREEMENT_DEBOUNCE_SECONDS = 60
    vote(study, "p3", 1)
    api.get(url)
    assert len(queued) == 2  # within the debounce interval: not queued again
    assert tasks.agreement_snapshot_refresh(study.pk, "counted") == 12
    assert api.get(url).json()["votes"] == 12
    assert tasks.agreement_snapshot_refresh(study.pk, "counted") == 12  # idempotent


def test_one_computation_per_study_at_a_time(study):
    """While another connection holds the study's advisory lock, a refresh does nothing."""
    key = study.pk * len(VARIANTS) + VARIANTS.index("counted")
    with psycopg.connect(database_url()) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, key))
        assert agreement_snapshot_refresh(study=study) is None
        assert agreement_snapshot_get(study=study, variant="counted") is None
        other.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, key))
    assert agreement_snapshot_refresh(study=study).votes == 8


def test_the_csv_and_latex_downloads_are_the_snapshots_headline_table(study, api, queued):
    """Before a snapshot: 409. Then the CSV has one row per metric, best first, with the
    JSON's numbers; the LaTeX is the same table in booktabs."""
    assert api.get(f"/api/v1/studies/{study.slug}/agreement.csv").status_code == 409
    agreement_snapshot_refresh(study=study)
    body = api.get(f"/api/v1/studies/{study.slug}/agreement").json()
    whole = [r for r in body["agreement"] if r["subset"] == "all" and r["delta"] == 0]
    response = api.get(f"/api/v1/studies/{study.slug}/agreement.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="s1-agreement.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["metric"] for row in rows] == [r["metric"] for r in whole]
    for row, expected in zip(rows, whole, strict=True):
        assert float(row["accuracy all"]) == pytest.approx(expected["accuracy"])
        assert row["kind"] == "NR"
    tex = api.get(f"/api/v1/studies/{study.slug}/agreement.tex")
    assert tex.status_code == 200
    assert tex.content.decode() == headline_latex(body)


REPORT = {
    "study": "paper_study",
    "metric_kinds": {"lpips": "FR", "psnr": "FR", "q_align": "NR"},
    "metric_versions": {"lpips": "v1", "psnr": "v1", "q_align": "v2"},
    "agreement": [
        {"metric": m, "subset": s, "delta": d, "n_pairs": 40, "accuracy": a, "ci_low": a - 0.1,
         "ci_high": a + 0.1, "accuracy_2afc": a, "srcc": c, "krcc": c and c / 2, "plcc": c}
        for m, s, d, a, c in [
            ("lpips", "all", 0.0, 0.81, 0.7), ("psnr", "all", 0.0, 0.74, 0.5),
            ("q_align", "all", 0.0, 0.62, 0.3), ("lpips", "ref<test", 0.0, 0.7, None),
            ("psnr", "ref<test", 0.0, 0.9, None), ("q_align", "ref<test", 0.0, 0.5, None),
            ("psnr", "all", 0.02, 0.99, None),
        ]
    ],
    "comparisons": [
        {"metric_a": "lpips", "metric_b": "psnr", "p_value": 0.2},
        {"metric_a": "lpips", "metric_b": "q_align", "p_value": 0.001},
    ],
}  # fmt: skip


def test_the_latex_table_has_the_booktabs_structure_of_a_paper():
    """FR rows, a rule, NR rows between \\toprule/\\midrule/\\bottomrule; one column per
    subset then 2AFC and the correlations; the best of each column in bold; a dagger on
    metrics not significantly worse than the best; names and subsets escaped; rows at a
    metric's own delta left out."""
    tex = headline_latex(REPORT)
    lines = tex.splitlines()
    body = lines[lines.index(r"\begin{tabular}{lcccccc}") + 1 : lines.index(r"\end{tabular}")]
    assert body[0] == r"\toprule"
    assert body[1] == r"Metric & all & ref$<$test & 2AFC & SRCC & KRCC & PLCC \\"
    assert body[2] == r"\midrule"
    assert body[3].startswith(r"lpips$^\dagger$ & \textbf{0.810} & 0.700 & \textbf{0.810}")
    assert body[4].startswith(r"psnr$^\dagger$ & 0.740 & \textbf{0.900} & 0.740")
    assert body[5] == r"\midrule"
    assert body[6].startswith(r"q\_align & 0.620 & 0.500")
    assert body[7] == r"\bottomrule"
    assert len(body) == 8
    assert all(line.endswith(r"\\") for line in (body[1], body[3], body[4], body[6]))
    assert all(line.count("&") == 6 for line in (body[1], body[3], body[4], body[6]))
    assert lines[:3] == [r"% \usepackage{booktabs}", r"\begin{table}[t]", r"\centering"]
    assert r"\label{tab:agreement-paper_study}" in tex
    assert lines[-1] == r"\end{table}"
    assert tex.count("{") == tex.count("}")
    assert not re.search(r"(?<!\\)_", tex.replace(r"\label{tab:agreement-paper_study}", ""))
    text = headline_csv(REPORT)
    assert text.splitlines()[1].startswith("lpips,FR,v1,40,0.81,")
    assert text.splitlines()[2].endswith(",yes")  # psnr: not significantly worse
    assert text.splitlines()[3].endswith(",no")


def test_another_researchers_study_answers_404(study, queued):
    other = APIClient()
    other.force_authenticate(get_user_model().objects.create_user("bob", password="x"))
    for suffix in ("", ".csv", ".tex"):
        assert other.get(f"/api/v1/studies/{study.slug}/agreement{suffix}").status_code == 404
    assert queued == []
    assert settings.IQA_AGREEMENT_DEBOUNCE_SECONDS > 0


def test_the_sweep_queues_stale_snapshots_only(study, queued, settings):
    """The beat's sweep queues a refresh of a snapshot whose data moved, and of no other."""
    settings.IQA_AGREEMENT_DEBOUNCE_SECONDS = 0
    assert tasks.agreement_snapshots_sweep() == 0  # nobody has asked for a report yet
    agreement_snapshot_refresh(study=study)
    assert tasks.agreement_snapshots_sweep() == 0
    vote(study, "p2", 1)
    assert tasks.agreement_snapshots_sweep() == 1
    assert queued == [(study.pk, "counted")]


def test_the_images_are_served_per_scene_and_a_live_refresh_rewrites_only_moved_scenes(
    study, api, queued
):
    """The main JSON names the scenes, not their images; each scene's block has its own
    ETag (304 while unchanged). A live refresh after a vote rewrites the block of the
    scene voted on only; without this process's record of what it wrote (another worker,
    a restart) it writes every block again. Bad requests name the problem."""
    url = f"/api/v1/studies/{study.slug}/agreement/images"
    assert api.get(url, {"scene": "s0"}).status_code == 409
    agreement_snapshot_refresh(study=study, mode="exact")
    agreement_snapshot_refresh(study=study, mode="live")
    body = api.get(f"/api/v1/studies/{study.slug}/agreement").json()
    assert "images" not in body
    scenes = body["scenes"]
    assert len(scenes) == 2
    etags = {}
    for scene in scenes:
        response = api.get(url, {"scene": scene})
        assert response.status_code == 200
        block = response.json()
        assert (block["study"], block["variant"], block["scene"]) == ("s1", "counted", scene)
        assert block["images"]
        assert {image["scene"] for image in block["images"]} == {scene}
        assert set(block["images"][0]["scores"]) == {"musiq", "niqe"}
        etags[scene] = response["ETag"]
        assert api.get(url, {"scene": scene}, HTTP_IF_NONE_MATCH=etags[scene]).status_code == 304

    def written():
        snapshot = agreement_snapshot_get(study=study, variant="counted")
        rows = AgreementSceneImages.objects.filter(snapshot=snapshot)
        return snapshot, {row.scene: row.updated_at for row in rows}

    _, before = written()
    vote(study, "p2", 1)
    agreement_snapshot_refresh(study=study, mode="live")
    snapshot, after = written()
    moved = [scene for scene in scenes if after[scene] != before[scene]]
    assert len(moved) == 1
    assert after[moved[0]] == snapshot.computed_at
    for scene in scenes:
        status = api.get(url, {"scene": scene}, HTTP_IF_NONE_MATCH=etags[scene]).status_code
        assert status == (200 if scene in moved else 304)

    services_module._SCENES.clear()  # a fresh worker process
    vote(study, "p3", 1)
    snapshot = agreement_snapshot_refresh(study=study, mode="live")
    assert set(written()[1].values()) == {snapshot.computed_at}

    missing = api.get(url)
    assert missing.status_code == 400
    assert missing.json()["error"]["field"] == "scene"
    unknown = api.get(url, {"scene": "nowhere"})
    assert unknown.status_code == 404
    assert "nowhere" in unknown.json()["error"]["message"]
    assert api.get(url, {"scene": "s\x000"}).status_code == 404


def test_a_poll_within_the_debounce_interval_reads_the_snapshots_head_only(
    study, api, queued, settings
):
    """The data's mark (aggregates over the study's sessions) is computed by one poll per
    debounce interval; the others read the snapshot's small columns (not its report) and
    answer 304. Once the interval passed, a poll sees the new votes (stale, queued)."""
    settings.IQA_AGREEMENT_DEBOUNCE_SECONDS = 60
    url = f"/api/v1/studies/{study.slug}/agreement"
    agreement_snapshot_refresh(study=study)
    first = api.get(url)
    assert (first.status_code, first.json()["stale"]) == (200, False)
    with CaptureQueriesContext(connection) as polled:
        again = api.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    sql = [query["sql"] for query in polled.captured_queries]
    assert not any("annotation_annotatorsession" in q for q in sql), sql
    assert not any('"analysis_agreementsnapshot"."report"' in q for q in sql), sql
    vote(study, "p2", 1)
    assert api.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304  # within it
    assert queued == []
    cache.clear()  # the interval passed
    stale = api.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert (stale.status_code, stale.json()["stale"]) == (200, True)
    assert queued == [(study.pk, "counted")]


def test_a_correlation_that_rounds_to_zero_has_no_sign_in_the_latex_table():
    """Issue 25: a KRCC of -0.0004 printed as -0.000 in the paper's table."""
    import copy

    report = copy.deepcopy(REPORT)
    for row in report["agreement"]:
        if row["subset"] == "all" and row["metric"] == "psnr":
            row["krcc"] = -0.0004
    tex = headline_latex(report)
    assert "-0.000" not in tex
    psnr = next(line for line in tex.splitlines() if line.startswith("psnr"))
    assert " & 0.000 & " in psnr
