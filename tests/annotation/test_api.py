"""The annotator API over HTTP (DRF's APIClient): the design's public interface (docs/design.md),
every access rule, and a clear JSON error for every malformed request."""

import uuid

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from annotation.models import AnnotatorSession, Study, Vote
from annotation.services import study_import
from tests.factories import LiveStudyFactory, StudyFactory, make_gold_pair, make_pairs
from tests.images import write_scene_folder

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def open_session(api: APIClient, study: Study, **body) -> dict:
    response = api.post(f"/api/v1/studies/{study.slug}/sessions", body, format="json")
    assert response.status_code in (200, 201), response.content
    return response.json()


def next_trial(api: APIClient, token: str):
    return api.get(f"/api/v1/sessions/{token}/next-trial")


def vote(api: APIClient, token: str, body) -> object:
    return api.post(f"/api/v1/sessions/{token}/votes", body, format="json")


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert error["field"] == field, error
    return error


def test_a_session_opens_with_recruiter_ids_and_client_info(api):
    study = LiveStudyFactory()
    body = {
        "participant_id": "5f1e2d",
        "source": "prolific",
        "external_ids": {"STUDY_ID": "s1", "SESSION_ID": "x9"},
        "client": {"device_pixel_ratio": 2.0, "viewport_width": 1280, "viewport_height": 720},
    }
    response = api.post(
        f"/api/v1/studies/{study.slug}/sessions", body, format="json", HTTP_USER_AGENT="UA/1"
    )
    assert response.status_code == 201
    data = response.json()
    assert data["completed"] is False
    assert data["completion_code"] is None
    session = AnnotatorSession.objects.get(token=data["token"])
    assert session.participant_id == "5f1e2d"
    assert session.source == "prolific"
    assert session.external_ids == {"STUDY_ID": "s1", "SESSION_ID": "x9"}
    assert session.client_info == {
        "device_pixel_ratio": 2.0,
        "viewport_width": 1280,
        "viewport_height": 720,
        "user_agent": "UA/1",
    }
    # The same participation (its SESSION_ID) resumes; the participant id alone does not.
    again = api.post(f"/api/v1/studies/{study.slug}/sessions", body, format="json")
    assert again.status_code == 200
    assert again.json()["token"] == data["token"]
    # The participant id alone is another participation: a session of its own, once.
    url = f"/api/v1/studies/{study.slug}/sessions"
    bare = api.post(url, {"participant_id": "5f1e2d"}, format="json")
    assert bare.status_code == 201
    assert bare.json()["token"] != data["token"]
    again = api.post(url, {"participant_id": "5f1e2d"}, format="json")
    assert_error(again, 409, "participant_id_in_use", "participant_id")


def test_a_whole_study_is_completed_over_the_api(api):
    study = LiveStudyFactory(
        practice_trials=1, trials_per_session=3, completion_url="https://example.org/done?cc=X"
    )
    make_pairs(study, 4, votes=1)
    token = open_session(api, study)["token"]
    answered = []
    while (response := next_trial(api, token)).status_code == 200:
        trial = response.json()
        assert set(trial) >= {"trial_id", "practice", "images", "progress"}
        assert trial["images"]["reference"] is None
        assert trial["progress"]["done"] == len(answered)
        result = vote(
            api, token, {"trial_id": trial["trial_id"], "choice": "right", "response_ms": 800}
        )
        assert result.status_code == 201
        answered.append(trial["trial_id"])
    assert response.status_code == 204
    assert response.content == b""
    # One pair was the practice trial, which this session then never sees again.
    assert len(answered) == 4
    session = api.get(f"/api/v1/sessions/{token}").json()
    assert session["completed"] is True
    assert session["completion_code"] == study.completion_code
    assert session["completion_url"] == "https://example.org/done?cc=X"
    assert session["progress"] == {"done": 4, "total": 4}
    assert session["outcome"] == "quota"


def test_a_session_that_finds_the_study_full_gets_no_code(api):
    """No code without work: a session that finds no work left before its quota is
    completed as ``full``, without the completion code or URL (the recruiter would pay for
    nothing); with ``min_counted_trials`` reached it earns the code all the same."""
    study = LiveStudyFactory(trials_per_session=3, completion_url="https://example.org/done?cc=X")
    make_pairs(study, 2, votes=1)
    token = open_session(api, study)["token"]
    while (response := next_trial(api, token)).status_code == 200:
        body = {"trial_id": response.json()["trial_id"], "choice": "left", "response_ms": 900}
        assert vote(api, token, body).status_code == 201
    session = api.get(f"/api/v1/sessions/{token}").json()
    assert (session["completed"], session["outcome"]) == (True, "full")
    assert session["completion_code"] is None
    assert session["completion_url"] is None
    study.min_counted_trials = 2
    study.save(update_fields=["min_counted_trials"])
    session = api.get(f"/api/v1/sessions/{token}").json()
    assert session["completion_code"] == study.completion_code


def test_a_reload_gets_the_same_open_trial(api):
    study = LiveStudyFactory()
    make_pairs(study, 3)
    token = open_session(api, study)["token"]
    assert next_trial(api, token).json() == next_trial(api, token).json()


