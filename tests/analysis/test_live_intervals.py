"""When the live report redraws its 1,000-resample intervals (analysis.services)."""

from datetime import timedelta

from django.test import override_settings
from django.utils import timezone

from analysis.models import AgreementSnapshot
from analysis.services import _intervals_due


def snapshot_drawn(*, seconds_ago: float, votes: int, answered: int | None) -> AgreementSnapshot:
    drawn = {"as_of": (timezone.now() - timedelta(seconds=seconds_ago)).isoformat(), "votes": votes}
    if answered is not None:
        drawn["answered"] = answered
    return AgreementSnapshot(report={"live": {"intervals": drawn}})


@override_settings(IQA_AGREEMENT_INTERVALS_SECONDS=60, IQA_AGREEMENT_INTERVALS_GROWTH=0.05)
def test_intervals_are_redrawn_on_growth_of_answers_counted_alike():
    """Issue 31, item 6: the growth compared the answers now (practice included) with the
    counted votes when drawn (practice excluded), so with practice at 5% of the votes every
    refresh redrew. Answers are now compared with answers: 1,000 counted votes and 100
    practice answers when drawn, 1,100 answers now, is no growth."""
    drawn = snapshot_drawn(seconds_ago=5, votes=1000, answered=1100)
    assert not _intervals_due(drawn, 1100)
    assert not _intervals_due(drawn, 1154)  # 4.9% more answers
    assert _intervals_due(drawn, 1155)  # 5%
    assert _intervals_due(snapshot_drawn(seconds_ago=61, votes=1000, answered=1100), 1100)
    # Drawn before answers were recorded with them: drawn again once, then counted alike.
    assert _intervals_due(snapshot_drawn(seconds_ago=5, votes=1000, answered=None), 1100)
    assert _intervals_due(AgreementSnapshot(report={}), 0)
