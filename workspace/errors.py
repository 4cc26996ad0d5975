"""The researcher side's own domain errors; the shared base is in ``core.errors``."""

from core.errors import DomainError


class InvalidCredentials(DomainError):
    """A username and password that do not log anyone in (wrong, or an inactive account:
    the message does not say which)."""

    code = "invalid_credentials"


class UploadRefused(DomainError):
    """An uploaded zip (or a server folder) that cannot be a study's source; the message
    names the member at fault. Nothing is written."""

    code = "upload_refused"


class UploadTooLarge(DomainError):
    """A request body over ``IQA_UPLOAD_MAX_BYTES``: refused before or while it streams."""

    status_code = 413
    code = "too_large"


class UnsupportedUpload(DomainError):
    """A study upload that is not ``multipart/form-data``."""

    status_code = 415
    code = "unsupported_media_type"


class SlugTaken(DomainError):
    """A new study's slug is another study's already."""

    status_code = 409
    code = "slug_exists"


class NotAllowed(DomainError):
    """Something only staff may do (import a folder on the server)."""

    status_code = 403
    code = "permission_denied"


class TooManyJobs(DomainError):
    """A researcher's imports and exports under way are at ``IQA_JOBS_PER_RESEARCHER``."""

    status_code = 429
    code = "too_many_jobs"