def test_next_trial_ahead_also_issues_the_trial_after_it(api):
    study = LiveStudyFactory(trials_per_session=3)
    make_pairs(study, 5)
    token = open_session(api, study)["token"]
    opening = api.get(f"/api/v1/sessions/{token}/next-trial?ahead=1").json()
    assert "next" not in opening  # nothing queued before a counted answer (rule 10)
    vote(api, token, {"trial_id": opening["trial_id"], "choice": "left", "response_ms": 900})
    first = api.get(f"/api/v1/sessions/{token}/next-trial?ahead=1").json()
    queued = first["next"]
    assert queued["trial_id"] != first["trial_id"]
    assert queued["progress"] == {"done": 2, "total": 3}
    assert set(queued["images"]) == {"left", "right", "reference"}
    # Without ``ahead`` the open trial alone (the design's response: docs/design.md).
    assert "next" not in next_trial(api, token).json()
    vote(api, token, {"trial_id": first["trial_id"], "choice": "left", "response_ms": 900})
    second = api.get(f"/api/v1/sessions/{token}/next-trial?ahead=1").json()
    assert second["trial_id"] == queued["trial_id"]
    assert "next" not in second  # the quota leaves room for no third trial


def test_retries_return_the_same_vote_and_another_choice_is_409(api):
    study = LiveStudyFactory()
    make_pairs(study, 2)
    token = open_session(api, study)["token"]
    trial_id = next_trial(api, token).json()["trial_id"]
    body = {"trial_id": trial_id, "choice": "left", "response_ms": 1200}
    responses = [vote(api, token, body) for _ in range(5)]
    assert [r.status_code for r in responses] == [201, 200, 200, 200, 200]
    assert len({r.json()["vote_id"] for r in responses}) == 1
    assert_error(vote(api, token, {**body, "choice": "similar"}), 409, "conflict", "choice")
    assert Vote.objects.count() == 1
    assert Vote.objects.get().response_ms == 1200


def test_a_token_reaches_its_own_session_only(api):
    study = LiveStudyFactory()
    make_pairs(study, 3)
    mine = open_session(api, study)["token"]
    theirs = open_session(api, study)["token"]
    their_trial = next_trial(api, theirs).json()["trial_id"]
    body = {"trial_id": their_trial, "choice": "left", "response_ms": 10}
    assert_error(vote(api, mine, body), 404, "not_found", "trial_id")
    assert_error(vote(api, mine, {**body, "trial_id": str(uuid.uuid4())}), 404, "not_found")
    assert_error(api.get("/api/v1/sessions/not-a-token"), 404, "not_found", "token")
    assert_error(next_trial(api, "not-a-token"), 404, "not_found", "token")
    assert_error(vote(api, "not-a-token", body), 404, "not_found")
    assert Vote.objects.count() == 0
    assert api.get("/api/v1/sessions").status_code == 404  # no listing of sessions


def test_annotators_cannot_read_labels_or_researcher_endpoints(api):
    study = LiveStudyFactory(gold_rate=0.5)
    make_pairs(study, 2)
    make_gold_pair(study)
    session = open_session(api, study)
    trial = next_trial(api, session["token"]).json()
    # Nothing says which image is which, what it is, or whether the trial is gold.
    assert set(trial) == {"trial_id", "practice", "images", "sizes", "lease_expires_at", "progress"}
    for url in trial["images"].values():
        assert url is None or url.startswith("/media/images/")
    assert "gold" not in str(session)
    assert "gold" not in str(trial)
    for path in ("/api/v1/studies", f"/api/v1/studies/{study.slug}"):
        assert api.get(path).status_code in (401, 403)
        token_api = APIClient()
        token_api.credentials(HTTP_AUTHORIZATION=f"Bearer {session['token']}")
        assert token_api.get(path).status_code in (401, 403)


