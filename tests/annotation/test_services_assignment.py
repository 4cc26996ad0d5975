"""Trial assignment through the services, on both implementations (the ``impl`` fixture
runs a test with the PostgreSQL statements and with the portable ORM path): the rules
listed in annotation/services/assignment.py's docstring, the lease sweep, and queries.

Over 400 lines: the tests each numbered rule names, kept together as the rules are."""

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from scipy.stats import binomtest

from annotation import services
from annotation.errors import TrialsHeld, TryAgain
from annotation.models import AnnotatorSession, Pair, Study, Trial, Vote
from annotation.services import assignment, statements
from tests.annotation.sessions import answer, open_session, run_session
from tests.factories import LiveStudyFactory, make_gold_pair, make_pairs

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("ahead", [False, True], ids=["one-by-one", "ahead"])
def test_each_pair_reaches_its_target_and_no_session_sees_a_pair_twice(impl, ahead):
    study = LiveStudyFactory()
    pairs = make_pairs(study, 7, votes=3)
    tokens = [open_session(study) for _ in range(5)]
    # Round robin, one trial at a time, as annotators interleave.
    active = list(tokens)
    while active:
        for token in list(active):
            trial = services.trial_next(token=token, ahead=ahead)
            if trial is None:
                active.remove(token)
                continue
            answer(token, trial)
    counted = Counter(Vote.objects.filter(kind="label").values_list("pair_id", flat=True))
    assert counted == {pair.pk: 3 for pair in pairs}
    seen = Trial.objects.values_list("session_id", "pair_id")
    assert len(seen) == len(set(seen))
    assert all(s.completed_at for s in AnnotatorSession.objects.all())
    assert set(Pair.objects.values_list("n_assigned", flat=True)) == {3}


def test_assignment_takes_the_pairs_with_the_fewest_votes_and_leases_first(impl):
    study = LiveStudyFactory()
    make_pairs(study, 4, votes=2)
    a, b = open_session(study), open_session(study)
    # a holds a lease on one pair and answers three: every pair gets one before any two.
    run_session(a)
    trial = services.trial_next(token=b)
    levels = sorted(Pair.objects.values_list("n_assigned", flat=True))
    assert levels == [1, 1, 1, 2]
    assert trial is not None


def test_asking_again_before_answering_returns_the_same_trial(impl):
    study = LiveStudyFactory()
    make_pairs(study, 3)
    token = open_session(study)
    first = services.trial_next(token=token)
    again = services.trial_next(token=token)
    assert again == first
    assert Trial.objects.count() == 1


def test_an_expired_lease_returns_the_pair_to_the_pool(impl, clock):
    """Rule 5 and 7, and rule 9's ends: a lease that expires unanswered gives its pair to
    the next session; the late answer is still kept and counted (a vote past the target);
    a session that finds every pair left held waits (409 trials_held), and one that finds
    none lacking votes completes, the study being full for it."""
    study = LiveStudyFactory(lease_seconds=600)
    make_pairs(study, 2, votes=1)
    a, b = open_session(study), open_session(study)
    answer(a, services.trial_next(token=a))  # one pair done; a answers (rule 12: it holds)
    held = services.trial_next(token=a)
    pair = Trial.objects.get(pk=held.trial_id).pair
    with pytest.raises(TrialsHeld) as waiting:  # the pair left is a's, and a is answering
        services.trial_next(token=b)
    assert 1 <= waiting.value.retry_after <= study.hold_seconds
    assert services.session_get(token=b).completed_at is None

    c = open_session(study)
    clock.advance(timedelta(seconds=601))
    taken = services.trial_next(token=c)
    assert taken is not None
    assert taken.trial_id != held.trial_id
    assert Trial.objects.get(pk=held.trial_id).released
    pair.refresh_from_db()
    assert pair.n_assigned == 1

    # a's late answer is kept and counted: the one way a pair overshoots its target.
    late = answer(a, held)
    assert late.late
    assert late.created
    on_time = answer(c, taken)
    assert not on_time.late
    pair.refresh_from_db()
    assert pair.n_assigned == 2
    assert Vote.objects.filter(pair=pair, kind="label").count() == 2
    # Every pair has its votes now: the study is full for b, who gets no code.
    assert services.trial_next(token=b) is None
    session = services.session_get(token=b)
    assert (session.outcome, session.n_done) == ("full", 0)


