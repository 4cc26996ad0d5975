"""One round trip per trial: a vote that carries the session's next trial
(``services.vote_submit_next``; ``POST .../votes?next=1``), on both assignment paths
(``impl``). The next trial is claimed in the vote's transaction and is exactly what
next-trial would have answered; the vote never fails for it."""

import dataclasses
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from annotation import services
from annotation.errors import TrialsHeld
from annotation.models import AnnotatorSession, Trial, Vote
from annotation.services import statements, votes
from core.errors import NotFound
from tests.annotation.sessions import open_session
from tests.factories import LiveStudyFactory, make_pairs

pytestmark = pytest.mark.django_db

PACE = timedelta(seconds=2)


def vote_next(token: str, trial, choice: str = "left", *, ahead: bool = False):
    return services.vote_submit_next(
        token=token, trial_id=trial.trial_id, choice=choice, response_ms=900, ahead=ahead
    )


def test_each_vote_carries_the_trial_next_trial_would_give(impl):
    """A whole session on votes alone after its first trial: every trial comes with the
    previous vote, each is then the session's open trial (a reload shows it), every pair
    once, and the last vote carries None: the session is completed."""
    study = LiveStudyFactory(trials_per_session=6)
    make_pairs(study, 8)
    token = open_session(study)
    trial = services.trial_next(token=token)
    seen = [trial.trial_id]
    while True:
        result = vote_next(token, trial)
        assert result.vote.created
        assert result.carried
        if result.next_trial is None:
            break
        trial = result.next_trial
        assert services.trial_next(token=token) == trial  # the open trial, not a new claim
        seen.append(trial.trial_id)
    assert len(seen) == 6 == len(set(seen))
    session = AnnotatorSession.objects.get(token=token)
    assert session.n_done == 6
    assert session.completed_at is not None
    assert session.outcome == AnnotatorSession.Outcome.QUOTA
    pairs = Trial.objects.filter(session=session).values_list("pair_id", flat=True)
    assert len(set(pairs)) == 6
    assert result.vote.completed
    assert Trial.objects.filter(session=session).count() == 6  # nothing claimed past the quota


def test_a_retried_vote_returns_the_same_next_trial_and_claims_nothing_more(impl):
    study = LiveStudyFactory()
    make_pairs(study, 5)
    token = open_session(study)
    trial = services.trial_next(token=token)
    first = vote_next(token, trial, ahead=True)
    issued = Trial.objects.count()
    retries = [vote_next(token, trial, ahead=True) for _ in range(3)]
    assert [r.vote.created for r in retries] == [False, False, False]
    assert {r.vote.vote_id for r in retries} == {first.vote.vote_id}
    assert all(r.next_trial == first.next_trial for r in retries)
    assert Trial.objects.count() == issued
    assert Vote.objects.count() == 1


def test_ahead_carries_the_queued_trial_which_opens_on_the_next_vote(impl):
    study = LiveStudyFactory()
    make_pairs(study, 6)
    token = open_session(study)
    trial = services.trial_next(token=token)
    carried = vote_next(token, trial, ahead=True).next_trial
    queued = carried.next
    assert queued is not None
    assert queued.trial_id != carried.trial_id
    assert queued.progress.done == carried.progress.done + 1
    after = vote_next(token, carried, ahead=True).next_trial
    assert after.trial_id == queued.trial_id
    assert after.next is not None


def test_when_every_pair_left_is_held_the_vote_is_stored_without_a_next_trial(impl, clock):
    """Rule 9's wait is next-trial's to tell (409 with Retry-After): the vote commits and
    carries nothing; next-trial then says why."""
    study = LiveStudyFactory(min_response_ms=400)
    make_pairs(study, 3, votes=1)
    tokens = [
        services.session_open(study_slug=study.slug, address=f"10.0.0.{n}").session.token
        for n in range(3)
    ]
    trials = [services.trial_next(token=token) for token in tokens]
    clock.advance(PACE)
    result = vote_next(tokens[0], trials[0])
    assert result.vote.created
    assert not result.carried
    assert result.next_trial is None
    assert Vote.objects.filter(trial_id=trials[0].trial_id, too_fast=False).count() == 1
    session = AnnotatorSession.objects.get(token=tokens[0])
    assert session.n_done == 1
    assert session.completed_at is None


