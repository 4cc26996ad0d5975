"""Annotator sessions: open one, find one by its token, its progress, its completion.

Trial assignment is in ``assignment.py`` and answers in ``votes.py``.
"""

import re
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from annotation import clock
from annotation.errors import ParticipantIdInvalid, ParticipantIdRequired, StudyNotOpen
from annotation.models import AnnotatorSession, Study
from core.errors import NotFound

# The recruiters' participant ids, as the annotator page sends them (``source``):
# Prolific's PROLIFIC_PID is a 24-digit hexadecimal id; MTurk's API documents a worker id
# (CustomerId) as ``^A[A-Z0-9]+$`` of at most 64 characters. Checked no narrower than
# documented, so that no real participant is refused.
PARTICIPANT_ID_FORMATS = {
    "prolific": ("Prolific", re.compile(r"[0-9a-fA-F]{24}"), "24 hexadecimal digits"),
    "mturk": ("MTurk worker", re.compile(r"A[A-Z0-9]{1,63}"), "'A' and capital letters or digits"),
}


@dataclass(frozen=True)
class Progress:
    done: int
    total: int

    @classmethod
    def of(
        cls,
        *,
        n_done: int,
        n_practice_done: int,
        practice_trials: int,
        quota: int,
        completed: bool = False,
    ) -> "Progress":
        """A session's trials answered (practice included) of all it will be shown; a
        completed session is at its end, whatever its quota says."""
        done = n_done + n_practice_done
        return cls(done=done, total=done if completed else practice_trials + quota)


@dataclass(frozen=True)
class SessionState:
    session: AnnotatorSession
    created: bool = False


def session_progress(session: AnnotatorSession, study: Study) -> Progress:
    return Progress.of(
        n_done=session.n_done, n_practice_done=session.n_practice_done,
        practice_trials=study.practice_trials, quota=study.trials_per_session,
        completed=session.completed_at is not None,
    )  # fmt: skip


def session_open(
    *,
    study_slug: str,
    participant_id: str = "",
    source: str = "",
    external_ids: dict | None = None,
    client_info: dict | None = None,
) -> SessionState:
    """Open a session on a live study; the same participant gets their session back.

    A study with ``require_participant_id`` takes only sessions with a Prolific or MTurk
    id of that recruiter's format (``PARTICIPANT_ID_FORMATS``): ``ParticipantIdRequired``
    without one, ``ParticipantIdInvalid`` for a malformed one.
    """
    study = Study.objects.filter(slug=study_slug).first()
    if study is None:
        raise NotFound(f"no study with slug {study_slug!r}")
    if study.require_participant_id:
        _check_participant_id(participant_id, source)
    if participant_id:
        existing = _session_of_participant(study, participant_id)
        if existing is not None:
            return SessionState(session=existing)
    if study.status != Study.Status.LIVE:
        raise StudyNotOpen(f"study {study_slug!r} is {study.status}, not open to annotators")
    try:
        with transaction.atomic():
            session = AnnotatorSession.objects.create(
                study=study,
                participant_id=participant_id,
                source=source,
                external_ids=external_ids or {},
                client_info=client_info or {},
                created_at=clock.now(),
            )
    except IntegrityError:
        # The same participant opened a session at the same moment (two tabs).
        existing = _session_of_participant(study, participant_id) if participant_id else None
        if existing is None:
            raise
        return SessionState(session=existing)
    return SessionState(session=session, created=True)


def _check_participant_id(participant_id: str, source: str) -> None:
    known = PARTICIPANT_ID_FORMATS.get(source)
    if not participant_id or known is None:
        raise ParticipantIdRequired(
            "this study takes participants from Prolific or MTurk only: open it from the "
            "link the recruiting platform shows you (it carries your participant id)",
            field="participant_id",
        )
    recruiter, pattern, described = known
    if not pattern.fullmatch(participant_id):
        raise ParticipantIdInvalid(
            f"{participant_id!r} is not a {recruiter} id ({described})",
            field="participant_id",
        )


def _session_of_participant(study: Study, participant_id: str) -> AnnotatorSession | None:
    return (
        AnnotatorSession.objects.select_related("study")
        .filter(study=study, participant_id=participant_id)
        .first()
    )


def session_get(*, token: str) -> AnnotatorSession:
    session = AnnotatorSession.objects.select_related("study").filter(token=token).first()
    if session is None:
        raise NotFound("unknown session token", field="token")
    return session


def session_complete(*, session_id: int) -> None:
    """Mark the session completed (once) and let go of its open and queued trials."""
    AnnotatorSession.objects.filter(pk=session_id, completed_at__isnull=True).update(
        completed_at=clock.now(), open_trial=None, queued_trial=None
    )