def test_researchers_read_study_progress(admin_client, django_assert_num_queries):
    study = LiveStudyFactory()
    make_pairs(study, 2, votes=1)
    StudyFactory()
    api = APIClient()
    token = open_session(api, study)["token"]
    trial = next_trial(api, token).json()
    vote(api, token, {"trial_id": trial["trial_id"], "choice": "left", "response_ms": 5})
    admin_client.get("/api/v1/studies")
    with django_assert_num_queries(3):  # session, user, studies with counts
        response = admin_client.get("/api/v1/studies")
    rows = {row["slug"]: row for row in response.json()}
    assert rows[study.slug]["counts"] == {
        "scenes": 1, "images": 4, "pairs": 2, "gold_pairs": 0, "pairs_complete": 1,
        "votes": 1, "counted_votes": 1, "sessions": 1, "sessions_completed": 0,
    }  # fmt: skip
    detail = admin_client.get(f"/api/v1/studies/{study.slug}").json()
    # The detail keeps the list's keys (and adds settings, progress, scoring and links).
    assert {key: detail[key] for key in rows[study.slug]} == rows[study.slug]
    assert_error(admin_client.get("/api/v1/studies/nope"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"choice": "left", "response_ms": 1}, "trial_id"),
        ({"trial_id": "TRIAL", "choice": "up", "response_ms": 1}, "choice"),
        ({"trial_id": "TRIAL", "choice": "left"}, "response_ms"),
        ({"trial_id": "TRIAL", "choice": "left", "response_ms": "soon"}, "response_ms"),
        ({"trial_id": "TRIAL", "choice": "left", "response_ms": -5}, "response_ms"),
        ({"trial_id": "not-a-uuid", "choice": "left", "response_ms": 1}, "trial_id"),
        ({"trial_id": "TRIAL", "choice": ["left"], "response_ms": 1}, "choice"),
        (
            {
                "trial_id": "TRIAL",
                "choice": "left",
                "response_ms": 1,
                "client": {"device_pixel_ratio": "x"},
            },
            "client.device_pixel_ratio",
        ),
    ],
)
def test_malformed_votes_get_400_naming_the_field(api, body, field):
    study = LiveStudyFactory()
    make_pairs(study, 1)
    token = open_session(api, study)["token"]
    trial_id = next_trial(api, token).json()["trial_id"]
    body = {k: (trial_id if v == "TRIAL" else v) for k, v in body.items()}
    error = assert_error(vote(api, token, body), 400, "invalid", field)
    assert field in error["message"]
    assert Vote.objects.count() == 0


def test_bodies_that_are_not_small_json_objects_are_refused(api):
    study = LiveStudyFactory()
    make_pairs(study, 1)
    token = open_session(api, study)["token"]
    url = f"/api/v1/sessions/{token}/votes"
    assert_error(api.post(url, "{not json", content_type="application/json"), 400, "parse_error")
    assert_error(api.post(url, "[1, 2]", content_type="application/json"), 400, "parse_error")
    assert_error(api.post(url, "", content_type="application/json"), 400, "invalid", "trial_id")
    assert_error(api.post(url, {"choice": "left"}), 415, "unsupported_media_type")
    huge = '{"trial_id": "' + "x" * 20_000 + '"}'
    error = assert_error(api.post(url, huge, content_type="application/json"), 413, "too_large")
    assert "8192" in error["message"]
    opened = api.post(
        f"/api/v1/studies/{study.slug}/sessions",
        {"participant_id": "p" * 500},
        format="json",
    )
    assert_error(opened, 400, "invalid", "participant_id")
    assert Vote.objects.count() == 0


def test_sessions_open_only_on_live_studies(api):
    closed = StudyFactory(status="closed")
    response = api.post(f"/api/v1/studies/{closed.slug}/sessions", {}, format="json")
    assert_error(response, 409, "study_not_open")
    assert_error(api.post("/api/v1/studies/nope/sessions", {}, format="json"), 404, "not_found")
    # A draft is private: the same answer as a slug nobody uses.
    draft = StudyFactory()
    response = api.post(f"/api/v1/studies/{draft.slug}/sessions", {}, format="json")
    assert_error(response, 404, "not_found")
    assert response.json()["error"]["message"] == f"no study with slug {draft.slug!r}"


@override_settings(IQA_VOTE_RATE="3/min")
def test_votes_are_throttled_per_session(api):
    study = LiveStudyFactory()
    make_pairs(study, 5)
    token = open_session(api, study)["token"]
    other = open_session(api, study)["token"]
    statuses = []
    for _ in range(4):
        trial_id = next_trial(api, token).json()["trial_id"]
        response = vote(api, token, {"trial_id": trial_id, "choice": "left", "response_ms": 1})
        statuses.append(response.status_code)
    assert statuses == [201, 201, 201, 429]
    assert_error(response, 429, "throttled")
    trial_id = next_trial(api, other).json()["trial_id"]
    assert (
        vote(api, other, {"trial_id": trial_id, "choice": "left", "response_ms": 1}).status_code
        == 201
    )


def test_trial_images_are_served_from_the_store(api, tmp_path):
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a", "b"]})
    study_import(source=source, slug="served", design="ref-vs-test", live=True, practice_trials=0)
    token = open_session(api, Study.objects.get(slug="served"))["token"]
    trial = next_trial(api, token).json()
    assert trial["sizes"]["left"] == {"width": 48, "height": 32}
    response = api.get(trial["images"]["left"])
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert "immutable" in response["Cache-Control"]
    assert b"".join(response.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
    assert api.get("/media/images/../../secret_key").status_code == 404
    assert api.get("/media/images/ab/cd/nothing.png").status_code == 404


def test_the_api_is_published_as_openapi(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/v1/studies/{slug}/sessions",
        "/api/v1/sessions/{token}",
        "/api/v1/sessions/{token}/next-trial",
        "/api/v1/sessions/{token}/votes",
    ):
        assert path in paths


def test_ping_is_trivial(api, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = api.get("/api/v1/ping")
    assert response.json() == {"ok": True}
    with django_assert_num_queries(1):
        assert api.get("/api/v1/ping?db=1").json() == {"ok": True}
