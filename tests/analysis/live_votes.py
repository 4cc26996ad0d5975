"""Votes as the annotator API's statements write them, for the live report's tests: a
session's answer (trial, vote and counter in one transaction), a refused retry, random
answers from a study's sessions."""

from datetime import timedelta

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import AnnotatorSession, Study, Trial, Vote


def open_sessions(study: Study, n: int, prefix: str = "p") -> None:
    """``n`` sessions of ``study`` (participants ``{prefix}0`` ..)."""
    for k in range(n):
        AnnotatorSession.objects.create(
            study=study, created_at=timezone.now(), participant_id=f"{prefix}{k}"
        )


def vote(session: AnnotatorSession, pair, kind: str, rng: np.random.Generator) -> None:
    """One answer as the vote statement writes it: the trial answered, the vote, the
    session's counter moved, in one transaction."""
    now = timezone.now()
    with transaction.atomic():
        trial = Trial.objects.create(
            session=session, pair=pair, kind=kind, ordinal=session.trials.count(),
            a_on_left=bool(rng.integers(2)), issued_at=now,
            lease_expires_at=now + timedelta(seconds=60), answered_at=now,
        )  # fmt: skip
        choice = str(rng.choice(["left", "similar", "right"], p=[0.45, 0.1, 0.45]))
        preferred = (
            "similar" if choice == "similar" else ("a" if (choice == "left") == trial.a_on_left
                                                   else "b")
        )  # fmt: skip
        Vote.objects.create(
            trial=trial, session=session, pair=pair, kind=kind, choice=choice,
            preferred=preferred, late=bool(rng.random() < 0.2), created_at=now,
            response_ms=None if rng.random() < 0.1 else int(rng.integers(150, 3000)),
        )  # fmt: skip
        field = "n_practice_done" if kind == "practice" else "n_done"
        AnnotatorSession.objects.filter(pk=session.pk).update(**{field: F(field) + 1})


def retry(session: AnnotatorSession) -> None:
    """A second answer to an answered trial: refused by the one-vote-per-trial constraint,
    nothing stored (the API answers the stored vote)."""
    trial = session.trials.exclude(answered_at=None).first()
    if trial is None:
        return
    with pytest.raises(IntegrityError), transaction.atomic():
        Vote.objects.create(
            trial=trial, session=session, pair=trial.pair, kind=trial.kind, choice="left",
            preferred="a", created_at=timezone.now(),
        )  # fmt: skip


def votes_now(study: Study, rng: np.random.Generator, pairs: list, n: int) -> None:
    sessions = list(AnnotatorSession.objects.filter(study=study))
    for _ in range(n):
        session = sessions[int(rng.integers(len(sessions)))]
        used = set(session.trials.values_list("pair_id", flat=True))
        free = [p for p in pairs if p.pk not in used]
        if not free:
            continue
        pair = free[int(rng.integers(len(free)))]
        kind = (
            "gold" if pair.gold_answer else str(rng.choice(["label", "practice"], p=[0.85, 0.15]))
        )
        vote(session, pair, kind, rng)
