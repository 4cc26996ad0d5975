"""A study's zip streamed to disk as it arrives, never held in memory.

The views that take a study upload (the "New study" page and ``POST /api/v1/studies``)
replace the request's upload handlers with one ``ZipUploadHandler`` before anything reads
the body (Django's "Modifying upload handlers on the fly": the page view is
``csrf_exempt`` outside and ``csrf_protect`` inside, and DRF's session authentication
reads the CSRF token only after ``initialize_request`` installed the handler). So no other
handler runs: nothing goes through Django's in-memory handler, whatever
``FILE_UPLOAD_MAX_MEMORY_SIZE`` says.

A body whose Content-Length is over ``IQA_UPLOAD_MAX_BYTES`` is refused before a byte is
read; the file's bytes are also counted while they stream and the upload stops at the
limit (``StopUpload``), its partial file removed at once. The view answers 413 when
``too_large`` is set, and calls ``discard()`` in every case where no import job took the
file.
"""

import contextlib
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile, StopUpload
from django.http import QueryDict
from django.template.defaultfilters import filesizeformat
from django.utils.datastructures import MultiValueDict

FIELD = "file"


def upload_dir() -> Path:
    return Path(settings.IQA_UPLOAD_DIR)


class ZipUploadHandler(FileUploadHandler):
    """Writes the ``file`` field to ``<IQA_UPLOAD_DIR>/upload-*.zip``; skips any other file."""

    chunk_size = 1 << 20

    def __init__(self, request=None) -> None:
        super().__init__(request)
        self.max_bytes = settings.IQA_UPLOAD_MAX_BYTES
        self.too_large = False
        self.path: Path | None = None
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length is not None and content_length > self.max_bytes:
            # Handled: nothing is read, and the request has no fields and no files.
            self.too_large = True
            return QueryDict(encoding=encoding), MultiValueDict()
        return None

    def new_file(self, field_name, file_name, *args, **kwargs) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        if field_name != FIELD or self.path is not None:
            raise SkipFile
        folder = upload_dir()
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix="upload-", suffix=".zip")
        self.path = Path(name)
        # Django's parser closes ``handler.file`` when it stops an upload.
        self.file = os.fdopen(fd, "wb")

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            self.too_large = True
            self.discard()
            # The parser reads the rest of the body (bounded by its Content-Length, which
            # passed the check above) and discards it, so the client reads the 413.
            raise StopUpload(connection_reset=False)
        self.file.write(raw_data)

    def file_complete(self, file_size: int) -> UploadedFile | None:
        self.file.close()
        return UploadedFile(
            file=open(self.path, "rb"),
            name=self.file_name,
            content_type=self.content_type,
            size=file_size,
        )

    def upload_interrupted(self) -> None:
        self.discard()

    def take(self) -> Path | None:
        """The finished upload's path, now the caller's to remove (an import job's)."""
        path, self.path = self.path, None
        return path

    def discard(self) -> None:
        """Remove the file (partial or whole) unless it was taken; safe to call twice."""
        if getattr(self, "file", None) is not None:
            self.file.close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.path = None


def handler_install(request) -> ZipUploadHandler:
    """Make ``ZipUploadHandler`` the request's only upload handler (before the body is read)."""
    handler = ZipUploadHandler(request)
    request.upload_handlers = [handler]
    return handler


def content_length(request) -> int:
    """The request's declared body size (0 when absent or not a number)."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def upload_too_large_error() -> str:
    """What a page says of an upload over ``IQA_UPLOAD_MAX_BYTES``."""
    limit = settings.IQA_UPLOAD_MAX_BYTES
    return (
        f"The upload is larger than the limit of {filesizeformat(limit)} "
        f"({limit:,} bytes, IQA_UPLOAD_MAX_BYTES); nothing was kept. Split the study "
        "or ask the operator to raise the limit."
    )
