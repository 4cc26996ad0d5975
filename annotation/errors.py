"""Annotation's own domain errors; the shared base (DomainError, NotFound, Conflict) is in
``core.errors``."""

from core.errors import DomainError


class StudyNotOpen(DomainError):
    """The study does not take new annotators (draft or closed)."""

    status_code = 409
    code = "study_not_open"


class RoleRequired(DomainError):
    """A researcher who sees the study but whose role on it does not allow the request
    (a viewer changing settings, an editor deleting it)."""

    status_code = 403
    code = "role_required"


class StudyArchived(DomainError):
    """The study is archived: read-only until an owner restores it."""

    status_code = 409
    code = "study_archived"


class StudyImportError(DomainError):
    """An import refused; the message names the file (and manifest line) at fault."""

    code = "import_refused"


class BrokerUnavailable(DomainError):
    """Work could not be queued: the Celery broker did not answer. Nothing runs inline."""

    status_code = 503
    code = "broker_unavailable"


class InvalidSetting(DomainError):
    """A study setting outside its bounds (``annotation.study_settings``); ``field`` names it."""

    code = "invalid_setting"


class ParticipantIdRequired(DomainError):
    """The study takes recruited participants only (``require_participant_id``) and the
    session came without a Prolific or MTurk id."""

    status_code = 403
    code = "participant_id_required"


class ParticipantIdInUse(DomainError):
    """A participant id that has a session in this study already, opened again without the
    session's token or the recruiter's id of that participation."""

    status_code = 409
    code = "participant_id_in_use"


class TryAgain(DomainError):
    """A request to repeat after ``retry_after`` seconds (sent as ``Retry-After``)."""

    status_code = 409
    code = "try_again"

    def __init__(self, message: str, *, retry_after: int = 1, field: str | None = None):
        super().__init__(message, field=field)
        self.retry_after = max(1, int(retry_after))


class TrialsHeld(TryAgain):
    """Every pair this session could still get is held by annotators answering now; one
    may come free (an answer that does not come, a lease that lapses)."""

    code = "trials_held"


class ParticipantIdInvalid(DomainError):
    """A recruiter's participant id that does not have that recruiter's format."""

    code = "participant_id_invalid"


class VoteImportError(DomainError):
    """A vote import refused; the message names the file (and line) at fault."""

    code = "vote_import_refused"