def test_a_refused_vote_claims_nothing(impl):
    study = LiveStudyFactory()
    make_pairs(study, 3)
    mine, theirs = open_session(study), open_session(study)
    trial = services.trial_next(token=theirs)
    before = Trial.objects.count()
    with pytest.raises(NotFound, match="not issued to this session"):
        vote_next(mine, trial)
    assert Trial.objects.count() == before
    assert not Vote.objects.exists()


def test_a_claim_the_database_refuses_leaves_the_vote_standing(impl, monkeypatch):
    """A deadlock or a timeout in the claim is undone alone (its savepoint): the vote is
    stored, without a next trial, and next-trial then serves the session."""
    study = LiveStudyFactory()
    make_pairs(study, 3)
    token = open_session(study)
    trial = services.trial_next(token=token)

    def refused(**kwargs):
        Trial.objects.filter(session__token=token).update(released=True)  # undone with it
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(votes, "trial_next", refused)
    result = vote_next(token, trial)
    assert result.vote.created
    assert not result.carried
    assert Vote.objects.count() == 1
    assert not Trial.objects.filter(released=True).exists()
    monkeypatch.undo()
    assert services.trial_next(token=token) is not None


def test_vote_and_claim_are_one_transaction(impl, monkeypatch):
    """A claim that fails for a reason that is no refusal of the database's (a bug) takes
    the vote with it: nothing is half-written, and the page's retry of the vote stores it
    then."""
    study = LiveStudyFactory()
    make_pairs(study, 3)
    token = open_session(study)
    trial = services.trial_next(token=token)

    def broken(**kwargs):
        raise RuntimeError("the claim failed")

    monkeypatch.setattr(votes, "trial_next", broken)
    with pytest.raises(RuntimeError):
        vote_next(token, trial)
    assert not Vote.objects.exists()
    assert AnnotatorSession.objects.get(token=token).n_done == 0
    monkeypatch.undo()
    assert vote_next(token, trial).vote.created
    assert Vote.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_vote_with_its_next_trial_is_two_statements(sweep_not_due):
    """On PostgreSQL: the vote statement, then next-trial's in a savepoint (so that a
    claim refused by the database leaves the vote standing), in one transaction; no
    throttled lease sweep inside it."""
    if not statements.use_fast_path():
        pytest.skip("PostgreSQL statements only")
    study = LiveStudyFactory(gold_rate=0)
    make_pairs(study, 4)
    token = open_session(study)
    trial = services.trial_next(token=token)
    trial = vote_next(token, trial).next_trial  # past the session's first (general) claim
    with CaptureQueriesContext(connection) as queries:
        result = vote_next(token, trial)
    statements_run = [q["sql"].split("\n", 1)[0] for q in queries.captured_queries]
    assert [s for s in statements_run if s.startswith("--")] == ["-- vote.sql", "-- next_trial.sql"]
    # The claim's savepoint and its statement's (a refused statement falls back to the
    # general path): the vote's statement needs none.
    assert sum(s.startswith("SAVEPOINT") for s in statements_run) == 2
    assert result.carried
    assert result.next_trial is not None


# --- the API ---------------------------------------------------------------------------------


def api_vote(api: APIClient, token: str, trial_id: str, query: str = "?next=1"):
    body = {"trial_id": trial_id, "choice": "left", "response_ms": 900}
    return api.post(f"/api/v1/sessions/{token}/votes{query}", body, format="json")


