"""Votes through the services, on both implementations (the ``impl`` fixture): the rules
of annotation/services/assignment.py's docstring that a vote follows, and its queries."""

from datetime import timedelta

import pytest

from annotation import services
from annotation.models import AnnotatorSession, Vote
from annotation.services import statements
from core.errors import Conflict, NotFound
from tests.annotation.sessions import answer, open_session, run_session
from tests.factories import LiveStudyFactory, make_pairs

pytestmark = pytest.mark.django_db


def test_an_answer_within_the_lease_is_not_late(impl, clock):
    study = LiveStudyFactory(lease_seconds=600)
    make_pairs(study, 2, votes=1)
    token = open_session(study)
    trial = services.trial_next(token=token)
    clock.advance(timedelta(seconds=599))
    assert not answer(token, trial).late


def test_retries_store_one_vote_and_another_choice_conflicts(impl):
    study = LiveStudyFactory()
    make_pairs(study, 2)
    token = open_session(study)
    trial = services.trial_next(token=token)
    results = [answer(token, trial, "similar") for _ in range(4)]
    assert [r.created for r in results] == [True, False, False, False]
    assert len({r.vote_id for r in results}) == 1
    with pytest.raises(Conflict, match="already answered 'similar'"):
        answer(token, trial, "right")
    assert Vote.objects.count() == 1
    assert AnnotatorSession.objects.get(token=token).n_done == 1


def test_a_vote_for_another_sessions_trial_is_not_found(impl):
    study = LiveStudyFactory()
    make_pairs(study, 2)
    mine, theirs = open_session(study), open_session(study)
    trial = services.trial_next(token=theirs)
    with pytest.raises(NotFound, match="not issued to this session"):
        answer(mine, trial)
    with pytest.raises(NotFound, match="unknown session"):
        answer("no-such-token", trial)
    assert Vote.objects.count() == 0


def test_the_vote_records_the_sides_the_server_chose(impl):
    study = LiveStudyFactory()
    make_pairs(study, 30, votes=1)
    token = open_session(study)
    for trial in run_session(token, "left"):
        vote = Vote.objects.select_related("trial__pair").get(trial_id=trial.trial_id)
        pair = vote.trial.pair
        left_is_a = trial.left.file == pair.image_a.file
        assert vote.trial.a_on_left == left_is_a
        assert vote.preferred == ("a" if left_is_a else "b")


@pytest.mark.django_db(transaction=True)
def test_vote_queries(impl, django_assert_num_queries):
    """A vote is one statement on the fast path; a retry reads the stored vote after it.
    (Outside a transaction, as in a request: no savepoints are counted.)"""
    study = LiveStudyFactory()
    make_pairs(study, 2)
    token = open_session(study)
    trial = services.trial_next(token=token)
    # ORM: BEGIN, the trial locked, the vote inserted, the trial answered, the session
    # saved, COMMIT.
    fast = statements.use_fast_path()  # not on SQLite, nor with impl "orm"
    with django_assert_num_queries(1 if fast else 6):
        assert answer(token, trial).created
    # Nothing left to answer (ORM: BEGIN, the trial looked for, COMMIT), then the session
    # and its vote.
    with django_assert_num_queries(3 if fast else 5):
        assert not answer(token, trial).created
