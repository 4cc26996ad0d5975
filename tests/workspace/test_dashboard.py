"""The study dashboard: its sections for those who reach the study, the lifecycle, the
settings form, Score now, the progress endpoint and ``PATCH studies/{slug}``; its numbers
are the CLI's and the export's.

Over 400 lines: one study fixture and its people serve every section's tests."""

import re
from datetime import timedelta
from html import unescape as html_unescape

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Image, Study, Vote
from annotation.selectors import study_progress_get
from annotation.study_settings import QC_SETTINGS
from dataset.export import sessions_frame, votes_frame
from scoring.models import Score, ScoreBatch
from tests.annotation.sessions import post_vote
from tests.factories import (
    ImageFactory,
    LiveStudyFactory,
    SceneFactory,
    StudyFactory,
    make_gold_pair,
    make_pairs,
)
from workspace import dashboard

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def people():
    owner = User.objects.create_user("owner", password="pw")
    member = User.objects.create_user("member", password="pw")
    other = User.objects.create_user("other", password="pw")
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    return {"owner": owner, "member": member, "other": other, "staff": staff}


@pytest.fixture
def study(people) -> Study:
    study = LiveStudyFactory(owner=people["owner"], title="Sharpness", completion_code="C0DE42")
    study.members.add(people["member"], through_defaults={"role": "editor"})
    make_pairs(study, 6, votes=2, scenes=2)
    return study


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def url(study: Study, tail: str = "") -> str:
    return f"/studies/{study.slug}/{tail}"


def answer_through_the_api(study: Study, *, sessions: int, answers: int, who: str = "p") -> None:
    """Annotators open sessions and answer through the annotator API, with varied times."""
    api = APIClient()
    ms = 400
    for s in range(sessions):
        token = api.post(
            f"/api/v1/studies/{study.slug}/sessions", {"participant_id": f"{who}{s}"}, format="json"
        ).json()["token"]
        for _ in range(answers):
            trial = api.get(f"/api/v1/sessions/{token}/next-trial")
            if trial.status_code != 200:
                break
            ms += 137
            choice = ("left", "right", "similar")[ms % 3]
            body = {"trial_id": trial.json()["trial_id"], "choice": choice, "response_ms": ms}
            assert post_vote(api, token, body).status_code == 201


# --- the page ---------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "member", "staff"])
def test_the_dashboard_shows_every_section_to_those_who_reach_the_study(who, people, study):
    """Owner, member and staff see the header, lifecycle, recruiting links, progress,
    scoring and settings; the links are absolute and carry Prolific's placeholders, the
    completion code and MTurk's ExternalQuestion."""
    page = client_for(people[who]).get(url(study))
    assert page.status_code == 200
    html = page.content.decode()
    for title in ("Lifecycle", "Recruiting links", "Progress", "Scoring", "Settings"):
        assert f">{title}</h2>" in html, title
    assert "Sharpness" in html
    assert "owner owner" in html
    assert '<tr data-member="member">' in html  # the People card
    annotator = f"http://testserver/annotate/{study.slug}/"
    assert f'value="{annotator}"' in html
    prolific = f"{annotator}?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&amp;STUDY_ID={{{{%STUDY_ID%}}}}"
    assert prolific in html
    assert "https://app.prolific.com/submissions/complete?cc=C0DE42" in html
    assert f"&lt;ExternalURL&gt;{annotator}&lt;/ExternalURL&gt;" in html
    assert "<FrameHeight>0</FrameHeight>".replace("<", "&lt;").replace(">", "&gt;") in html
    assert 'data-copy="link-prolific"' in html
    assert "Close: no new annotators; answers to open trials are kept" in html
    assert "Back to draft: the annotator page says not open yet" in html
    assert "Go live" not in html  # it is live already
    assert re.search(r"as of <time[^>]*>\d\d:\d\d:\d\d UTC</time>", html)
    assert 'id="id_gold_rate"' in html
    assert 'id="id_qc_min_majority_agreement"' in html
    assert 'value="off"' in html  # qc_min_majority_agreement is off by default


