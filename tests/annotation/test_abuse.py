"""The public study link used as an outsider would (issue 24): scripts from up to five
addresses against a real participant from a sixth, over the annotator API (DRF's
APIClient, the addresses as REMOTE_ADDR), on both assignment paths (``impl``).

The study is the issue's: 10 pairs x 3 votes, 10 trials per session. The participant
answers at a human pace (the services' clock moves 2 s per answer) and, told that every
trial left is held (409 ``trials_held``), waits as long as ``Retry-After`` says. What the
scripts can hold without answering is bounded by assignment rule 13 (two shielded
sessions per address): 5 x 2 of the 30 units, so a full session of 10 is always left."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import override_settings
from rest_framework.test import APIClient

from annotation import services
from annotation.models import AnnotatorSession, Study
from annotation.services.studies import study_configure
from annotation.study_settings import study_settings_validate
from tests.factories import LiveStudyFactory, make_pairs

pytestmark = pytest.mark.django_db

PROLIFIC_ID = "5f1e2d3c4b5a69788796a5b4"  # 24 hexadecimal digits
MTURK_ID = "A1B2C3D4E5F6G7"
SCRIPT_ADDRESSES = [f"198.51.100.{n}" for n in range(1, 6)]
PERSON_ADDRESS = "203.0.113.7"
PACE = timedelta(seconds=2)
QUOTA = 10


def sessions_url(slug: str) -> str:
    return f"/api/v1/studies/{slug}/sessions"


def ask(api: APIClient, token: str, ahead: bool = False):
    return api.get(f"/api/v1/sessions/{token}/next-trial" + ("?ahead=1" if ahead else ""))


def send(api: APIClient, token: str, trial_id: str, choice: str = "right"):
    body = {"trial_id": trial_id, "choice": choice, "response_ms": 2100}
    return api.post(f"/api/v1/sessions/{token}/votes", body, format="json")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


def issue_study() -> Study:
    study = LiveStudyFactory(
        trials_per_session=QUOTA, practice_trials=0, min_response_ms=400, lease_seconds=30,
        completion_url="https://app.prolific.com/submissions/complete?cc=X",
    )  # fmt: skip
    make_pairs(study, 10, votes=3)
    return study


# --- the scripts ------------------------------------------------------------------------


class Scripts:
    """Throwaway sessions from five addresses, each opening as many as the throttle lets
    it (``IQA_SESSION_RATE``) and playing one strategy; ``act`` runs one more round."""

    def __init__(self, study: Study, clock, strategy: str) -> None:
        self.study, self.clock, self.strategy = study, clock, strategy
        self.clients = [APIClient(REMOTE_ADDR=address) for address in SCRIPT_ADDRESSES]
        self.tokens: list[tuple[APIClient, str]] = []
        self.refused = 0

    def open_all(self) -> None:
        for client in self.clients:
            while True:
                response = client.post(sessions_url(self.study.slug), {}, format="json")
                if response.status_code == 429:
                    self.refused += 1
                    break
                assert response.status_code == 201, response.content
                self.tokens.append((client, response.json()["token"]))

    def act(self) -> None:
        """One round: never answer (ask and hold), answer once too fast then hold,
        answer everything at once, ask again after every expiry, or take over an id."""
        for client, token in self.tokens:
            response = ask(client, token, ahead=True)
            if response.status_code != 200:
                continue
            trial = response.json()
            if self.strategy == "answer-once-then-hold":
                session = AnnotatorSession.objects.get(token=token)
                if session.n_done + session.n_practice_done == 0 and not session.votes.exists():
                    send(client, token, trial["trial_id"])  # in 0 ms: too fast to count
                    ask(client, token, ahead=True)
            elif self.strategy == "answer-fast":
                # Every trial answered the moment it arrives, until none is left for it.
                while True:
                    send(client, token, trial["trial_id"])
                    following = ask(client, token, ahead=True)
                    if following.status_code != 200:
                        break
                    trial = following.json()


def run_person(study: Study, clock, scripts: Scripts | None = None) -> AnnotatorSession:
    """A Prolific participant from another address who answers at a human pace, waits
    when told to, and lets the scripts act between answers."""
    person = APIClient(REMOTE_ADDR=PERSON_ADDRESS)
    body = {
        "participant_id": PROLIFIC_ID,
        "source": "prolific",
        "external_ids": {"STUDY_ID": "s", "SESSION_ID": "real-1"},
    }
    response = person.post(sessions_url(study.slug), body, format="json")
    assert response.status_code == 201, response.content
    token = response.json()["token"]
    for _ in range(200):
        if scripts is not None:
            scripts.act()
        response = ask(person, token, ahead=True)
        if response.status_code == 204:
            break
        if response.status_code == 409:
            assert_error(response, 409, "trials_held")
            clock.advance(timedelta(seconds=int(response["Retry-After"])))
            continue
        assert response.status_code == 200, response.content
        clock.advance(PACE)
        assert send(person, token, response.json()["trial_id"]).status_code == 201
    return AnnotatorSession.objects.get(token=token)


def assert_no_code_without_work(study: Study) -> None:
    for session in AnnotatorSession.objects.filter(study=study):
        if services.session_code_earned(session, study):
            assert session.n_done >= QUOTA


# --- 1. a study's work goes to people who do it ---------------------------------------------


# The throttle's limit sets how many sessions the scripts get, not what they can hold:
# eight a minute per address keeps the test short (bench/abuse.py runs the defaults).
@pytest.mark.slow
@override_settings(IQA_SESSION_RATE="8/min")
@pytest.mark.parametrize(
    "strategy", ["never-answer", "answer-once-then-hold", "answer-fast", "renew-on-expiry"]
)
def test_scripts_from_five_addresses_leave_a_real_participant_a_full_session(impl, clock, strategy):
    """Whatever sessions the throttle lets five addresses open, and whatever they do with
    them (hold, answer once too fast and hold, answer everything at once, renew their
    trials on every expiry), a participant from a sixth address who answers at a human
    pace gets a full session and the code; no script gets a code."""
    study = issue_study()
    scripts = Scripts(study, clock, strategy)
    scripts.open_all()
    assert scripts.refused == len(SCRIPT_ADDRESSES)  # each address ran into its limit
    scripts.act()
    if strategy == "renew-on-expiry":
        clock.advance(timedelta(seconds=31))  # every script trial expired: ask again
        scripts.act()
    person = run_person(study, clock, scripts)
    assert (person.n_done, person.outcome) == (QUOTA, "quota")
    assert services.session_code_earned(person, study)
    assert_no_code_without_work(study)


@pytest.mark.slow
@override_settings(IQA_SESSION_RATE="8/min")
def test_a_session_flood_leaves_a_real_participant_a_full_session(impl, clock):
    """Sessions opened as fast as each address may, every minute, each asking for a trial
    and walking away: the participant still gets a full session."""
    study = issue_study()
    scripts = Scripts(study, clock, "never-answer")
    scripts.open_all()
    scripts.act()
    clock.advance(timedelta(seconds=study.hold_seconds + 1))  # a new minute of shields
    scripts.open_all()  # the throttle's window is wall time: refused again this minute
    scripts.act()
    person = run_person(study, clock, scripts)
    assert (person.n_done, person.outcome) == (QUOTA, "quota")
    assert_no_code_without_work(study)


def test_an_id_takeover_gets_nothing_and_the_participant_keeps_their_session(impl, clock):
    """A script that knows a participant's Prolific id (MTurk worker ids are public) can
    neither take that person's session nor keep them out: with a made-up SESSION_ID it
    gets a session of its own, before or after the participant started; with the id
    alone, once, then a refusal; the participant's session, token and answers stay
    theirs, and their own link (its SESSION_ID) still opens it."""
    study = issue_study()
    thief = APIClient(REMOTE_ADDR=SCRIPT_ADDRESSES[0])
    body = {
        "participant_id": PROLIFIC_ID,
        "source": "prolific",
        "external_ids": {"STUDY_ID": "s", "SESSION_ID": "real-1"},
    }
    before = {**body, "external_ids": {"STUDY_ID": "s", "SESSION_ID": "guess-0"}}
    early = thief.post(sessions_url(study.slug), before, format="json")
    assert early.status_code == 201  # its own session, not a claim on the id
    person = APIClient(REMOTE_ADDR=PERSON_ADDRESS)
    opened = person.post(sessions_url(study.slug), body, format="json")
    assert opened.status_code == 201
    token = opened.json()["token"]
    trial = ask(person, token).json()
    stolen = set()
    for guess in ({**body, "external_ids": {"STUDY_ID": "s", "SESSION_ID": "guess-1"}},
                  {"participant_id": PROLIFIC_ID, "source": "prolific"}):  # fmt: skip
        response = thief.post(sessions_url(study.slug), guess, format="json")
        assert response.status_code == 201
        stolen.add(response.json()["token"])
    assert token not in stolen | {early.json()["token"]}
    bare = {"participant_id": PROLIFIC_ID, "source": "prolific"}
    assert_error(
        thief.post(sessions_url(study.slug), bare, format="json"), 409, "participant_id_in_use"
    )
    clock.advance(PACE)
    assert send(person, token, trial["trial_id"]).status_code == 201
    assert person.get(f"/api/v1/sessions/{token}").json()["progress"]["done"] == 1
    again = person.post(sessions_url(study.slug), body, format="json")
    assert (again.status_code, again.json()["token"]) == (200, token)
    assert AnnotatorSession.objects.get(token=token).votes.count() == 1


def test_a_closed_study_does_not_tell_who_took_part(impl):
    """On a closed study, the answer for an id that took part (without its participation
    id) is byte for byte the answer for one that did not."""
    study = issue_study()
    taken = {"participant_id": PROLIFIC_ID, "source": "prolific",
             "external_ids": {"SESSION_ID": "real-1"}}  # fmt: skip
    APIClient().post(sessions_url(study.slug), taken, format="json")
    study.status = Study.Status.CLOSED
    study.save(update_fields=["status"])
    api = APIClient(REMOTE_ADDR=SCRIPT_ADDRESSES[0])
    took_part = api.post(
        sessions_url(study.slug), {"participant_id": PROLIFIC_ID, "source": "prolific"},
        format="json",
    )  # fmt: skip
    never = api.post(
        sessions_url(study.slug), {"participant_id": "a" * 24, "source": "prolific"},
        format="json",
    )  # fmt: skip
    assert (took_part.status_code, took_part.content) == (never.status_code, never.content)
    assert_error(took_part, 409, "study_not_open")


# --- 2. no code without work ----------------------------------------------------------------


def test_a_session_that_finds_the_study_full_is_told_so_without_a_code(impl, clock):
    """Once every pair has its votes, a newcomer's session ends as ``full``: no completion
    code, no completion URL; the recruiter's link is not followed."""
    study = issue_study()
    for n in range(3):
        run_person_quick = APIClient(REMOTE_ADDR=f"192.0.2.{n}")
        token = run_person_quick.post(sessions_url(study.slug), {}, format="json").json()["token"]
        while (response := ask(run_person_quick, token)).status_code == 200:
            clock.advance(PACE)
            assert send(run_person_quick, token, response.json()["trial_id"]).status_code == 201
    late = APIClient(REMOTE_ADDR=PERSON_ADDRESS)
    token = late.post(sessions_url(study.slug), {}, format="json").json()["token"]
    assert ask(late, token).status_code == 204
    body = late.get(f"/api/v1/sessions/{token}").json()
    assert (body["completed"], body["outcome"]) == (True, "full")
    assert body["completion_code"] is None
    assert body["completion_url"] is None
    assert_no_code_without_work(study)


