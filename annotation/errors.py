"""The one error model: services raise these; the API and commands translate them."""


class DomainError(Exception):
    """A request the domain refuses. ``str(error)`` is the one-line message for people.

    ``field`` names the request field at fault, when there is one.
    """

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class StudyNotOpen(DomainError):
    """The study does not take new annotators (draft or closed)."""

    status_code = 409
    code = "study_not_open"


class StudyImportError(DomainError):
    """An import refused; the message names the file (and manifest line) at fault."""

    code = "import_refused"


class BrokerUnavailable(DomainError):
    """Work could not be queued: the Celery broker did not answer. Nothing runs inline."""

    status_code = 503
    code = "broker_unavailable"