def test_another_researcher_and_anonymous_callers_do_not_reach_the_dashboard(people, study):
    """Another researcher gets 404 on the page and on every action (nothing changes);
    anonymous callers are sent to log in."""
    other = client_for(people["other"])
    assert other.get(url(study)).status_code == 404
    assert other.post(url(study, "status/"), {"status": "closed"}).status_code == 404
    assert other.post(url(study, "settings/"), {"title": "mine"}).status_code == 404
    assert other.post(url(study, "score/")).status_code == 404
    assert other.get(f"/api/v1/studies/{study.slug}/progress").status_code == 404
    assert (
        other.patch(
            f"/api/v1/studies/{study.slug}", {"status": "closed"}, content_type="application/json"
        ).status_code
        == 404
    )
    study.refresh_from_db()
    assert (study.status, study.title) == ("live", "Sharpness")
    anonymous = Client().get(url(study))
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/login/")
    assert Client().post(url(study, "status/"), {"status": "closed"}).status_code == 302
    assert Client().get(f"/api/v1/studies/{study.slug}/progress").status_code == 403


def test_the_study_list_links_to_the_dashboard(people, study):
    html = client_for(people["owner"]).get("/studies/").content.decode()
    assert f'href="/studies/{study.slug}/"' in html


# --- lifecycle and settings ---------------------------------------------------------------


def test_the_lifecycle_goes_live_closed_and_back_to_draft(people, study):
    """Each button sets the status through study_configure; an unknown status changes
    nothing and says why."""
    client = client_for(people["member"])
    for status, shown in (("closed", "Go live"), ("draft", "Go live"), ("live", "Close")):
        response = client.post(url(study, "status/"), {"status": status}, follow=True)
        study.refresh_from_db()
        assert study.status == status
        assert shown in response.content.decode()
    response = client.post(url(study, "status/"), {"status": "paused"}, follow=True)
    study.refresh_from_db()
    assert study.status == "live"
    assert "unknown status &#x27;paused&#x27;" in response.content.decode()


def settings_post(study: Study, **changes) -> dict:
    form = dashboard.study_settings(study)
    form.pop("completion_code")
    body = {
        name: ("off" if value is None else value)
        for name, value in form.items()
        if name != "metric_deltas"
    }
    body["metric_deltas"] = ""
    body.update(changes)
    return body


def test_every_quality_control_setting_has_a_written_label(people, study):
    """No label is the setting's name with its first letter raised ("Qc min answers")."""
    html = client_for(people["owner"]).get(url(study)).content.decode()
    labels = re.findall(r'<label for="id_(\w+)">([^<]+?) <span class="help">', html)
    assert {name for name, _ in labels} >= set(QC_SETTINGS)
    assert [text for _, text in labels if text.startswith("Qc ")] == []


def test_the_settings_form_saves_through_the_one_validator(people, study):
    """Saved values are cleaned by the validator: numbers as numbers, 'off' and an empty
    threshold as null, deltas as a map (0 dropped)."""
    body = settings_post(
        study,
        title="Sharpness, round 2",
        gold_rate="0.25",
        trials_per_session="40",
        qc_min_gold_accuracy="off",
        qc_max_similar_share="",
        qc_min_majority_agreement="0.6",
        completion_url="https://app.prolific.com/submissions/complete?cc=C0DE42",
        metric_deltas="psnr=0.5\nssim = 0.01, lpips=0",
    )
    response = client_for(people["owner"]).post(url(study, "settings/"), body)
    assert response.status_code == 302
    assert response["Location"].endswith("#settings")
    study.refresh_from_db()
    assert study.title == "Sharpness, round 2"
    assert (study.gold_rate, study.trials_per_session) == (0.25, 40)
    assert study.qc_min_gold_accuracy is None
    assert study.qc_max_similar_share is None
    assert study.qc_min_majority_agreement == 0.6
    assert study.metric_deltas == {"psnr": 0.5, "ssim": 0.01}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gold_rate", "1.5", "Gold rate must be in [0, 1)"),
        ("trials_per_session", "many", "Trials per session must be a whole number"),
        ("qc_side_bias_alpha", "2", "Side bias alpha must be between 0 and 1"),
        ("completion_url", "ftp://x", "is not an http(s) URL"),
        ("completion_url", "data:text/html,<script>alert(1)</script>", "is not an http(s) URL"),
        ("completion_url", "http://example.org/done", "must use https (plain http only"),
        ("metric_deltas", "psnr=-1", "Metric deltas must map metric names to numbers >= 0"),
        ("metric_deltas", "psnr", "expected METRIC=NUMBER"),
    ],
)
def test_a_refused_setting_is_shown_next_to_its_field_and_nothing_is_saved(
    people, study, field, value, message
):
    body = settings_post(study, title="changed", **{field: value})
    response = client_for(people["owner"]).post(url(study, "settings/"), body)
    assert response.status_code == 400
    html = response.content.decode()
    error = re.search(rf'<p class="field-error" id="id_{field}_error"[^>]*>([^<]*)</p>', html)
    assert error
    assert message in html_unescape(error.group(1))
    assert f'aria-describedby="id_{field}_error"' in html
    settings_section = html[html.index('id="settings"') :]
    settings_section = settings_section[: settings_section.index("</section>")]
    assert settings_section.count('class="field-error"') == 1
    study.refresh_from_db()
    assert study.title == "Sharpness"