def test_a_reload_after_the_lease_expired_gets_a_new_trial(impl, clock):
    study = LiveStudyFactory(lease_seconds=60)
    make_pairs(study, 3, votes=1)
    token = open_session(study)
    first = services.trial_next(token=token)
    clock.advance(timedelta(seconds=61))
    second = services.trial_next(token=token)
    assert second.trial_id != first.trial_id
    # The abandoned trial can still be answered; the answer is late.
    assert answer(token, first).late


def test_ahead_queues_the_next_trial_which_opens_once_the_open_one_is_answered(impl):
    study = LiveStudyFactory(practice_trials=0)
    make_pairs(study, 6)
    token = open_session(study)
    answer(token, services.trial_next(token=token))  # a counted answer (rule 10)
    first = services.trial_next(token=token, ahead=True)
    assert first.next is not None
    assert first.next.trial_id != first.trial_id
    assert first.next.progress.done == first.progress.done + 1
    # Asking again (a reload) returns the same two trials and issues nothing.
    assert services.trial_next(token=token, ahead=True) == first
    assert Trial.objects.count() == 3
    # Without ``ahead`` the open trial alone, as before.
    assert services.trial_next(token=token).trial_id == first.trial_id

    answer(token, first)
    second = services.trial_next(token=token, ahead=True)
    assert second.trial_id == first.next.trial_id
    assert second.next is not None
    assert len({first.trial_id, second.trial_id, second.next.trial_id}) == 3


def test_ahead_never_issues_past_the_quota(impl):
    study = LiveStudyFactory(trials_per_session=3, practice_trials=1)
    make_pairs(study, 10, votes=1)
    gold = make_gold_pair(study)
    token = open_session(study)
    trials = run_session(token, ahead=True)
    assert len(trials) == 4
    assert Trial.objects.count() == 4  # no trial was queued beyond the quota
    assert not Trial.objects.filter(answered_at__isnull=True).exists()
    assert Trial.objects.get(ordinal=1).pair == gold
    session = services.session_get(token=token)
    assert session.completed_at is not None
    assert session.queued_trial_id is None


def test_the_queued_trial_moves_up_when_the_open_ones_lease_lapses(impl, clock):
    study = LiveStudyFactory(lease_seconds=60, practice_trials=0)
    make_pairs(study, 5, votes=1)
    token = open_session(study)
    answer(token, services.trial_next(token=token))  # a counted answer (rule 10)
    first = services.trial_next(token=token)
    clock.advance(timedelta(seconds=30))
    queued = services.trial_next(token=token, ahead=True).next
    clock.advance(timedelta(seconds=31))  # first lapsed; queued holds for 29 s more
    now_open = services.trial_next(token=token, ahead=True)
    assert now_open.trial_id == queued.trial_id
    assert now_open.next is not None
    assert answer(token, first).late  # the lapsed trial can still be answered, late


def test_sides_are_balanced_over_1000_trials():
    study = LiveStudyFactory()
    make_pairs(study, 1000, votes=1)
    token = open_session(study)
    for _ in range(1000):
        services.trial_next(token=token)
        session = AnnotatorSession.objects.get(token=token)
        services.vote_submit(
            token=token, trial_id=session.open_trial_id, choice="similar", response_ms=1
        )
    left_a = Trial.objects.filter(a_on_left=True).count()
    assert Trial.objects.count() == 1000
    # Two-sided binomial test at 0.1%: the 99.9% interval of a fair coin.
    assert binomtest(left_a, 1000, 0.5).pvalue > 0.001, left_a


def test_practice_comes_first_and_is_never_counted(impl):
    study = LiveStudyFactory(practice_trials=2)
    make_pairs(study, 5, votes=1)
    gold = make_gold_pair(study)
    token = open_session(study)
    trials = run_session(token)
    kinds = list(Trial.objects.order_by("ordinal").values_list("kind", flat=True))
    assert kinds[:2] == ["practice", "practice"]
    assert [t.practice for t in trials[:3]] == [True, True, False]
    # The gold pair is the first practice pair (its answer is obvious).
    assert Trial.objects.get(ordinal=1).pair == gold
    practice_pairs = Trial.objects.filter(kind="practice").values_list("pair_id", flat=True)
    assert not Vote.objects.filter(kind="label", pair_id__in=practice_pairs).exists()
    session = AnnotatorSession.objects.get(token=token)
    assert (session.n_practice_done, session.n_done) == (2, len(trials) - 2)


