"""The public study link used as an outsider would (issue 16): scripts that open sessions
and hold leases, floods from one address, sessions without a recruiter's id. Through the
annotator API (DRF's APIClient), on both paths of the assignment rules (``impl``)."""

import io

import pytest
from django.core.management import call_command
from django.db.models import F
from django.test import override_settings
from rest_framework.test import APIClient

from annotation.models import AnnotatorSession, Pair, Study, Trial
from annotation.services.studies import study_configure
from annotation.study_settings import study_settings_validate
from tests.factories import LiveStudyFactory, make_pairs

pytestmark = pytest.mark.django_db

PROLIFIC_ID = "5f1e2d3c4b5a69788796a5b4"  # 24 hexadecimal digits
MTURK_ID = "A1B2C3D4E5F6G7"


def sessions_url(slug: str) -> str:
    return f"/api/v1/studies/{slug}/sessions"


def open_(api: APIClient, study: Study) -> int:
    return api.post(sessions_url(study.slug), {}, format="json").status_code


def ask(api: APIClient, token: str, ahead: bool = False):
    return api.get(f"/api/v1/sessions/{token}/next-trial" + ("?ahead=1" if ahead else ""))


def answer(api: APIClient, token: str, trial_id: str) -> None:
    body = {"trial_id": trial_id, "choice": "right", "response_ms": 2100}
    response = api.post(f"/api/v1/sessions/{token}/votes", body, format="json")
    assert response.status_code == 201, response.content


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


# --- lease hoarding (assignment rule 12) ---------------------------------------------------


@pytest.mark.slow
def test_hoarded_leases_do_not_starve_a_real_participant(impl):
    """The script of issue 16 on `make run`'s demo: 80 throwaway sessions (no participant
    id) answer their 2 practice trials and ask next-trial?ahead=1 once, which leaves no
    pair below its target unleased. A participant who arrives then still gets a full
    session: 2 practice trials, then the quota's 40 trials (counted ones and the gold rate's
    checks), not a 204 after practice."""
    call_command("build_demo", stdout=io.StringIO())
    study = Study.objects.get(slug="demo")
    assert (study.practice_trials, study.trials_per_session) == (2, 40)
    script = APIClient()  # one address, under the default throttles
    for _ in range(80):
        response = script.post(sessions_url("demo"), {}, format="json")
        assert response.status_code == 201, response.content
        token = response.json()["token"]
        for _ in range(2):
            trial = ask(script, token).json()
            assert trial["practice"]
            answer(script, token, trial["trial_id"])
        assert ask(script, token, ahead=True).status_code == 200
    pairs = Pair.objects.filter(study=study, gold_answer="")
    assert not pairs.filter(n_assigned__lt=F("target_votes")).exists()  # all leased
    leases = Trial.objects.filter(kind="label", answered_at__isnull=True, released=False)
    assert leases.count() >= pairs.count() * 3

    person = APIClient(REMOTE_ADDR="203.0.113.7")
    body = {"participant_id": PROLIFIC_ID, "source": "prolific"}
    response = person.post(sessions_url("demo"), body, format="json")
    assert response.status_code == 201, response.content
    token = response.json()["token"]
    shown = []
    while (response := ask(person, token, ahead=True)).status_code == 200:
        trial = response.json()
        shown.append(trial["practice"])
        answer(person, token, trial["trial_id"])
    assert response.status_code == 204
    assert shown == [True, True] + [False] * 40
    session = AnnotatorSession.objects.get(token=token)
    assert (session.n_practice_done, session.n_done) == (2, 40)
    kinds = Trial.objects.filter(session=session).values_list("kind", flat=True)
    assert list(kinds).count("label") >= 30  # gold at 10%: the rest are counted trials


# --- throttles --------------------------------------------------------------------------


@override_settings(IQA_SESSION_RATE="3/min", IQA_SESSION_RATE_PER_STUDY="5/min")
def test_opening_sessions_is_throttled_per_address_and_per_study():
    """Past IQA_SESSION_RATE an address gets 429 with Retry-After in the error format;
    another address still opens sessions until the study's own rate
    (IQA_SESSION_RATE_PER_STUDY) is reached; another study is counted apart."""
    study, other_study = LiveStudyFactory(), LiveStudyFactory()
    script = APIClient(REMOTE_ADDR="198.51.100.1")
    statuses = [
        script.post(sessions_url(study.slug), {}, format="json").status_code for _ in range(4)
    ]
    assert statuses == [201, 201, 201, 429]
    refused = script.post(sessions_url(study.slug), {}, format="json")
    assert_error(refused, 429, "throttled")
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert AnnotatorSession.objects.count() == 3

    second = APIClient(REMOTE_ADDR="198.51.100.2")
    statuses = [
        second.post(sessions_url(study.slug), {}, format="json").status_code for _ in range(3)
    ]
    assert statuses == [201, 201, 429]  # the study's 5 sessions this minute
    third = APIClient(REMOTE_ADDR="198.51.100.3")
    assert third.post(sessions_url(study.slug), {}, format="json").status_code == 429
    assert third.post(sessions_url(other_study.slug), {}, format="json").status_code == 201