# --- the researcher API ---------------------------------------------------------------------


def test_patch_changes_status_and_settings_with_the_same_validation(people, study):
    """PATCH takes the status and configure_study's settings; a refused one is a 400
    naming it, and nothing is written."""
    api = APIClient()
    api.force_authenticate(people["member"])
    path = f"/api/v1/studies/{study.slug}"
    done = api.patch(
        path,
        {"status": "closed", "trials_per_session": 12, "qc_min_gold_accuracy": "off",
         "metric_deltas": {"psnr": 0.5}},
        format="json",
    )  # fmt: skip
    assert done.status_code == 200, done.content
    body = done.json()
    assert body["status"] == "closed"
    assert body["trials_per_session"] == 12
    assert body["settings"]["qc_min_gold_accuracy"] is None
    assert body["settings"]["metric_deltas"] == {"psnr": 0.5}
    study.refresh_from_db()
    assert (study.status, study.trials_per_session) == ("closed", 12)
    for bad, field in (
        ({"gold_rate": 1}, "gold_rate"),
        ({"votes_per_pair": 5}, "votes_per_pair"),
        ({"design": "pairwise"}, "design"),
        ({"status": "paused"}, "status"),
        ({"colour": "red"}, "colour"),
        ({"title": "x", "lease_seconds": 1}, "lease_seconds"),
    ):
        response = api.patch(path, bad, format="json")
        assert response.status_code == 400, bad
        assert response.json()["error"]["field"] == field
    assert api.patch(path, [1, 2], format="json").status_code == 400
    study.refresh_from_db()
    assert (study.title, study.lease_seconds) == ("Sharpness", 600)


# --- numbers: the same as the CLI's and the export's --------------------------------------


@pytest.fixture
def voted(people) -> Study:
    """A live study with practice, gold and two scenes, answered through the annotator API
    by four annotators (one of them to the end of the quota)."""
    study = LiveStudyFactory(
        owner=people["owner"], practice_trials=1, gold_rate=0.2, trials_per_session=5
    )
    make_pairs(study, 10, votes=2, scenes=3)
    make_gold_pair(study)
    answer_through_the_api(study, sessions=3, answers=4)
    answer_through_the_api(study, sessions=1, answers=99, who="q")
    return study


def test_with_votes_the_no_votes_note_is_hidden(people, voted):
    """The page script also hides it when the first votes arrive while it is open."""
    html = client_for(people["owner"]).get(url(voted)).content.decode()
    assert '<p class="muted" id="votes-per-hour-empty" hidden>No votes yet.</p>' in html


