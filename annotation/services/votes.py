"""Answers to trials: ``vote_submit``, and ``vote_submit_next`` which also claims the
session's next trial in the same transaction (one round trip per trial).

The rules a vote follows (sides undone, lateness, the recount of a released lease, one
answer per trial, completion, the queued trial moving up, answers too fast to count) are
listed once, with the tests that pin them, in ``assignment.py``'s docstring (rules 6 to 10
and 14). On PostgreSQL a vote is
one statement (``sql/vote.sql``); elsewhere the ORM does the same in a transaction; both
take a ``VoteParams`` and return a ``VoteRow``.
"""

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from django.db import DatabaseError, transaction
from django.db.models import F

from annotation import clock
from annotation.errors import TryAgain
from annotation.models import AnnotatorSession, Pair, Trial, Vote
from annotation.services import sampling, statements
from annotation.services.assignment import trial_next
from annotation.services.sessions import Progress, session_get, session_progress
from annotation.services.trials import IssuedTrial
from annotation.study_settings import Sampling
from core.errors import Conflict, NotFound

logger = logging.getLogger(__name__)

Choice = Literal["left", "similar", "right"]
CHOICES: tuple[str, ...] = get_args(Choice)


@dataclass(frozen=True)
class VoteResult:
    vote_id: uuid.UUID
    created: bool  # False for a retry that returned the stored vote
    late: bool
    too_fast: bool  # rule 14: kept, not counted
    choice: str
    completed: bool
    progress: Progress


@dataclass(frozen=True)
class VoteParams:
    token: str
    trial_id: uuid.UUID
    vote_id: uuid.UUID
    choice: Choice
    response_ms: int | None
    client_info: str  # JSON text
    now: datetime


@dataclass(frozen=True)
class VoteRow:
    """The stored vote and the session after it."""

    vote_id: uuid.UUID
    late: bool
    too_fast: bool
    n_done: int
    n_practice_done: int
    completed_at: datetime | None
    practice_trials: int
    quota: int
    counted: bool  # a label vote that counts (not too fast, not a pilot's)
    sampling: str
    sampling_every: int
    scene_id: int

    def progress(self) -> Progress:
        return Progress.of(
            n_done=self.n_done, n_practice_done=self.n_practice_done,
            practice_trials=self.practice_trials, quota=self.quota,
            completed=self.completed_at is not None,
        )  # fmt: skip


VOTE = statements.Statement.load("vote", VoteParams, VoteRow)


def preferred_side(choice: str, a_on_left: bool) -> str:
    """Rule 6: the sides undone; ``vote.sql`` computes the same in SQL."""
    if choice == "similar":
        return "similar"
    return "a" if (choice == "left") == a_on_left else "b"


def vote_submit(
    *,
    token: str,
    trial_id: uuid.UUID,
    choice: str,
    response_ms: int | None = None,
    client_info: dict | None = None,
) -> VoteResult:
    """Store the answer to a trial exactly once.

    A retry with the same choice returns the stored vote (``created`` false); another
    choice raises ``Conflict``; a trial that is not this session's raises ``NotFound``.
    An answer after the lease expired is kept and marked late.
    """
    return _vote_store(
        token=token, trial_id=trial_id, choice=choice, response_ms=response_ms,
        client_info=client_info, savepoint=True,
    )  # fmt: skip


@dataclass(frozen=True)
class VoteAndNext:
    """A vote and the session's next trial, claimed in the same transaction."""

    vote: VoteResult
    # Whether the next trial was claimed here. False when it could not be at this
    # instant (every pair left held, or busy: next-trial says so, with Retry-After).
    carried: bool
    # With ``carried``: the open trial (``.next`` the queued one, with ``ahead``), or
    # None when nothing is left (the session is completed, as next-trial's 204).
    next_trial: IssuedTrial | None = None


def vote_submit_next(
    *,
    token: str,
    trial_id: uuid.UUID,
    choice: str,
    response_ms: int | None = None,
    client_info: dict | None = None,
    ahead: bool = False,
) -> VoteAndNext:
    """``vote_submit``, then ``trial_next`` in the same transaction: one round trip per
    trial for a page. A retried vote gets the session's open trial: the one the first
    answer claimed while it is unanswered and its lease holds (rules 2 and 5), never a
    second claim. The vote never fails for its next trial: when none can be claimed at
    this instant (``TryAgain``) or the database refuses the claim, the vote is stored and
    ``carried`` is false.
    """
    with transaction.atomic():
        # First in its transaction: a failing vote statement fails it whole, no savepoint.
        vote = _vote_store(
            token=token, trial_id=trial_id, choice=choice, response_ms=response_ms,
            client_info=client_info, savepoint=False,
        )  # fmt: skip
        if vote.completed:
            return VoteAndNext(vote=vote, carried=True, next_trial=None)
        try:
            # A savepoint: a claim the database refuses (a deadlock, a timeout) is undone
            # alone and the vote commits. Without the throttled sweep, whose released
            # pairs would stay locked until this transaction ends.
            with transaction.atomic():
                trial = trial_next(token=token, ahead=ahead, sweep=False)
        except TryAgain:  # TrialsHeld too: next-trial tells the page why, and when
            return VoteAndNext(vote=vote, carried=False)
        except DatabaseError:
            logger.warning("the next trial could not be claimed with the vote", exc_info=True)
            return VoteAndNext(vote=vote, carried=False)
    return VoteAndNext(vote=vote, carried=True, next_trial=trial)


