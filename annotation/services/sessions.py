"""Annotator sessions: open one, find one by its token, its progress, its completion.

Trial assignment is in ``assignment.py`` and answers in ``votes.py``.
"""

import re
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils.crypto import salted_hmac

from annotation import clock
from annotation.errors import (
    ParticipantIdInUse,
    ParticipantIdInvalid,
    ParticipantIdRequired,
    StudyNotOpen,
)
from annotation.models import AnnotatorSession, Study, Trial, Vote
from annotation.services.studies import study_lock_writable, study_writable
from core.errors import NotFound

# The recruiters' participant ids, as the annotator page sends them (``source``):
# Prolific's PROLIFIC_PID is a 24-digit hexadecimal id; MTurk's API documents a worker id
# (CustomerId) as ``^A[A-Z0-9]+$`` of at most 64 characters. Checked no narrower than
# documented, so that no real participant is refused.
PARTICIPANT_ID_FORMATS = {
    "prolific": ("Prolific", re.compile(r"[0-9a-fA-F]{24}"), "24 hexadecimal digits"),
    "mturk": ("MTurk worker", re.compile(r"A[A-Z0-9]{1,63}"), "'A' and capital letters or digits"),
}
# The recruiters the annotator page knows (``source``); "" for a plain link.
SOURCES = ("", *PARTICIPANT_ID_FORMATS)
# Each recruiter's id of one participation, among the ids its link carries: it resumes a
# session from another browser (a participant id alone does not: it is not a secret).
ASSIGNMENT_ID_KEYS = {"prolific": "SESSION_ID", "mturk": "assignmentId"}


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


def address_key(address: str) -> str:
    """A keyed hash of a client address: sessions from one address can be counted
    together (assignment rule 13) without storing the address itself."""
    return salted_hmac("annotation.session-address", address).hexdigest()[:32] if address else ""


def session_open(
    *,
    study_slug: str,
    participant_id: str = "",
    source: str = "",
    external_ids: dict | None = None,
    client_info: dict | None = None,
    address: str = "",
) -> SessionState:
    """Open a session on a live study (``address``: the client's, for rule 13).

    A participation opens one session: a participant id with the recruiter's id of that
    participation (Prolific ``SESSION_ID``, MTurk ``assignmentId``, in ``external_ids``),
    or a participant id alone. Opened again with the recruiter's id, the session is
    resumed (that id is a secret of the participant's link); with the participant id
    alone it is refused (``ParticipantIdInUse`` on a live study; on a closed one
    ``StudyNotOpen``, the answer anyone else gets there, so the answer does not tell who
    took part). A participant id with another participation's id is another
    participation: a session of its own, never the first one's (the recruiter decides
    who may take part twice). The page resumes with the session's token, not through
    here. A draft is ``NotFound``, as an unknown slug.

    A study with ``require_participant_id`` takes only sessions with a Prolific or MTurk
    id of that recruiter's format (``PARTICIPANT_ID_FORMATS``): ``ParticipantIdRequired``
    without one, ``ParticipantIdInvalid`` for a malformed one.
    """
    study = Study.objects.filter(slug=study_slug).first()
    if study is None or study.status == Study.Status.DRAFT:
        raise NotFound(f"no study with slug {study_slug!r}")
    if study.require_participant_id:
        _check_participant_id(participant_id, source)
    external_ids = external_ids or {}
    assignment_id = str(external_ids.get(ASSIGNMENT_ID_KEYS.get(source, ""), ""))[:200]
    if participant_id:
        existing = _session_of(study, participant_id, assignment_id)
        if existing is not None:
            return SessionState(session=_resumed(existing, study))
    if study.status != Study.Status.LIVE:
        raise StudyNotOpen(f"study {study_slug!r} is {study.status}, not open to annotators")
    try:
        with transaction.atomic():
            session = AnnotatorSession.objects.create(
                study=study,
                participant_id=participant_id,
                assignment_id=assignment_id,
                source=source,
                external_ids=external_ids,
                client_info=client_info or {},
                address_key=address_key(address),
                created_at=clock.now(),
            )
    except IntegrityError:
        # The same participation opened a session at the same moment (two tabs).
        existing = _session_of(study, participant_id, assignment_id) if participant_id else None
        if existing is None:
            raise
        return SessionState(session=_resumed(existing, study))
    return SessionState(session=session, created=True)


