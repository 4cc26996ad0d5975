"""Annotator sessions: open one, find one by its token, its progress, its completion.

Trial assignment is in ``assignment.py`` and answers in ``votes.py``.
"""

from dataclasses import dataclass

from django.db import IntegrityError, transaction

from annotation import clock
from annotation.errors import StudyNotOpen
from annotation.models import AnnotatorSession, Study
from core.errors import NotFound


@dataclass(frozen=True)
class Progress:
    done: int
    total: int


@dataclass(frozen=True)
class SessionState:
    session: AnnotatorSession
    created: bool = False


def session_progress(session: AnnotatorSession, study: Study) -> Progress:
    done = session.n_practice_done + session.n_done
    if session.completed_at is not None:
        return Progress(done=done, total=done)
    return Progress(done=done, total=study.practice_trials + study.trials_per_session)


def session_open(
    *,
    study_slug: str,
    participant_id: str = "",
    source: str = "",
    external_ids: dict | None = None,
    client_info: dict | None = None,
) -> SessionState:
    """Open a session on a live study; the same participant gets their session back."""
    study = Study.objects.filter(slug=study_slug).first()
    if study is None:
        raise NotFound(f"no study with slug {study_slug!r}")
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