# --- 4. floods do not lock out --------------------------------------------------------------


@override_settings(IQA_SESSION_RATE="3/min")
def test_opening_sessions_is_throttled_per_address_only():
    """Past IQA_SESSION_RATE an address gets 429 with Retry-After in the error format; five
    addresses at their limit leave a sixth (and every other) free to open sessions: no
    limit per study that a few addresses could use up for everyone."""
    study = LiveStudyFactory()
    for address in SCRIPT_ADDRESSES:
        script = APIClient(REMOTE_ADDR=address)
        statuses = [
            script.post(sessions_url(study.slug), {}, format="json").status_code for _ in range(4)
        ]
        assert statuses == [201, 201, 201, 429]
    refused = APIClient(REMOTE_ADDR=SCRIPT_ADDRESSES[0]).post(
        sessions_url(study.slug), {}, format="json"
    )
    assert_error(refused, 429, "throttled")
    assert 1 <= int(refused["Retry-After"]) <= 60
    person = APIClient(REMOTE_ADDR=PERSON_ADDRESS)
    assert person.post(sessions_url(study.slug), {}, format="json").status_code == 201


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


# --- participant ids and sources --------------------------------------------------------------


def test_a_study_that_requires_participant_ids_refuses_sessions_without_one():
    study = LiveStudyFactory(require_participant_id=True)
    api = APIClient()
    url = sessions_url(study.slug)
    error = assert_error(api.post(url, {}, format="json"), 403, "participant_id_required")
    assert error["field"] == "participant_id"
    assert "Prolific or MTurk" in error["message"]
    lab = {"participant_id": "lab-7", "source": ""}
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