def test_the_progress_endpoint_gives_the_numbers_of_the_cli_and_the_export(people, voted):
    """Counts equal ``study_progress`` (the study list and ``GET studies``); per scene,
    per hour, the median time and sessions equal the export's tables."""
    client = client_for(people["owner"])
    body = client.get(f"/api/v1/studies/{voted.slug}/progress").json()
    progress = body["progress"]
    cli = study_progress_get(slug=voted.slug)
    totals = progress["totals"]
    assert totals["counted_votes"] == cli.n_counted_votes > 0
    assert totals["votes"] == cli.n_votes
    assert totals["pairs"] == cli.n_pairs
    assert totals["pairs_complete"] == cli.n_pairs_complete
    assert totals["scenes"] == cli.n_scenes
    assert totals["images"] == cli.n_images
    assert totals["gold_pairs"] == cli.n_gold_pairs == 1
    assert progress["sessions"]["started"] == cli.n_sessions == 4
    assert progress["sessions"]["completed"] == cli.n_sessions_completed == 1

    votes = votes_frame(voted, excluded=set())
    counted = votes[~votes["is_gold"] & ~votes["is_practice"]]
    per_scene = counted.groupby("scene").size().to_dict()
    assert {s["scene"]: s["counted_votes"] for s in progress["scenes"] if s["counted_votes"]} == (
        per_scene
    )
    assert sum(s["target_votes"] for s in progress["scenes"]) == 20
    median = votes.loc[~votes["is_practice"], "response_ms"].astype(float).median()
    assert progress["median_response_ms"] == pytest.approx(median)
    hours = votes.groupby(votes["created_at"].dt.floor("h")).size()
    assert [(pd.Timestamp(h["hour"]), h["votes"]) for h in progress["votes_per_hour"]] == list(
        hours.items()
    )
    sessions = sessions_frame(voted)
    assert progress["sessions"]["completed"] == sessions["completed_at"].notna().sum()
    assert progress["sessions"]["answered"] == int(
        (sessions["n_done"] + sessions["n_practice_done"]).sum()
    )
    # Every counted vote is less than two hours old: the rate is all of them over 2 hours.
    assert progress["rate"]["counted_votes"] == cli.n_counted_votes
    assert progress["rate"]["per_hour"] == pytest.approx(cli.n_counted_votes / 2)
    remaining = progress["totals"]["remaining_votes"]
    assert progress["eta_hours"] == pytest.approx(remaining / progress["rate"]["per_hour"])

    # GET studies/{slug} keeps the list's keys, counts included, and adds the rest.
    listed = APIClient()
    listed.force_authenticate(people["owner"])
    row = next(r for r in listed.get("/api/v1/studies").json() if r["slug"] == voted.slug)
    detail = listed.get(f"/api/v1/studies/{voted.slug}").json()
    assert {key: detail[key] for key in row} == row
    assert detail["progress"]["totals"] == totals
    assert detail["links"]["annotator_url"] == f"http://testserver/annotate/{voted.slug}/"

    # The page shows the same numbers.
    html = client.get(url(voted)).content.decode()
    assert f'data-field="counted_votes">{cli.n_counted_votes}<' in html
    assert f'data-field="pairs_complete">{cli.n_pairs_complete}<' in html
    assert f'data-field="median_response">{median / 1000:.1f} s<' in html


def test_vote_counts_are_cached_and_refreshed_as_stated(people, voted):
    """Within the refresh interval the vote counts are the snapshot's (``as_of``
    unchanged) while sessions are live; once it has passed, a new vote is counted; with
    no new vote the snapshot is kept until the hold time."""
    client = client_for(people["owner"])
    path = f"/api/v1/studies/{voted.slug}/progress"
    first = client.get(path).json()["progress"]
    answer_through_the_api(voted, sessions=1, answers=2, who="r")
    cached = client.get(path).json()["progress"]
    assert cached["as_of"] == first["as_of"]
    assert cached["totals"] == first["totals"]
    assert cached["sessions"]["started"] == first["sessions"]["started"] + 1
    with override_settings(IQA_DASHBOARD_REFRESH_SECONDS=0):
        fresh = client.get(path).json()["progress"]
        assert fresh["as_of"] > first["as_of"]
        assert fresh["totals"]["votes"] == Vote.objects.filter(pair__study=voted).count()
        assert fresh["totals"]["votes"] > first["totals"]["votes"]
        # No vote since: kept (exact) until the hold time.
        assert client.get(path).json()["progress"]["as_of"] == fresh["as_of"]
        with override_settings(IQA_DASHBOARD_HOLD_SECONDS=0):
            assert client.get(path).json()["progress"]["as_of"] > fresh["as_of"]


def test_eta_is_absent_without_recent_votes_and_zero_when_done(people, study):
    """No counted vote in the last two hours: no estimate; every target met: done."""
    answer_through_the_api(study, sessions=1, answers=3)
    Vote.objects.filter(pair__study=study).update(created_at=timezone.now() - timedelta(hours=3))
    progress = dashboard.study_progress_compute(study=study)
    assert progress["rate"]["counted_votes"] == 0
    assert progress["eta_hours"] is None
    assert progress["totals"]["remaining_votes"] == 12 - 3
    answer_through_the_api(study, sessions=2, answers=6, who="q")
    progress = dashboard.study_progress_compute(study=study)
    assert progress["totals"]["remaining_votes"] == 0
    assert progress["eta_hours"] == 0.0
    assert progress["totals"]["pairs_complete"] == 6


def test_a_study_without_votes_shows_empty_progress(people):
    study = StudyFactory(owner=people["owner"])
    html = client_for(people["owner"]).get(url(study)).content.decode()
    assert '<p class="muted" id="votes-per-hour-empty">No votes yet.</p>' in html
    assert "Go live: annotators can start" in html
    progress = dashboard.study_progress_compute(study=study)
    assert progress["median_response_ms"] is None
    assert progress["votes_per_hour"] == []


