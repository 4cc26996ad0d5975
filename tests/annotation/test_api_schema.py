"""The published OpenAPI schema describes the bodies the API really sends.

Real responses from a real flow are validated against the live schema's response schema
for their operation and status, strictly: every key a body carries must be declared
(objects are closed), every required key present, nulls only where the schema says
``nullable``. Every operation lists the error statuses it returns, each with the one
error body.
"""

import datetime
import uuid

import pytest
from django.core.management import call_command
from django.test import override_settings
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from rest_framework.test import APIClient

from analysis.services import agreement_snapshot_refresh
from annotation.models import Image, Study
from annotation.services import study_import
from scoring.models import Score
from tests.factories import LiveStudyFactory, StudyFactory, make_pairs
from tests.images import write_scene_folder

pytestmark = pytest.mark.django_db

SCHEMA_URL = "/api/schema/"
SESSIONS = "/api/v1/studies/{slug}/sessions"
SESSION = "/api/v1/sessions/{token}"
NEXT_TRIAL = "/api/v1/sessions/{token}/next-trial"
VOTES = "/api/v1/sessions/{token}/votes"
STUDIES = "/api/v1/studies"
STUDY = "/api/v1/studies/{slug}"
STUDY_PROGRESS = "/api/v1/studies/{slug}/progress"
PING = "/api/v1/ping"
ANNOTATORS = "/api/v1/studies/{slug}/annotators"
EXCLUSION = "/api/v1/studies/{slug}/annotators/{annotator}/exclusion"
EXPORTS = "/api/v1/studies/{slug}/exports"
AGREEMENT = "/api/v1/studies/{slug}/agreement"
AGREEMENT_CSV = "/api/v1/studies/{slug}/agreement.csv"
AGREEMENT_TEX = "/api/v1/studies/{slug}/agreement.tex"
AGREEMENT_IMAGES = "/api/v1/studies/{slug}/agreement/images"
EXPORT = "/api/v1/exports/{job_id}"
EXPORT_DOWNLOAD = "/api/v1/exports/{job_id}/download"
AUTH_TOKEN = "/api/v1/auth/token"
IMPORT = "/api/v1/imports/{job_id}"

# The error statuses each operation returns (and so must declare). A new operation must
# be added here, with its errors.
ERRORS = {
    ("post", SESSIONS): {400, 403, 404, 409, 413, 415, 429},
    ("get", SESSION): {404},
    ("get", NEXT_TRIAL): {404, 409, 429},
    ("post", VOTES): {400, 404, 409, 413, 415, 429},
    ("get", STUDIES): {403},
    ("get", STUDY): {403, 404},
    ("patch", STUDY): {400, 403, 404, 409},
    ("get", STUDY_PROGRESS): {403, 404},
    ("get", PING): set(),
    ("post", AUTH_TOKEN): {400, 429},
    ("post", STUDIES): {400, 403, 409, 413, 415, 429, 503},
    ("get", IMPORT): {403, 404},
    ("get", ANNOTATORS): {403, 404},
    ("post", EXCLUSION): {400, 403, 404, 409},
    ("get", EXPORTS): {403, 404},
    ("post", EXPORTS): {400, 403, 404, 429, 503},
    ("get", EXPORT): {403, 404},
    ("get", EXPORT_DOWNLOAD): {403, 404, 409},
    ("get", AGREEMENT): {403, 404},
    ("get", AGREEMENT_CSV): {403, 404, 409},
    ("get", AGREEMENT_TEX): {403, 404, 409},
    ("get", AGREEMENT_IMAGES): {400, 403, 404, 409},
}

FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(value) -> bool:
    # jsonschema checks date-time only with an optional package; this is strict enough.
    return not isinstance(value, str) or datetime.datetime.fromisoformat(value).tzinfo is not None


def closed_json_schema(node):
    """An OpenAPI 3.0 schema as JSON Schema 2020-12: ``nullable`` becomes a null
    alternative, component refs point at ``$defs``, and objects with declared properties
    admit no others (drift in either direction fails)."""
    if isinstance(node, list):
        return [closed_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: closed_json_schema(value) for key, value in node.items() if key != "nullable"}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


