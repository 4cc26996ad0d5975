"""Serving the content-addressed image store.

Files are named by their sha256, so a URL never changes content: browsers may cache
them for good. A front proxy (nginx) can serve MEDIA_ROOT instead; set
IQA_SERVE_MEDIA=0 then.
"""

import mimetypes
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_GET


@require_GET
def media_file(request: HttpRequest, path: str) -> FileResponse:
    root = Path(settings.MEDIA_ROOT).resolve()
    candidate = (root / path).resolve()
    if not candidate.is_relative_to(root / "images") or not candidate.is_file():
        raise Http404("no such image")
    content_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
    response = FileResponse(open(candidate, "rb"), content_type=content_type)  # noqa: SIM115
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response