@override_settings(IQA_TRIAL_RATE="4/min")
def test_next_trial_is_throttled_per_address():
    study = LiveStudyFactory()
    make_pairs(study, 5)
    script = APIClient(REMOTE_ADDR="198.51.100.1")
    token = script.post(sessions_url(study.slug), {}, format="json").json()["token"]
    statuses = [ask(script, token).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    assert int(ask(script, token)["Retry-After"]) >= 1
    # The same session from another address (a person whose network changed) is served.
    assert ask(APIClient(REMOTE_ADDR="198.51.100.9"), token).status_code == 200


@override_settings(IQA_SESSION_RATE="2/min")
def test_x_forwarded_for_counts_only_behind_a_trusted_proxy():
    """With no trusted proxy a client's own X-Forwarded-For changes nothing; behind
    IQA_TRUSTED_PROXY_COUNT=1 the address the proxy appended (the last one) is counted,
    never one the client wrote before it."""
    study = LiveStudyFactory()
    proxy = APIClient(REMOTE_ADDR="10.0.0.1")

    def open_as(forwarded: str) -> int:
        response = proxy.post(
            sessions_url(study.slug), {}, format="json", HTTP_X_FORWARDED_FOR=forwarded
        )
        return response.status_code

    assert [open_as(f"192.0.2.{n}") for n in range(3)] == [201, 201, 429]
    with override_settings(IQA_TRUSTED_PROXY_COUNT=1):
        # Two people behind the proxy; the first forges a new address on every request.
        assert [open_as(f"203.0.113.{n}, 192.0.2.50") for n in range(3)] == [201, 201, 429]
        assert open_as("192.0.2.51") == 201


# --- participant ids --------------------------------------------------------------------


def test_a_study_that_requires_participant_ids_refuses_sessions_without_one():
    study = LiveStudyFactory(require_participant_id=True)
    api = APIClient()
    url = sessions_url(study.slug)
    error = assert_error(api.post(url, {}, format="json"), 403, "participant_id_required")
    assert error["field"] == "participant_id"
    assert "Prolific or MTurk" in error["message"]
    lab = {"participant_id": "lab-7", "source": "lab"}
    assert_error(api.post(url, lab, format="json"), 403, "participant_id_required")
    for source, bad in [("prolific", "p123"), ("prolific", "{{%PROLIFIC_PID%}}"),
                        ("prolific", PROLIFIC_ID + "0"), ("mturk", "a1b2c3d4e5f6"),
                        ("mturk", "W1B2C3D4E5F6"), ("mturk", "A")]:  # fmt: skip
        body = {"participant_id": bad, "source": source}
        error = assert_error(api.post(url, body, format="json"), 400, "participant_id_invalid")
        assert error["field"] == "participant_id"
    assert AnnotatorSession.objects.count() == 0
    for source, good in [("prolific", PROLIFIC_ID), ("mturk", MTURK_ID)]:
        body = {"participant_id": good, "source": source}
        assert api.post(url, body, format="json").status_code == 201
    # A study that does not require them takes anyone (a lab study, `make run`'s demo).
    open_study = LiveStudyFactory()
    assert api.post(sessions_url(open_study.slug), {}, format="json").status_code == 201


def test_participant_ids_are_required_by_default_where_there_is_a_completion_url():
    """New studies with a completion URL (crowd workers who are paid) require ids unless
    told otherwise; configure_study turns it on or off through the one validator."""
    base = {"slug": "s", "design": "pairwise"}
    assert study_settings_validate(base, partial=False)["require_participant_id"] is False
    paid = {**base, "completion_url": "https://app.prolific.com/submissions/complete?cc=X"}
    assert study_settings_validate(paid, partial=False)["require_participant_id"] is True
    told = {**paid, "require_participant_id": False}
    assert study_settings_validate(told, partial=False)["require_participant_id"] is False
    study = LiveStudyFactory()
    out = io.StringIO()
    call_command("configure_study", study.slug, "--require-participant-id", "on", stdout=out)
    assert "participant id required" in out.getvalue()
    study.refresh_from_db()
    assert study.require_participant_id
    study_configure(study=study, require_participant_id=False)
    study.refresh_from_db()
    assert not study.require_participant_id