class Api:
    """An API client that checks every response against the live schema."""

    def __init__(self, client: APIClient, schema: dict) -> None:
        self.client = client
        self.schema = schema
        self.defs = {
            name: closed_json_schema(s) for name, s in schema["components"]["schemas"].items()
        }
        self.seen: set[tuple[str, str, int]] = set()

    def call(self, method: str, template: str, status: int, *, body=None, params=None, **kw):
        url = template.format(**(params or {}))
        if method == "get":
            response = self.client.get(url, body, **kw)
        elif "content_type" in kw:
            response = self.client.post(url, body, **kw)
        else:
            response = self.client.post(url, body, format="json", **kw)
        assert response.status_code == status, response.content
        self.check(method, template, response)
        return response.json() if response.content else None

    def check(self, method: str, template: str, response) -> None:
        operation = self.schema["paths"][template][method]
        declared = operation["responses"].get(str(response.status_code))
        assert declared is not None, f"{method} {template} does not declare {response.status_code}"
        self.seen.add((method, template, response.status_code))
        if response.status_code == 204:
            assert "content" not in declared
            assert response.content == b""
            return
        assert response["Content-Type"] == "application/json"
        schema = declared["content"]["application/json"]["schema"]
        validator = Draft202012Validator(
            {**closed_json_schema(schema), "$defs": self.defs}, format_checker=FORMATS
        )
        validator.validate(response.json())


@pytest.fixture
def schema() -> dict:
    response = APIClient().get(SCHEMA_URL, HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def api(schema) -> Api:
    return Api(APIClient(), schema)


def prolific_id(n: int) -> str:
    return f"{n:024x}"


@pytest.fixture
def study(tmp_path) -> Study:
    """A live pairwise study showing its reference, one practice trial, two trials; with a
    completion URL, so that it takes Prolific or MTurk participants only."""
    source = write_scene_folder(tmp_path / "src", {"s": ["reference", "a", "b", "c"]})
    study_import(
        source=source,
        slug="schema",
        design="pairwise",
        show_reference=True,
        live=True,
        practice_trials=1,
        trials_per_session=2,
        completion_url="https://example.org/done",
        min_response_ms=0,  # the test answers at once
    )
    return Study.objects.get(slug="schema")


def test_the_schema_generates_without_warnings(tmp_path):
    """drf-spectacular knows every view's request and responses (no guessing, no
    collisions) and the document is valid OpenAPI 3."""
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )


def test_the_checker_refuses_undeclared_missing_and_null_keys(api):
    """The check is strict: an extra key, a missing key or an undeclared null fails."""
    progress = {"$ref": "#/$defs/Progress"}
    check = Draft202012Validator({**progress, "$defs": api.defs}).validate
    check({"done": 1, "total": 2})
    for body in ({"done": 1, "total": 2, "extra": 0}, {"done": 1}, {"done": 1, "total": None}):
        with pytest.raises(ValidationError):
            check(body)
    error = Draft202012Validator({"$ref": "#/$defs/Error", "$defs": api.defs}).validate
    error({"error": {"code": "x", "message": "m", "field": None}})
    with pytest.raises(ValidationError):
        error({"error": {"code": "x", "message": "m", "field": None, "detail": "?"}})


def test_an_annotator_flow_matches_the_schema(api, study):
    """Open (201, then 200 for the same participation), next-trial with and without
    ``ahead``, vote (201), retry (200), the session's status, and 204 at the end with the
    completion code."""
    person = {
        "participant_id": prolific_id(1),
        "source": "prolific",
        "external_ids": {"SESSION_ID": "s-1"},
    }
    opened = api.call("post", SESSIONS, 201, body=person, params={"slug": study.slug})
    token = opened["token"]
    assert opened["completion_code"] is None
    api.call("post", SESSIONS, 200, body=person, params={"slug": study.slug})
    first = api.call("get", NEXT_TRIAL, 200, body={"ahead": "1"}, params={"token": token})
    assert first["practice"] is True
    assert "next" not in first  # a counted trial is queued after a counted answer only
    assert first["images"]["reference"] is not None
    assert first["sizes"]["reference"] == {"width": 48, "height": 32}
    alone = api.call("get", NEXT_TRIAL, 200, params={"token": token})
    assert "next" not in alone
    body = {"trial_id": first["trial_id"], "choice": "left", "response_ms": 700}
    api.call("post", VOTES, 201, body=body, params={"token": token})
    api.call("post", VOTES, 200, body=body, params={"token": token})
    status = api.call("get", SESSION, 200, params={"token": token})
    assert status["completed"] is False
    counted = api.call("get", NEXT_TRIAL, 200, body={"ahead": "1"}, params={"token": token})
    body = {"trial_id": counted["trial_id"], "choice": "right", "response_ms": 900}
    api.call("post", VOTES, 201, body=body, params={"token": token})
    queued = api.call("get", NEXT_TRIAL, 200, body={"ahead": "1"}, params={"token": token})
    assert "next" not in queued  # the quota's last trial: nothing after it
    while (
        trial := api.client.get(NEXT_TRIAL.format(token=token), {"ahead": "1"})
    ).status_code == 200:
        api.check("get", NEXT_TRIAL, trial)
        body = {"trial_id": trial.json()["trial_id"], "choice": "right", "response_ms": 900}
        api.call("post", VOTES, 201, body=body, params={"token": token})
    api.check("get", NEXT_TRIAL, trial)
    assert trial.status_code == 204
    done = api.call("get", SESSION, 200, params={"token": token})
    assert done["completed"] is True
    assert done["completion_code"] == study.completion_code
    assert done["completion_url"] == "https://example.org/done"
    api.call("get", PING, 200)
    api.call("get", PING, 200, body={"db": "1"})


