"""The public link against scripts, through the services on both assignment paths
(``impl``): assignment rules 9, 10 and 12 to 14 (annotation/services/assignment.py).

People here answer at a human pace: the services' clock moves ``PACE`` between a trial's
issue and its answer (more than the study's ``min_response_ms``)."""

from collections import Counter
from datetime import timedelta

import pytest
from django.db.models import F
from django.test import override_settings

from analysis.selectors import study_votes
from annotation import services
from annotation.errors import TrialsHeld
from annotation.models import AnnotatorSession, Pair, Trial, Vote
from dataset.export import votes_frame
from tests.annotation.sessions import answer
from tests.factories import LiveStudyFactory, make_pairs

pytestmark = pytest.mark.django_db

PACE = timedelta(seconds=2)


def opened(study, address: str = "") -> str:
    return services.session_open(study_slug=study.slug, address=address).session.token


def answered(clock, token: str, trial, choice: str = "left"):
    """An answer at a human pace."""
    clock.advance(PACE)
    return answer(token, trial, choice)


def counted_per_pair(study) -> Counter:
    votes = Vote.objects.filter(pair__study=study, kind="label", too_fast=False)
    return Counter(votes.values_list("pair_id", flat=True))


# --- rule 9: full, or wait ----------------------------------------------------------------


def test_pairs_held_by_people_answering_make_a_newcomer_wait_not_complete(impl, clock):
    """A session that finds every pair left held by people answering is told to try again
    (never completed with nothing); when those people answer, the study is full for it:
    completed as ``full``, without the completion code."""
    study = LiveStudyFactory(min_response_ms=400)
    make_pairs(study, 2, votes=1)
    a, b = opened(study, "10.0.0.1"), opened(study, "10.0.0.2")
    first, second = services.trial_next(token=a), services.trial_next(token=b)
    late = opened(study, "10.0.0.3")
    with pytest.raises(TrialsHeld) as waiting:
        services.trial_next(token=late)
    # The first hold lapses when a's sign of a person (its first trial) is hold_seconds
    # old; people answer sooner, so the page is told to ask again within seconds.
    assert "come free in 60 s" in str(waiting.value)
    assert waiting.value.retry_after == 5
    assert waiting.value.code == "trials_held"
    assert services.session_get(token=late).completed_at is None
    answered(clock, a, first)
    answered(clock, b, second)
    assert services.trial_next(token=late) is None
    session = services.session_get(token=late)
    assert session.outcome == AnnotatorSession.Outcome.FULL
    assert not services.session_code_earned(session, study)
    assert counted_per_pair(study) == {pair.pk: 1 for pair in Pair.objects.filter(study=study)}


# --- rule 10: one lease before a counted answer ---------------------------------------------


def test_a_session_without_a_counted_answer_holds_one_lease(impl, clock):
    """ahead queues a counted trial only for a session with a counted answer: a session
    that has answered nothing (a script that opens and asks) holds one pair at most."""
    study = LiveStudyFactory(min_response_ms=400)
    make_pairs(study, 5)
    token = opened(study)
    first = services.trial_next(token=token, ahead=True)
    assert first.next is None
    assert Trial.objects.filter(session__token=token).count() == 1
    answered(clock, token, first)
    second = services.trial_next(token=token, ahead=True)
    assert second.next is not None  # the page's preload, once the person has answered


# --- rule 12: leases hold while their session answers ---------------------------------------


def test_a_stopped_sessions_lease_does_not_keep_its_pair_from_others(impl, clock):
    """A session that stops answering keeps its pairs for hold_seconds after its last
    answer; then a session with nothing else to do gets the pair too. Should the stopped
    one answer after all, that is one vote past the target, counted."""
    study = LiveStudyFactory(min_response_ms=400, hold_seconds=60)
    make_pairs(study, 2, votes=1)
    stopped = opened(study, "10.0.0.1")
    answered(clock, stopped, services.trial_next(token=stopped))
    held = services.trial_next(token=stopped)  # the last pair, then silence
    newcomer = opened(study, "10.0.0.2")
    clock.advance(timedelta(seconds=50))
    with pytest.raises(TrialsHeld) as waiting:  # 50 s since its answer: still holding
        services.trial_next(token=newcomer)
    assert "come free in 10 s" in str(waiting.value)
    clock.advance(timedelta(seconds=11))
    taken = services.trial_next(token=newcomer)
    assert taken is not None
    pair_of = {t.pk: t.pair_id for t in Trial.objects.all()}
    assert pair_of[taken.trial_id] == pair_of[held.trial_id]
    answered(clock, newcomer, taken)
    late = answered(clock, stopped, held)
    assert late.created
    assert not late.late  # within its lease: set aside, not expired
    assert sorted(counted_per_pair(study).values()) == [1, 2]
    frame = votes_frame(study, set())
    assert frame["past_target"].sum() == 1