def test_gold_trials_come_at_the_gold_rate_and_are_not_labels(impl, monkeypatch):
    study = LiveStudyFactory(gold_rate=0.5)
    make_pairs(study, 6, votes=1)
    golds = [make_gold_pair(study) for _ in range(3)]
    draws = iter([0.1, 0.9, 0.1, 0.9, 0.1, 0.9] + [0.9] * 100)
    monkeypatch.setattr(assignment, "_gold_draw", lambda: next(draws))
    token = open_session(study)
    run_session(token)
    kinds = list(Trial.objects.order_by("ordinal").values_list("kind", flat=True))
    assert kinds[:6] == ["gold", "label", "gold", "label", "gold", "label"]
    assert set(Vote.objects.filter(kind="gold").values_list("pair_id", flat=True)) == {
        g.pk for g in golds
    }
    assert {p.n_assigned for p in golds} == {0}


def test_the_quota_completes_the_session(impl):
    study = LiveStudyFactory(trials_per_session=3, practice_trials=1)
    make_pairs(study, 10, votes=1)
    token = open_session(study)
    trials = run_session(token)
    assert len(trials) == 4
    session = services.session_get(token=token)
    assert session.completed_at is not None
    assert services.session_progress(session, session.study).done == 4
    assert services.trial_next(token=token) is None


def test_a_closed_study_issues_no_new_trials_but_keeps_answers(impl):
    study = LiveStudyFactory()
    make_pairs(study, 4)
    token = open_session(study)
    trial = services.trial_next(token=token)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    assert answer(token, trial).created
    assert services.trial_next(token=token) is None
    assert services.session_get(token=token).completed_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_pair_locked_by_another_claim_for_an_instant_does_not_end_the_session():
    """SKIP LOCKED passes over a pair another claim holds; the session waits briefly for it
    instead of being completed while a pair is still free for it."""
    study = LiveStudyFactory()
    (pair,) = make_pairs(study, 1, votes=3)
    token = open_session(study)
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with transaction.atomic():
            Pair.objects.select_for_update().get(pk=pair.pk)
            locked.set()
            release.wait(timeout=10)
        connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    locked.wait(timeout=10)
    threading.Timer(0.01, release.set).start()
    trial = services.trial_next(token=token)
    holder.join(timeout=10)
    assert trial is not None
    assert services.session_get(token=token).completed_at is None


@pytest.mark.django_db(transaction=True)
def test_the_retry_waits_for_a_pair_locked_a_tenth_of_a_second(impl):
    """Rule 11: the retry claims waiting for the lock (no sleep, no spinning), so a pair
    another claim holds for 100 ms (under CLAIM_LOCK_TIMEOUT_MS) is still issued."""
    study = LiveStudyFactory()
    (pair,) = make_pairs(study, 1, votes=3)
    token = open_session(study)
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with transaction.atomic():
            Pair.objects.select_for_update().get(pk=pair.pk)
            locked.set()
            release.wait(timeout=10)
        connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    locked.wait(timeout=10)
    threading.Timer(0.1, release.set).start()
    trial = services.trial_next(token=token)
    holder.join(timeout=10)
    assert trial is not None
    assert services.session_get(token=token).completed_at is None