def _vote_store(
    *,
    token: str,
    trial_id: uuid.UUID,
    choice: str,
    response_ms: int | None,
    client_info: dict | None,
    savepoint: bool,
) -> VoteResult:
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {CHOICES}")
    params = VoteParams(
        token=token,
        trial_id=trial_id,
        vote_id=uuid.uuid4(),
        choice=choice,
        response_ms=response_ms,
        client_info=json.dumps(client_info or {}),
        now=clock.now(),
    )
    row = VOTE.run(params, savepoint=savepoint) if statements.use_fast_path() else _vote_orm(params)
    if row is not None:
        if row.counted and row.sampling == Sampling.ACTIVE:
            # After the commit: a plan queued now must see this vote.
            scene_id, every = row.scene_id, row.sampling_every
            transaction.on_commit(lambda: sampling.vote_counted(scene_id=scene_id, every=every))
        return VoteResult(
            vote_id=row.vote_id,
            created=True,
            late=row.late,
            too_fast=row.too_fast,
            choice=choice,
            completed=row.completed_at is not None,
            progress=row.progress(),
        )
    return _vote_existing(token=token, trial_id=trial_id, choice=choice)


def _vote_existing(*, token: str, trial_id: uuid.UUID, choice: str) -> VoteResult:
    """The slow path: a retry, a conflicting answer, or a trial that is not the session's."""
    session = session_get(token=token)
    vote = (
        Vote.objects.filter(trial_id=trial_id, session=session)
        .only("id", "choice", "late", "too_fast")
        .first()
    )
    if vote is None:
        raise NotFound(f"trial {trial_id} was not issued to this session", field="trial_id")
    if vote.choice != choice:
        raise Conflict(
            f"this trial was already answered {vote.choice!r}; a trial takes one answer",
            field="choice",
        )
    return VoteResult(
        vote_id=vote.id,
        created=False,
        late=vote.late,
        too_fast=vote.too_fast,
        choice=vote.choice,
        completed=session.completed_at is not None,
        progress=session_progress(session, session.study),
    )


def _vote_orm(params: VoteParams) -> VoteRow | None:
    """``vote.sql`` through the ORM, in one transaction; ``None`` where it returns no row."""
    now = params.now
    with transaction.atomic():
        trial = (
            Trial.objects.select_for_update()
            .select_related("session__study", "pair")
            .filter(pk=params.trial_id, session__token=params.token, answered_at__isnull=True)
            .first()
        )
        if trial is None:
            return None
        session = trial.session
        study = session.study
        elapsed = now - trial.issued_at
        too_fast = elapsed < timedelta(milliseconds=study.min_response_ms)
        vote = Vote.objects.create(
            id=params.vote_id,
            trial=trial,
            session=session,
            pair_id=trial.pair_id,
            kind=trial.kind,
            choice=params.choice,
            preferred=preferred_side(params.choice, trial.a_on_left),
            late=trial.lease_expires_at < now,
            response_ms=params.response_ms,
            server_ms=min(max(int(elapsed.total_seconds() * 1000), 0), 2**31 - 1),
            too_fast=too_fast,
            pilot=session.pilot,
            client_info=json.loads(params.client_info),
            created_at=now,
        )
        Trial.objects.filter(pk=trial.pk).update(answered_at=now)
        counted_label = trial.kind == Trial.Kind.LABEL and not too_fast and not session.pilot
        if trial.kind == Trial.Kind.LABEL and trial.released != (too_fast or session.pilot):
            # A late answer on a released lease counts again; a too-fast one on a live
            # lease gives it back (rule 14). A pilot's trials are issued released and
            # its answers count nowhere: no count moves (released == pilot).
            delta = 1 if trial.released else -1
            Pair.objects.filter(pk=trial.pair_id).update(n_assigned=F("n_assigned") + delta)
        if counted_label and study.stop_when_decided:
            sampling.pair_decide(pair_id=trial.pair_id, now=now)
        practice = trial.kind == Trial.Kind.PRACTICE
        counted = not practice and not too_fast
        session.n_practice_done += int(practice and not too_fast)
        session.n_done += int(counted)
        if not too_fast:
            session.active_at = now
        if session.open_trial_id == trial.pk:
            session.open_trial_id = session.queued_trial_id
            session.queued_trial_id = None
        elif session.queued_trial_id == trial.pk:
            session.queued_trial_id = None
        if counted and session.completed_at is None and session.n_done >= study.trials_per_session:
            session.completed_at = now
            session.outcome = AnnotatorSession.Outcome.QUOTA
        session.save(
            update_fields=[
                "n_practice_done",
                "n_done",
                "active_at",
                "open_trial",
                "queued_trial",
                "completed_at",
                "outcome",
            ]
        )
    return VoteRow(
        vote_id=vote.id,
        late=vote.late,
        too_fast=vote.too_fast,
        n_done=session.n_done,
        n_practice_done=session.n_practice_done,
        completed_at=session.completed_at,
        practice_trials=study.practice_trials,
        quota=study.trials_per_session,
        counted=counted_label,
        sampling=study.sampling,
        sampling_every=study.sampling_every,
        scene_id=trial.pair.scene_id,
    )
