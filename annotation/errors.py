"""The one error model: services raise these; the API and commands translate them."""


class DomainError(Exception):
    """A request the domain refuses. ``str(error)`` is the one-line message for people."""

    status_code = 400
    code = "invalid"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class StudyImportError(DomainError):
    """An import refused; the message names the file (and manifest line) at fault."""

    code = "import_refused"


class BrokerUnavailable(DomainError):
    """Work could not be queued: the Celery broker did not answer. Nothing runs inline."""

    status_code = 503
    code = "broker_unavailable"