# --- scoring ------------------------------------------------------------------------------


def test_score_now_publishes_the_plan_which_a_worker_runs_as_score_study_does(
    people, study, settings
):
    """Score now publishes ``scoring.study_score_plan`` for the study (the web process
    never imports the registry); run by a worker, it sends the batches score_study sends,
    and the dashboard then shows each metric's scored / failed / pending items and its
    first error, equal to ``study_scoring_progress``."""
    from kombu import Connection

    from config.celery import app as celery_app

    queue = f"test-score-now-{study.pk}-{np.random.default_rng().integers(1e9)}"
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    try:
        response = client_for(people["owner"]).post(url(study, "score/"), follow=True)
    finally:
        celery_app.conf.task_default_queue = previous
    assert "Scoring requested" in response.content.decode()
    with Connection(settings.CELERY_BROKER_URL) as connection:
        message = connection.SimpleQueue(queue).get(timeout=5)
        assert message.headers["task"] == "scoring.study_score_plan"
        assert message.decode()[0] == [study.pk, "available"]
        message.ack()
        connection.SimpleQueue(queue).queue.delete()

    from scoring.selectors import study_scoring_progress, study_scoring_requested
    from scoring.services import metrics_select
    from scoring.tasks import study_score_plan

    scene = SceneFactory(study=study)
    ImageFactory(scene=scene, role=Image.Role.REFERENCE)
    ImageFactory.create_batch(2, scene=scene)
    sent = study_score_plan(study.pk, "psnr,ssim,niqe")
    specs = metrics_select("psnr,ssim,niqe")
    assert ScoreBatch.objects.filter(study=study).count() >= 1
    assert sent == sum(p.total for p in study_scoring_progress(study=study, specs=specs))
    batch = ScoreBatch.objects.filter(study=study, metric="psnr").first()
    image, reference = batch.items[0]
    Score.objects.create(
        metric="psnr", version=batch.version, image_id=image, reference_id=reference,
        lower_better=False, error="CUDA out of memory",
    )  # fmt: skip
    overview = {m.progress.metric: m for m in study_scoring_requested(study=study)}
    cli = {p.metric: p for p in study_scoring_progress(study=study, specs=specs)}
    assert set(overview) == set(cli)
    for name, status in overview.items():
        assert status.progress == cli[name], name
    assert overview["psnr"].first_error == "CUDA out of memory"
    assert (overview["psnr"].scored, overview["psnr"].pending) == (0, cli["psnr"].total - 1)
    dashboard.scoring_overview_forget(study=study)  # cached for IQA_DASHBOARD_REFRESH_SECONDS
    html = client_for(people["staff"]).get(url(study)).content.decode()
    assert "CUDA out of memory" in html
    assert '<th scope="row">niqe</th>' in html


def test_score_now_says_so_when_the_broker_is_down(people, study, monkeypatch):
    """Nothing runs inline when the broker does not answer: the page says so."""
    import kombu.pools

    from config.celery import app as celery_app

    def fresh_pool() -> None:
        # Publishing goes through the app's connection pool, made with the URL of its time.
        # Dropped, not closed: kombu's process-wide pools are shared with later tests, and
        # a closed one would refuse their publishes ("Acquire on closed pool").
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
        kombu.pools.reset()

    # Port 1 on loopback: nothing listens there. Celery publishes through broker_write_url.
    monkeypatch.setattr(celery_app.conf, "broker_write_url", "redis://127.0.0.1:1/0")
    fresh_pool()
    try:
        response = client_for(people["owner"]).post(url(study, "score/"), follow=True)
    finally:
        monkeypatch.undo()
        fresh_pool()
    assert "the Celery broker did not answer" in response.content.decode()
    assert not ScoreBatch.objects.exists()


def test_the_settings_form_and_the_api_offer_every_changeable_setting_once():
    """The dashboard's form groups and the PATCH body come from the one settings table:
    a setting added there appears in both, in exactly one fieldset."""
    from annotation.study_settings import CHANGEABLE_SETTINGS
    from workspace.forms import StudySettingsForm
    from workspace.serializers import StudyChangeInput, StudySettingsSerializer

    grouped = [name for _, names in StudySettingsForm.GROUPS for name in names]
    assert sorted(grouped) == sorted(CHANGEABLE_SETTINGS)
    assert set(StudySettingsForm().fields) == set(CHANGEABLE_SETTINGS)
    assert set(StudyChangeInput().fields) == {"status", *CHANGEABLE_SETTINGS}
    assert set(StudySettingsSerializer().fields) == {"completion_code", *CHANGEABLE_SETTINGS}


