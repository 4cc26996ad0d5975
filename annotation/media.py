"""Serving the content-addressed image store, under the researcher side's access rule.

Files are named by their sha256, so a URL never changes content: browsers may cache
them for good. Who may fetch a file is ``selectors.media_file_access``: anyone for the
images of live and closed studies (annotators need them), only researchers who may see
the study for a draft's; any other file answers 404, as a missing one does. A front
proxy (nginx) can serve MEDIA_ROOT instead (IQA_SERVE_MEDIA=0), but then it serves
every file to anyone.
"""

import mimetypes
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_GET

from annotation.selectors import media_file_access


@require_GET
def media_file(request: HttpRequest, path: str) -> FileResponse:
    root = Path(settings.MEDIA_ROOT).resolve()
    try:
        candidate = (root / path).resolve()
    except (ValueError, OSError):  # a NUL byte or a name the file system refuses
        raise Http404("no such image") from None
    if not candidate.is_relative_to(root / "images") or not candidate.is_file():
        raise Http404("no such image")
    access = media_file_access(user=request.user, path=candidate.relative_to(root).as_posix())
    if access is None:
        raise Http404("no such image")
    content_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
    response = FileResponse(open(candidate, "rb"), content_type=content_type)  # noqa: SIM115
    # The content never changes; a draft's image is for this user only, so no shared
    # cache (a proxy) may keep it.
    response["Cache-Control"] = f"{access}, max-age=31536000, immutable"
    return response
