"""The one error model: services raise these; the API and commands translate them.

The base classes live below every app so that any layer can raise them and ``config``'s
exception handler can translate them without importing an app. Each app keeps its own
errors beside it, subclassing these.
"""


class DomainError(Exception):
    """A request the domain refuses. ``str(error)`` is the one-line message for people.

    ``field`` names the request field at fault, when there is one; ``fields`` maps every
    field at fault to its messages, when there are several.
    """

    status_code = 400
    code = "invalid"

    def __init__(
        self, message: str, *, field: str | None = None, fields: dict | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        self.fields = fields


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"
