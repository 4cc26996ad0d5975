"""A researcher's decision to exclude an annotator by hand, or to re-include one.

Every decision is kept (the history is the audit trail); the latest one for a session is
in force and overrides the automatic quality-control rules for that session. The rules
themselves are untouched: ``analysis.quality.apply_decisions`` combines the two.
"""

from django.db import transaction

from annotation import clock
from annotation.models import AnnotatorSession, ExclusionDecision, Study
from annotation.services.studies import study_lock_writable, study_writable
from core.errors import DomainError, NotFound

REASON_MAX_CHARS = 500


def annotator_exclusion_decide(
    *, study: Study, annotator: str, excluded: bool, reason: str, user
) -> ExclusionDecision:
    """Record that ``annotator`` (the session's pseudonym, as exports show it) is excluded
    (``excluded``) or re-included by hand, for ``reason``, by ``user``.

    The reason is required and kept on one line (whitespace runs become one space), at
    most ``REASON_MAX_CHARS`` characters. An annotator not in the study is ``NotFound``.
    """
    study_writable(study)
    reason = " ".join(str(reason or "").split())
    if not reason:
        raise DomainError("a reason is required", field="reason")
    if len(reason) > REASON_MAX_CHARS:
        raise DomainError(
            f"the reason is {len(reason)} characters long; at most {REASON_MAX_CHARS}",
            field="reason",
        )
    with transaction.atomic():
        study_lock_writable(study)
        session = (
            AnnotatorSession.objects.select_for_update()
            .filter(study=study, pseudonym=annotator, pilot=False)
            .first()
        )
        if session is None:
            raise NotFound(f"no annotator {annotator!r} in study {study.slug!r}", field="annotator")
        return ExclusionDecision.objects.create(
            session=session,
            excluded=bool(excluded),
            reason=reason,
            decided_by=user if user is not None and user.is_authenticated else None,
            decided_at=clock.now(),
        )