def test_votes_past_their_target_and_sessions_that_found_the_study_full_are_shown(people, clock):
    """A lease set aside (its session stopped answering) and answered after all is one
    vote past its pair's target; a session arriving once every pair has its votes ends
    full. The dashboard's progress (page and API) counts both; the export marks the
    vote."""
    from annotation import services

    study = LiveStudyFactory(owner=people["owner"])
    make_pairs(study, 1, votes=1)
    stopped = services.session_open(study_slug=study.slug, address="10.0.0.1").session.token
    held = services.trial_next(token=stopped)
    clock.advance(timedelta(seconds=study.hold_seconds + 1))
    person = services.session_open(study_slug=study.slug, address="10.0.0.2").session.token
    services.vote_submit(
        token=person, trial_id=services.trial_next(token=person).trial_id, choice="left"
    )
    services.vote_submit(token=stopped, trial_id=held.trial_id, choice="right")
    late = services.session_open(study_slug=study.slug, address="10.0.0.3").session.token
    assert services.trial_next(token=late) is None
    progress = dashboard.study_progress_compute(study=study)
    assert progress["totals"]["past_target_votes"] == 1
    body = client_for(people["owner"]).get(f"/studies/{study.slug}/").content.decode()
    assert 'data-field="past_target_votes">1<' in body
    assert 'data-field="sessions_full">1<' in body
    api = APIClient()
    api.force_authenticate(people["owner"])
    detail = api.get(f"/api/v1/studies/{study.slug}").json()
    assert detail["progress"]["sessions"]["full"] == 1
    assert detail["progress"]["totals"]["past_target_votes"] == 1
    assert votes_frame(study, set())["past_target"].sum() == 1


def test_the_study_list_and_the_dashboard_count_sessions_in_one_order(people):
    """Issue 25: the list read "Sessions 3 / 4" (completed / started, unlabelled) where
    the dashboard read "4 / 3 started / completed". Both say started, then completed."""
    from annotation import services

    study = LiveStudyFactory(owner=people["owner"], trials_per_session=1)
    make_pairs(study, 3)
    for participant in ("a", "b", "c"):
        services.session_open(study_slug=study.slug, participant_id=participant)
    token = services.session_open(study_slug=study.slug, participant_id="d").session.token
    trial = services.trial_next(token=token)
    services.vote_submit(token=token, trial_id=trial.trial_id, choice="left")
    client = client_for(people["owner"])
    listing = html_unescape(client.get("/studies/").content.decode())
    assert 'Sessions <span class="muted">started / completed</span>' in listing
    assert re.search(r'<td class="num">4 / 1</td>', listing)
    dashboard = client.get(f"/studies/{study.slug}/").content.decode()
    assert 'data-field="sessions_started">4<' in dashboard
    assert 'data-field="sessions_completed">1<' in dashboard
    assert "sessions started / completed" in dashboard


def test_every_refused_setting_is_named_at_once_on_the_page_and_by_the_api(people, study):
    """Issue 25: with gold_rate 2, trials 0, lease 'abc' and qc test 'maybe', only
    gold_rate was named, one error per submit, and the page came back at its top. Each is
    now named next to its field in one answer (the form posts to #settings, where the page
    opens), and PATCH names them all in `fields`; nothing is saved."""
    bad = {"gold_rate": "2", "trials_per_session": "0", "lease_seconds": "abc", "qc_test": "maybe"}
    client = client_for(people["owner"])
    response = client.post(url(study, "settings/"), settings_post(study, **bad))
    assert response.status_code == 400
    html = response.content.decode()
    for field in bad:
        assert re.search(rf'<p class="field-error" id="id_{field}_error"', html), field
    assert f'action="/studies/{study.slug}/settings/#settings"' in html
    api = APIClient()
    api.force_authenticate(people["owner"])
    refused = api.patch(f"/api/v1/studies/{study.slug}", bad, format="json")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert set(error["fields"]) == set(bad)
    assert error["field"] in bad
    study.refresh_from_db()
    assert (study.gold_rate, study.trials_per_session) != (2, 0)