@pytest.mark.django_db(transaction=True)
def test_a_pair_locked_for_longer_than_the_claim_waits_ends_the_wait_not_the_request(impl):
    """The retry's wait for a locked pair is bounded (CLAIM_LOCK_TIMEOUT_MS): the request
    answers well within a second even while the only pair stays locked, with a conflict to
    retry (409 try_again); the session is not completed (the pair is still there for it),
    and once the lock is gone it gets the pair."""
    study = LiveStudyFactory()
    (pair,) = make_pairs(study, 1, votes=3)
    token = open_session(study)
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with transaction.atomic():
            Pair.objects.select_for_update().get(pk=pair.pk)
            locked.set()
            release.wait(timeout=10)
        connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    locked.wait(timeout=10)
    try:
        started = time.monotonic()
        with pytest.raises(TryAgain) as busy:
            services.trial_next(token=token)
        assert time.monotonic() - started < 1 + assignment.CLAIM_LOCK_TIMEOUT_MS / 1000
        assert busy.value.code == "try_again"
        assert services.session_get(token=token).completed_at is None
    finally:
        release.set()
        holder.join(timeout=10)
    trial = services.trial_next(token=token)
    assert Trial.objects.get(pk=trial.trial_id).pair_id == pair.pk


def test_the_sweep_releases_expired_unanswered_leases_only(impl, clock, sweep_not_due):
    """leases_sweep: expired counted trials unanswered go back (each pair once per lease);
    live leases, answered trials, and practice or gold trials (no lease) stay."""
    study = LiveStudyFactory(lease_seconds=60, practice_trials=1)
    pairs = make_pairs(study, 4, votes=2)
    make_gold_pair(study)
    answered, abandoned, live = open_session(study), open_session(study), open_session(study)
    run_session(answered)  # practice, then every pair once: all answered
    services.trial_next(token=abandoned)  # practice: no lease
    answer(abandoned, services.trial_next(token=abandoned))
    services.trial_next(token=abandoned)  # a counted trial, left to expire
    clock.advance(timedelta(seconds=61))
    services.trial_next(token=live)  # practice
    answer(live, services.trial_next(token=live))
    held = services.trial_next(token=live)  # a live lease
    assert held is not None

    assert services.leases_sweep() == 1
    assert services.leases_sweep() == 0  # idempotent
    released = Trial.objects.get(released=True)
    assert released.session.token == abandoned
    assert released.answered_at is None
    # n_assigned = counted votes + live leases, for every pair.
    for pair in Pair.objects.filter(pk__in=[p.pk for p in pairs]):
        votes = Vote.objects.filter(pair=pair, kind="label").count()
        leases = Trial.objects.filter(
            pair=pair, kind="label", answered_at__isnull=True, released=False
        ).count()
        assert pair.n_assigned == votes + leases


def test_next_trial_sweeps_when_due_through_the_cache_throttle(impl, clock):
    """next-trial sweeps at most once per SWEEP_INTERVAL_S, as the shared cache says (no
    state in the process): not while another sweep just ran, and again once it is due."""
    study = LiveStudyFactory(lease_seconds=60)
    make_pairs(study, 3, votes=1)
    a, b = open_session(study), open_session(study)
    held = services.trial_next(token=a)
    clock.advance(timedelta(seconds=61))
    cache.set(assignment.SWEEP_THROTTLE_KEY, True, timeout=600)  # a sweep just ran
    try:
        assert services.trial_next(token=b) is not None  # a free pair: no need to sweep
        assert not Trial.objects.get(pk=held.trial_id).released
    finally:
        cache.delete(assignment.SWEEP_THROTTLE_KEY)
    services.trial_next(token=b)  # the same open trial; the sweep is due
    assert Trial.objects.get(pk=held.trial_id).released


@pytest.mark.django_db(transaction=True)
def test_next_trial_queries(impl, sweep_not_due, django_assert_num_queries):
    """Next-trial is one statement on the fast path, for a new trial and for the open one
    again. (Outside a transaction, as in a request: no savepoints are counted.)"""
    study = LiveStudyFactory(gold_rate=0)
    make_pairs(study, 4)
    token = open_session(study)
    # A session's first trial starts it (rule 13) on the general path; the rest:
    answer(token, services.trial_next(token=token))
    # ORM: the session read; BEGIN, the pair claimed and counted, the trial inserted and
    # opened, COMMIT; its images read. Then the session read and the open trial's images.
    new, again = (1, 1) if statements.use_fast_path() else (8, 2)  # not on SQLite, nor "orm"
    with django_assert_num_queries(new):
        first = services.trial_next(token=token)
    with django_assert_num_queries(again):
        assert services.trial_next(token=token) == first
