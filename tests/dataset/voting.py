"""Votes written straight to the database, for export tests that need exact counts."""

from datetime import UTC, datetime, timedelta

from annotation.models import AnnotatorSession, Pair, Study, Trial, Vote

START = datetime(2026, 1, 1, tzinfo=UTC)


def cast_votes(study: Study, votes: list[tuple[str, Pair, str]]) -> dict[str, AnnotatorSession]:
    """Store ``(annotator, pair, preferred)`` votes (preferred: a, b or similar) as counted
    answers, sides alternating, 1.5 s each, at fixed times; returns the sessions by name."""
    sessions: dict[str, AnnotatorSession] = {}
    for n, (annotator, pair, preferred) in enumerate(votes):
        if annotator not in sessions:
            sessions[annotator] = AnnotatorSession.objects.create(
                study=study,
                participant_id=annotator,
                pseudonym=f"anon-{annotator}"[:16],
                created_at=START + timedelta(seconds=len(sessions)),
            )
        session = sessions[annotator]
        when = START + timedelta(minutes=1, seconds=n)
        a_on_left = n % 2 == 0
        kind = Trial.Kind.GOLD if pair.gold_answer else Trial.Kind.LABEL
        trial = Trial.objects.create(
            session=session, pair=pair, kind=kind, ordinal=session.n_issued, a_on_left=a_on_left,
            issued_at=when, lease_expires_at=when + timedelta(minutes=5), answered_at=when,
        )  # fmt: skip
        session.n_issued += 1
        session.n_done += 1
        session.save(update_fields=["n_issued", "n_done"])
        if preferred == "similar":
            choice = "similar"
        else:
            choice = "left" if (preferred == "a") == a_on_left else "right"
        Vote.objects.create(
            trial=trial, session=session, pair=pair, kind=kind, choice=choice,
            preferred=preferred, response_ms=1500, created_at=when,
        )  # fmt: skip
    return sessions


QC_OFF = {
    "qc_min_gold_accuracy": None,
    "qc_min_median_response_ms": None,
    "qc_side_bias_alpha": None,
    "qc_min_majority_agreement": None,
    "qc_max_similar_share": None,
}