def test_error_bodies_match_the_schema(api, study):
    """Conflict, not found, invalid and unparsable bodies, wrong media type, too large,
    throttled, a study not open, a participant id missing or malformed: each in the one
    error body, declared for its status."""
    slug = {"slug": study.slug}
    person = {"participant_id": prolific_id(1), "source": "prolific"}
    token = api.call("post", SESSIONS, 201, body=person, params=slug)["token"]
    params = {"token": token}
    trial = api.call("get", NEXT_TRIAL, 200, params=params)
    body = {"trial_id": trial["trial_id"], "choice": "left", "response_ms": 700}
    api.call("post", VOTES, 201, body=body, params=params)
    conflict = api.call("post", VOTES, 409, body={**body, "choice": "right"}, params=params)
    assert conflict["error"]["field"] == "choice"
    unknown = {**body, "trial_id": str(uuid.uuid4())}
    assert api.call("post", VOTES, 404, body=unknown, params=params)["error"]["field"] == "trial_id"
    nobody = {"token": "not-a-token"}
    api.call("post", VOTES, 404, body=body, params=nobody)
    api.call("get", SESSION, 404, params=nobody)
    api.call("get", NEXT_TRIAL, 404, params=nobody)
    invalid = api.call("post", VOTES, 400, body={**body, "response_ms": -1}, params=params)
    assert list(invalid["error"]["fields"]) == ["response_ms"]
    api.call("post", VOTES, 400, body="{not json", params=params, content_type="application/json")
    api.call("post", VOTES, 415, body={"choice": "left"}, params=params, content_type="text/plain")
    huge = '{"trial_id": "' + "x" * 20_000 + '"}'
    api.call("post", VOTES, 413, body=huge, params=params, content_type="application/json")
    api.call(
        "post",
        SESSIONS,
        413,
        body=huge,
        params={"slug": study.slug},
        content_type="application/json",
    )
    api.call("post", SESSIONS, 415, body={}, params={"slug": study.slug}, content_type="text/plain")
    api.call("post", SESSIONS, 400, body={"participant_id": "p" * 500}, params={"slug": study.slug})
    api.call("post", SESSIONS, 404, body={}, params={"slug": "nope"})
    api.call("post", SESSIONS, 404, body={}, params={"slug": StudyFactory().slug})  # a draft
    closed = StudyFactory(status="closed").slug
    assert api.call("post", SESSIONS, 409, body={}, params={"slug": closed})["error"]["code"] == (
        "study_not_open"
    )
    in_use = api.call("post", SESSIONS, 409, body=person, params=slug)["error"]
    assert (in_use["code"], in_use["field"]) == ("participant_id_in_use", "participant_id")
    deep = '{"participant_id": ' + "[" * 70 + "]" * 70 + "}"
    refused = api.call(
        "post", SESSIONS, 400, body=deep, params=slug, content_type="application/json"
    )["error"]
    assert (refused["code"], refused["field"]) == ("invalid_json", "participant_id")
    api.call("post", SESSIONS, 403, body={}, params=slug)
    malformed = {"participant_id": "{{%PROLIFIC_PID%}}", "source": "prolific"}
    assert api.call("post", SESSIONS, 400, body=malformed, params=slug)["error"]["code"] == (
        "participant_id_invalid"
    )
    with override_settings(IQA_VOTE_RATE="1/min"):
        person = {"participant_id": prolific_id(2), "source": "prolific"}
        again = api.call("post", SESSIONS, 201, body=person, params=slug)["token"]
        trial = api.call("get", NEXT_TRIAL, 200, params={"token": again})
        body = {"trial_id": trial["trial_id"], "choice": "left", "response_ms": 700}
        api.call("post", VOTES, 201, body=body, params={"token": again})
        api.call("post", VOTES, 429, body=body, params={"token": again})
    # This address has asked for trials and opened sessions more than once already.
    with override_settings(IQA_TRIAL_RATE="1/min"):
        api.call("get", NEXT_TRIAL, 429, params={"token": again})
    with override_settings(IQA_SESSION_RATE="1/min"):
        person = {"participant_id": prolific_id(3), "source": "prolific"}
        api.call("post", SESSIONS, 429, body=person, params=slug)