def test_leases_of_sessions_answering_keep_their_pairs(impl, clock):
    """A lease of a session that answers within hold_seconds keeps its pair; a queued
    trial never claims past anyone."""
    study = LiveStudyFactory(min_response_ms=400)
    make_pairs(study, 3, votes=1)
    holder, other = opened(study, "10.0.0.1"), opened(study, "10.0.0.2")
    answered(clock, holder, services.trial_next(token=holder))
    first = services.trial_next(token=holder, ahead=True)  # the two pairs left, leased
    assert first.next is not None
    clock.advance(timedelta(seconds=30))
    with pytest.raises(TrialsHeld):
        services.trial_next(token=other)

    study = LiveStudyFactory(min_response_ms=400)
    make_pairs(study, 3, votes=1)
    walker, arriving = opened(study, "10.0.0.1"), opened(study, "10.0.0.2")
    answered(clock, walker, services.trial_next(token=walker))
    assert services.trial_next(token=walker, ahead=True).next is not None  # both leased
    clock.advance(timedelta(seconds=61))  # the walker stopped: its leases stop holding
    mine = services.trial_next(token=arriving, ahead=True)
    assert mine is not None  # the open trial, past the walker's lease
    assert mine.next is None  # nothing queued past it


def test_newcomers_claim_past_a_set_aside_lease_once_not_again_and_again(impl, clock):
    """The case of the review (issue 31, item 2): two pairs at target 1 leased by two
    sessions that went silent; six sessions arrive. Two get a pair each past those leases;
    their own leases hold while they answer, so the other four wait, then find the study
    full. Each pair ends with at most one vote past its target (its set-aside lease,
    answered after all)."""
    study = LiveStudyFactory(min_response_ms=400)
    pairs = make_pairs(study, 2, votes=1)
    silent = [opened(study, f"10.0.1.{n}") for n in range(2)]
    held = [services.trial_next(token=token) for token in silent]
    clock.advance(timedelta(seconds=study.hold_seconds + 1))
    arriving = [opened(study, f"10.0.2.{n}") for n in range(6)]
    got, waiting = {}, []
    for token in arriving:
        try:
            got[token] = services.trial_next(token=token)
        except TrialsHeld:
            waiting.append(token)
    assert len(got) == 2
    assert len(waiting) == 4
    for token, trial in got.items():
        answered(clock, token, trial)
    for token, trial in zip(silent, held, strict=True):
        answered(clock, token, trial)
    for token in waiting:
        assert services.trial_next(token=token) is None
        assert services.session_get(token=token).outcome == "full"
    assert counted_per_pair(study) == {pair.pk: 2 for pair in pairs}


@pytest.mark.slow
def test_honest_sessions_started_together_give_every_pair_its_target(impl, clock):
    """Forty people from forty addresses open the study at the same moment (a Prolific
    launch) on 30 pairs x 3 votes, with practice and gold, and answer at a human pace;
    those who find every pair held wait and ask again. Every pair ends at exactly its
    target, nobody is completed early, and exactly the sessions at their quota get the
    code."""
    study = LiveStudyFactory(
        min_response_ms=400, practice_trials=2, gold_rate=0.1, trials_per_session=6
    )
    pairs = make_pairs(study, 30, votes=3)
    from tests.factories import make_gold_pair

    for _ in range(3):
        make_gold_pair(study)
    tokens = [opened(study, f"198.51.100.{n}") for n in range(40)]
    shown = {token: services.trial_next(token=token, ahead=True) for token in tokens}
    waits = 0
    for _ in range(200):
        if not shown:
            break
        clock.advance(timedelta(milliseconds=1500))
        for token in list(shown):
            trial = shown[token]
            if trial is not None:
                assert not answer(token, trial).too_fast
            try:
                following = services.trial_next(token=token, ahead=True)
            except TrialsHeld:
                waits += 1
                shown[token] = None
                continue
            if following is None:
                del shown[token]
            else:
                shown[token] = following
    assert not shown
    assert counted_per_pair(study) == {pair.pk: 3 for pair in pairs}
    assert not Pair.objects.filter(study=study, gold_answer="", n_assigned__gt=F("target_votes"))
    # Everyone ends: at the quota with the code, or finding the study full without it.
    for session in AnnotatorSession.objects.filter(study=study):
        earned = services.session_code_earned(session, study)
        if session.outcome == "quota":
            assert (session.n_done, earned) == (6, True)
        else:
            assert (session.outcome, earned) == ("full", False)
            assert session.n_done < 6
    assert waits > 0  # the launch outran the work: some waited, none was completed early


