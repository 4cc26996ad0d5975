"""What a report needs of the votes (``analysis/tally.py``) is the same whichever way it
is computed: from the votes frame (``agreement_report``), or streamed from the database
session group by session group into the live state's compact arrays (the export), for
any group size; including votes committed while the stream reads."""

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth import get_user_model

from analysis import tally
from analysis.report import study_report
from analysis.selectors import study_data
from annotation.models import AnnotatorSession, Vote
from annotation.services import annotator_exclusion_decide
from tests.analysis.live_votes import open_sessions, vote, votes_now
from tests.factories import LiveStudyFactory, make_gold_pair, make_pairs

pytestmark = pytest.mark.django_db


def _study(seed: int):
    """A study with label, gold and practice answers (late and untimed ones among them)
    from several sessions, rules loose enough to judge them, and one decision by hand."""
    rng = np.random.default_rng(seed)
    study = LiveStudyFactory(slug=f"tally-{seed}", qc_min_answers=2, qc_min_gold=1)
    pairs = make_pairs(study, 12, scenes=3) + [make_gold_pair(study) for _ in range(2)]
    open_sessions(study, int(rng.integers(4, 8)))
    votes_now(study, rng, pairs, 60)
    return study, rng


def _equal(got: tally.VoteTally, expected: tally.VoteTally) -> None:
    pd.testing.assert_frame_equal(got.annotators, expected.annotators)
    pd.testing.assert_frame_equal(got.labels, expected.labels)
    assert (got.votes, got.counted_votes) == (expected.votes, expected.counted_votes)


@pytest.mark.parametrize("seed", range(4))
def test_the_streamed_tally_equals_the_frame_tally_for_any_group_size(seed):
    study, rng = _study(seed)
    staff = get_user_model().objects.create_user(f"staff{seed}", is_staff=True)
    who = sorted(AnnotatorSession.objects.filter(study=study).values_list("pseudonym", flat=True))
    chosen = rng.permutation(len(who))
    # One excluded by hand; for odd seeds another kept by hand (whatever the rules say).
    for n, excluded in enumerate([True, False][: 1 + seed % 2]):
        annotator_exclusion_decide(
            study=study, annotator=who[chosen[n]], reason="test", excluded=excluded, user=staff
        )
    expected = tally.tally_frame(study_data(study))
    assert expected.votes > 0
    assert expected.counted_votes > 0
    assert expected.annotators["excluded"].any()
    data = study_data(study, votes=False)
    assert data.votes.empty
    for chunk in (1, 7, 10_000):  # a session per group (one holds more), a few, all
        _equal(tally.tally_streamed(study, data, chunk=chunk), expected)


def test_a_report_from_the_streamed_tally_equals_the_report_from_the_votes():
    study, _ = _study(11)
    expected = study_report(study_data(study), samples=50, seed=3)
    data = study_data(study, votes=False)
    got = study_report(data, samples=50, seed=3, tally=tally.tally_streamed(study, data, chunk=5))
    for name in ("annotators", "pairs", "image_scores", "agreement", "comparisons"):
        pd.testing.assert_frame_equal(getattr(got, name), getattr(expected, name))
    assert got.counts == expected.counts


def test_a_vote_committed_while_streaming_neither_drops_nor_doubles_a_session(monkeypatch):
    """A vote of a session of the first group committed after the counters were read but
    before that group's votes are: the group reads it, and the next group (which does not
    hold that session) must not take the session for changed or gone."""
    study, rng = _study(21)
    answered = AnnotatorSession.objects.filter(study=study).exclude(n_done=0, n_practice_done=0)
    first = answered.order_by("pk").first()  # the first group's (one session a group)
    free = [p for p in study.pairs.all() if not first.trials.filter(pair=p).exists()]
    assert free  # (a pair it has not answered, for the vote committed mid-stream)
    read = tally.session_votes
    calls = []

    def votes_then_one_more(*, study, session_ids):
        if not calls:
            vote(first, free[0], "gold" if free[0].gold_answer else "label", rng)
        calls.append(list(session_ids))
        return read(study=study, session_ids=session_ids)

    monkeypatch.setattr(tally, "session_votes", votes_then_one_more)
    data = study_data(study, votes=False)
    state = tally.state_streamed(study, data.pairs, data.rules, chunk=1)
    assert len(calls) > 1
    assert calls[0] == [first.pk]
    assert state.votes == Vote.objects.filter(session__study=study).count()
    monkeypatch.setattr(tally, "session_votes", read)
    _equal(tally.tally_state(state, data), tally.tally_frame(study_data(study)))


def test_a_vote_on_a_pair_the_stream_was_not_given_is_an_error():
    """Pairs are read before the votes: a vote on a pair made since (the export turns this
    into "export again") is refused, not dropped or counted elsewhere."""
    study, _ = _study(31)
    data = study_data(study, votes=False)
    voted = Vote.objects.filter(session__study=study).values_list("pair_id", flat=True).first()
    fewer = data.pairs[data.pairs["pair_id"] != voted]
    with pytest.raises(ValueError, match="pairs the live state does not know"):
        tally.state_streamed(study, fewer, data.rules)