def test_a_path_no_route_matches_answers_the_error_body(api, client):
    """A path parameter of the wrong form (a slug with a space, an id that is no UUID)
    reaches no view: under /api/ Django's 404 is still the one error body, declared for the
    operation; elsewhere it is Django's page."""
    for template, path in ((STUDY, "/api/v1/studies/not a slug"),
                           (EXPORT, "/api/v1/exports/not-a-uuid")):  # fmt: skip
        response = api.client.get(path)
        assert response.status_code == 404
        api.check("get", template, response)
        assert response.json()["error"]["code"] == "not_found"
    page = client.get("/no/such/page")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")


def test_researcher_responses_match_the_schema(schema, admin_client):
    """The study list and a study (200), a study nobody has (404), and anonymous (403)."""
    study = LiveStudyFactory()
    make_pairs(study, 2)
    staff = Api(admin_client, schema)
    rows = staff.call("get", STUDIES, 200)
    assert [row["slug"] for row in rows] == [study.slug]
    staff.call("get", STUDY, 200, params={"slug": study.slug})
    staff.call("get", STUDY, 404, params={"slug": "nope"})
    staff.call("get", STUDY_PROGRESS, 200, params={"slug": study.slug})
    staff.call("get", STUDY_PROGRESS, 404, params={"slug": "nope"})
    path = STUDY.format(slug=study.slug)
    for body, status in (({"status": "closed", "qc_min_gold_accuracy": "off"}, 200),
                         ({"gold_rate": 2}, 400)):  # fmt: skip
        staff.check("patch", STUDY, admin_client.patch(path, body, content_type="application/json"))
        assert staff.seen >= {("patch", STUDY, status)}
    nobody = STUDY.format(slug="nope")
    staff.check("patch", STUDY, admin_client.patch(nobody, {}, content_type="application/json"))
    anonymous = Api(APIClient(), schema)
    anonymous.call("get", STUDIES, 403)
    anonymous.call("get", STUDY, 403, params={"slug": study.slug})
    anonymous.call("get", STUDY_PROGRESS, 403, params={"slug": study.slug})
    anonymous.check("patch", STUDY, anonymous.client.patch(path, {}, format="json"))
    # The agreement report: flags only (202) until a worker stored the first snapshot.
    slug = {"slug": study.slug}
    staff.call("get", AGREEMENT, 202, params=slug)
    staff.call("get", AGREEMENT_IMAGES, 409, params=slug, body={"scene": "s"})
    # A metric's scores, so the snapshot carries its accuracy-against-delta curve (points
    # with a null accuracy here: no pair has a label).
    Score.objects.bulk_create(
        [Score(metric="musiq", version="v1", image=image, value=float(image.pk),
               lower_better=False) for image in Image.objects.filter(scene__study=study)]
    )  # fmt: skip
    agreement_snapshot_refresh(study=study)
    body = staff.call("get", AGREEMENT, 200, params=slug)
    assert body["tie_band_curves"]["musiq"][0] == {"delta": 0.0, "accuracy": None, "n_pairs": 0}
    # The scatter's images, per scene.
    (scene,) = body["scenes"]
    block = staff.call("get", AGREEMENT_IMAGES, 200, params=slug, body={"scene": scene})
    assert {image["scene"] for image in block["images"]} == {scene}
    staff.call("get", AGREEMENT_IMAGES, 400, params=slug)
    staff.call("get", AGREEMENT_IMAGES, 404, params=slug, body={"scene": "nope"})
    anonymous.call("get", AGREEMENT_IMAGES, 403, params=slug, body={"scene": "s"})
    staff.call("get", AGREEMENT, 404, params={"slug": "nope"})
    anonymous.call("get", AGREEMENT, 403, params=slug)
    assert ("patch", STUDY, 403) in anonymous.seen
    assert ("patch", STUDY, 404) in staff.seen


def test_every_operation_declares_its_errors_with_the_error_body(schema):
    """Each operation declares exactly the error statuses it returns (ERRORS), and each
    error response is the one error body."""
    operations = {
        (method, path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert set(operations) == set(ERRORS)
    for key, operation in operations.items():
        statuses = {int(status) for status in operation["responses"]}
        assert {s for s in statuses if s >= 400} == ERRORS[key], key
        assert any(s < 300 for s in statuses), key
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                content = response["content"]
                assert list(content) == ["application/json"], (key, status)
                assert content["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"
                }, (key, status)
