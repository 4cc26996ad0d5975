"""Hostile JSON on every endpoint that reads it (config/parsers.py): nesting deeper than
64 levels, a lone UTF-16 surrogate or a NUL in any string or key. Each is a 400 in the one
error format naming the field, never a 500, and nothing is stored."""

import json

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from annotation import services
from annotation.models import AnnotatorSession, Study
from config.parsers import MAX_DEPTH
from tests.factories import LiveStudyFactory, make_pairs

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded() -> dict:
    """A researcher's live study with a session, its open trial, and an annotator."""
    ada = get_user_model().objects.create_user("ada", password="a good secret 1")
    study = LiveStudyFactory(slug="hostile", owner=ada)
    make_pairs(study, 3)
    token = services.session_open(study_slug=study.slug).session.token
    trial = services.trial_next(token=token)
    pseudonym = AnnotatorSession.objects.get(token=token).pseudonym
    client = APIClient()
    client.force_authenticate(ada)
    return {
        "researcher": client,
        "anonymous": APIClient(),
        "endpoints": [
            ("anonymous", "post", "/api/v1/auth/token", "username"),
            ("anonymous", "post", "/api/v1/studies/hostile/sessions", "participant_id"),
            ("anonymous", "post", f"/api/v1/sessions/{token}/votes", "choice"),
            ("researcher", "patch", "/api/v1/studies/hostile", "title"),
            (
                "researcher",
                "post",
                f"/api/v1/studies/hostile/annotators/{pseudonym}/exclusion",
                "reason",
            ),
            ("researcher", "post", "/api/v1/studies/hostile/exports", "format"),
        ],
        "trial": str(trial.trial_id),
    }


def send(client: APIClient, method: str, url: str, text: str):
    return getattr(client, method)(url, text, content_type="application/json")


def assert_refused(response, field: str) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["field"] == field
    assert field in error["message"] or field == "(body)"


def test_every_json_endpoint_refuses_deep_nesting_and_unstorable_text(seeded):
    """For each endpoint: a field nested 70 levels deep, ``"[" * 5000`` (a few KB: a
    RecursionError in Python's json), a lone surrogate in a value and in a key, and a NUL:
    400 naming the field; the study's title and the sessions are as they were."""
    before = (Study.objects.get(slug="hostile").title, AnnotatorSession.objects.count())
    for who, method, url, field in seeded["endpoints"]:
        client = seeded[who]
        deep = json.dumps({field: [[[]]]}).replace("[[[]]]", "[" * 70 + "]" * 70)
        assert_refused(send(client, method, url, deep), field)
        response = send(client, method, url, "[" * 5000)
        assert_refused(response, "(body)")
        assert f"deeper than {MAX_DEPTH} levels" in response.json()["error"]["message"]
        assert_refused(send(client, method, url, json.dumps({field: "x\ud800y"})), field)
        assert_refused(send(client, method, url, json.dumps({field: "x\x00y"})), field)
        keyed = json.dumps({field: {"\ud800": 1}})
        assert_refused(send(client, method, url, keyed), field)
    assert (Study.objects.get(slug="hostile").title, AnnotatorSession.objects.count()) == before


def test_nesting_up_to_the_limit_is_still_read(seeded):
    """64 levels are JSON like any other: the body reaches the view, which judges it."""
    client = seeded["researcher"]
    nested = {"metric_deltas": {"psnr": 0.5}, "title": "fine"}
    response = send(client, "patch", "/api/v1/studies/hostile", json.dumps(nested))
    assert response.status_code == 200, response.content
    text = '{"title": ' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}"
    response = send(client, "patch", "/api/v1/studies/hostile", text)
    assert response.status_code == 400
    assert response.json()["error"]["code"] != "invalid_json"  # the view's own refusal