def test_the_vote_response_carries_the_next_trial_as_next_trial_gives_it():
    api = APIClient()
    study = LiveStudyFactory(trials_per_session=3)
    make_pairs(study, 5)
    token = api.post(f"/api/v1/studies/{study.slug}/sessions", {}, format="json").json()["token"]
    trial_id = api.get(f"/api/v1/sessions/{token}/next-trial").json()["trial_id"]
    response = api_vote(api, token, trial_id, "?next=1&ahead=1")
    assert response.status_code == 201
    body = response.json()
    carried = body["next_trial"]
    assert api.get(f"/api/v1/sessions/{token}/next-trial?ahead=1").json() == carried
    assert carried["next"]["trial_id"] != carried["trial_id"]
    assert body["progress"] == {"done": 1, "total": 3}
    # Without next=1, the vote alone (as before).
    plain = api_vote(api, token, carried["trial_id"], "")
    assert plain.status_code == 201
    assert "next_trial" not in plain.json()
    # A retry of the last vote: the stored vote (200) and the open trial again.
    last = api_vote(api, token, carried["next"]["trial_id"])
    again = api_vote(api, token, carried["next"]["trial_id"])
    assert (last.status_code, again.status_code) == (201, 200)
    assert last.json()["next_trial"] is None is again.json()["next_trial"]  # quota: completed
    assert last.json()["completed"]
    assert api.get(f"/api/v1/sessions/{token}/next-trial").status_code == 204


def test_a_vote_whose_next_trial_cannot_be_claimed_now_says_so_by_its_absence(monkeypatch):
    """No ``next_trial`` key (never null, which means the session is completed): the page
    then asks next-trial, which answers 409 with Retry-After."""
    api = APIClient()
    study = LiveStudyFactory()
    make_pairs(study, 3)
    token = api.post(f"/api/v1/studies/{study.slug}/sessions", {}, format="json").json()["token"]
    trial_id = api.get(f"/api/v1/sessions/{token}/next-trial").json()["trial_id"]

    def held(**kwargs):
        raise TrialsHeld("every trial left is held", retry_after=5)

    monkeypatch.setattr(votes, "trial_next", held)
    response = api_vote(api, token, trial_id, "?next=true&ahead=true")
    assert response.status_code == 201
    assert "next_trial" not in response.json()
    assert response.json()["completed"] is False


def test_next_and_ahead_take_true_as_generated_clients_send_it():
    api = APIClient()
    study = LiveStudyFactory()
    make_pairs(study, 4)
    token = api.post(f"/api/v1/studies/{study.slug}/sessions", {}, format="json").json()["token"]
    trial_id = api.get(f"/api/v1/sessions/{token}/next-trial").json()["trial_id"]
    body = api_vote(api, token, trial_id, "?next=true&ahead=true").json()
    assert "next" in body["next_trial"]


@override_settings(IQA_TRIAL_RATE="2/min")
def test_claims_through_votes_count_against_the_address_trial_rate():
    """A vote's next trial is a claim like next-trial's: over the address's rate the vote
    is still stored, without its next trial; next-trial then answers 429."""
    api = APIClient(REMOTE_ADDR="198.51.100.7")
    study = LiveStudyFactory()
    make_pairs(study, 6)
    token = api.post(f"/api/v1/studies/{study.slug}/sessions", {}, format="json").json()["token"]
    trial_id = api.get(f"/api/v1/sessions/{token}/next-trial").json()["trial_id"]  # 1 of 2
    first = api_vote(api, token, trial_id)  # 2 of 2
    assert first.status_code == 201
    assert first.json()["next_trial"] is not None
    over = api_vote(api, token, first.json()["next_trial"]["trial_id"])
    assert over.status_code == 201
    assert "next_trial" not in over.json()
    assert Vote.objects.count() == 2
    assert api.get(f"/api/v1/sessions/{token}/next-trial").status_code == 429


# --- the statements' placeholders --------------------------------------------------------------


def test_statement_placeholders_become_positional_once_at_load():
    """Each ``%(name)s`` becomes ``$n`` of its field (repeats share one); a name that is no
    field, or a field the statement does not use, is refused at import, not at the first
    request."""
    vote_sql = votes.VOTE.raw_sql
    assert "%(" not in vote_sql
    fields = [f.name for f in dataclasses.fields(votes.VoteParams)]
    assert f"${fields.index('token') + 1}::text" in vote_sql

    @dataclasses.dataclass(frozen=True)
    class Params:
        now: object

    with pytest.raises(ValueError, match=r"vote.sql: %\(\w+\)s is no field of Params"):
        statements.Statement.load("vote", Params, votes.VoteRow)

    @dataclasses.dataclass(frozen=True)
    class Extra(votes.VoteParams):
        unused: int = 0

    with pytest.raises(ValueError, match=r"vote\.sql uses no placeholder for unused"):
        statements.Statement.load("vote", Extra, votes.VoteRow)