def test_source_is_a_recruiter_the_platform_knows_or_empty():
    """``source`` is written into the sessions table: only the recruiters the page knows,
    or nothing (a formula such as =HYPERLINK(...) never reaches a researcher's sheet)."""
    study = LiveStudyFactory()
    api = APIClient()
    for source in ('=HYPERLINK("https://evil.example")', "+SUM(1,1)", "lab", "Prolific"):
        response = api.post(sessions_url(study.slug), {"source": source}, format="json")
        error = assert_error(response, 400, "invalid")
        assert error["field"] == "source"
    for source in ("", "prolific", "mturk"):
        response = api.post(sessions_url(study.slug), {"source": source}, format="json")
        assert response.status_code == 201
    assert AnnotatorSession.objects.count() == 3


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


def test_expired_counting_windows_are_swept():
    """Throttle counts kept in the database (no shared cache) are deleted by the beat's
    task once their window is over; current ones stay."""
    from datetime import timedelta as td

    from django.utils import timezone

    from annotation import tasks
    from annotation.models import RateWindow

    RateWindow.objects.create(key="old", count=3, expires_at=timezone.now() - td(seconds=1))
    RateWindow.objects.create(key="now", count=1, expires_at=timezone.now() + td(seconds=60))
    assert tasks.rate_windows_sweep() == 1
    assert list(RateWindow.objects.values_list("key", flat=True)) == ["now"]