def _resumed(existing: AnnotatorSession, study: Study) -> AnnotatorSession:
    """``existing``, opened again with its participation's id; the refusal when it has
    none (the same on a closed study as for someone who never took part)."""
    if existing.assignment_id:
        return existing
    if study.status != Study.Status.LIVE:
        raise StudyNotOpen(f"study {study.slug!r} is {study.status}, not open to annotators")
    raise ParticipantIdInUse(
        "this participant id has a session in this study already: continue it in the "
        "browser where you started, or open this study again from your recruiter's link "
        "for that submission",
        field="participant_id",
    )


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


def _session_of(study: Study, participant_id: str, assignment_id: str) -> AnnotatorSession | None:
    return (
        AnnotatorSession.objects.select_related("study")
        .filter(study=study, participant_id=participant_id, assignment_id=assignment_id)
        .first()
    )


def session_get(*, token: str) -> AnnotatorSession:
    session = AnnotatorSession.objects.select_related("study").filter(token=token).first()
    if session is None:
        raise NotFound("unknown session token", field="token")
    return session


def session_complete(*, session_id: int, outcome: str) -> None:
    """Mark the session completed (once), saying why (``AnnotatorSession.Outcome``), and
    let go of its open and queued trials."""
    AnnotatorSession.objects.filter(pk=session_id, completed_at__isnull=True).update(
        completed_at=clock.now(), outcome=outcome, open_trial=None, queued_trial=None
    )


def counted_trials_required(study: Study) -> int:
    """Counted trials a session needs for the completion code: ``min_counted_trials``,
    at most the quota (the quota when unset)."""
    quota = study.trials_per_session
    return min(study.min_counted_trials or quota, quota)


def session_code_earned(session: AnnotatorSession, study: Study) -> bool:
    """Whether the session has earned the completion code: completed, with the counted
    trials the study asks for. A session that found the study full (or closed) with fewer
    is told so and gets no code: the recruiter would pay for work not done. A pilot
    session (a researcher's preview) never earns one."""
    if session.pilot:
        return False
    return session.completed_at is not None and session.n_done >= counted_trials_required(study)


# --- pilot sessions: a researcher previews the study as an annotator sees it -----------


def pilot_session_open(*, study: Study, user) -> AnnotatorSession:
    """A pilot session of ``study`` for ``user`` (who may see it): the annotator page in
    preview mode, on a draft or a live study. Its answers are stored as pilot data
    (``pilot``: left out of every count, label, quality control, report and export by
    default) and never take a pair's target. A closed study is refused
    (``StudyNotOpen``), an archived one too (``StudyArchived``)."""
    study_writable(study)
    if study.status == Study.Status.CLOSED:
        raise StudyNotOpen(
            f"study {study.slug!r} is closed: set it back to draft or live to preview it"
        )
    return AnnotatorSession.objects.create(
        study=study,
        pilot=True,
        piloted_by=user,
        source="pilot",
        created_at=clock.now(),
    )


@dataclass(frozen=True)
class PilotDeleted:
    sessions: int
    votes: int


def pilot_data_delete(*, study: Study) -> PilotDeleted:
    """Delete the study's pilot sessions with their trials and votes; annotators' data is
    untouched. Pilot trials hold no pair's count (issued released), so no count moves."""
    study_writable(study)
    with transaction.atomic():
        study_lock_writable(study)
        pilots = AnnotatorSession.objects.select_for_update().filter(study=study, pilot=True)
        ids = list(pilots.values_list("pk", flat=True))
        votes, _ = Vote.objects.filter(session_id__in=ids).delete()
        AnnotatorSession.objects.filter(pk__in=ids).update(open_trial=None, queued_trial=None)
        Trial.objects.filter(session_id__in=ids).delete()
        AnnotatorSession.objects.filter(pk__in=ids).delete()
    return PilotDeleted(sessions=len(ids), votes=votes)