# --- rule 13: shields per address ---------------------------------------------------------


@override_settings(IQA_SHIELDS_PER_ADDRESS=2)
def test_only_the_first_sessions_of_an_address_are_shielded(impl, clock):
    """Of the sessions of one address that start within hold_seconds, the first
    IQA_SHIELDS_PER_ADDRESS are shielded: their leases hold before they answer; the
    others' do not, so a person from another address gets those pairs at once. A session
    with IQA_PROVEN_ANSWERS counted answers holds whatever its address."""
    study = LiveStudyFactory(min_response_ms=400)
    make_pairs(study, 4, votes=1)
    script = [opened(study, "203.0.113.9") for _ in range(4)]
    for token in script:
        assert services.trial_next(token=token) is not None  # all four pairs leased
    shielded = list(
        AnnotatorSession.objects.filter(token__in=script)
        .order_by("started_at", "id")
        .values_list("shielded", flat=True)
    )
    assert shielded == [True, True, False, False]
    person = opened(study, "192.0.2.1")
    got = []
    for _ in range(2):
        trial = services.trial_next(token=person)
        got.append(Trial.objects.get(pk=trial.trial_id).pair_id)
        answered(clock, person, trial)
    unshielded = Trial.objects.filter(session__token__in=script, session__shielded=False)
    assert sorted(got) == sorted(unshielded.values_list("pair_id", flat=True))
    with pytest.raises(TrialsHeld):  # the shielded two hold theirs for now
        services.trial_next(token=person)
    # A new window: the address's earlier starts are more than hold_seconds old.
    clock.advance(timedelta(seconds=study.hold_seconds + 1))
    assert AnnotatorSession.objects.get(token=opened(study, "203.0.113.9")).shielded is False
    later = opened(study, "203.0.113.9")
    make_pairs(study, 1, votes=1)
    services.trial_next(token=later)
    assert AnnotatorSession.objects.get(token=later).shielded


# --- rule 14: answers too fast to count ------------------------------------------------------


def test_answers_faster_than_min_response_ms_count_for_nothing(impl, clock):
    """An answer sooner than min_response_ms after its trial's issue (server clock) is
    kept with its server time, marked too_fast, and counts for nothing: not toward the
    quota, not for its pair (the lease is given back at once), not as a sign of a person,
    not in the analysis. The client's response_ms is kept beside it, whatever it says."""
    study = LiveStudyFactory(min_response_ms=400, trials_per_session=2)
    make_pairs(study, 2, votes=1)
    token = opened(study)
    trial = services.trial_next(token=token)
    pair_id = Trial.objects.get(pk=trial.trial_id).pair_id
    active_before = AnnotatorSession.objects.get(token=token).active_at
    clock.advance(timedelta(milliseconds=150))
    result = services.vote_submit(
        token=token, trial_id=trial.trial_id, choice="left", response_ms=2500
    )
    assert result.too_fast
    vote = Vote.objects.get(pk=result.vote_id)
    assert (vote.response_ms, vote.too_fast) == (2500, True)
    assert 150 <= vote.server_ms < 400  # the clock's 150 ms, and the test's own time
    session = AnnotatorSession.objects.get(token=token)
    assert session.n_done == 0
    assert session.active_at == active_before
    assert Pair.objects.get(pk=pair_id).n_assigned == 0  # given back
    assert study_votes(study).empty

    trial = services.trial_next(token=token)
    clock.advance(timedelta(milliseconds=450))
    result = services.vote_submit(token=token, trial_id=trial.trial_id, choice="left")
    assert not result.too_fast
    vote = Vote.objects.get(pk=result.vote_id)
    assert not vote.too_fast
    assert 450 <= vote.server_ms < 700
    assert AnnotatorSession.objects.get(token=token).n_done == 1
    # Quality control reads the server's time (the client said nothing this time).
    assert list(study_votes(study)["response_ms"]) == [vote.server_ms]
    exported = votes_frame(study, set())
    assert list(exported["too_fast"]) == [True, False]
    assert exported["server_ms"].iloc[1] == vote.server_ms
