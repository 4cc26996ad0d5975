"""One DRF exception handler: domain errors and DRF errors become the same JSON shape.

``{"error": {"code": str, "message": str, "fields": {name: [messages]}?}}``
"""

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotation.errors import DomainError


def _flatten(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return "; ".join(_flatten(item) for item in detail)
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DomainError):
        return Response({"error": {"code": exc.code, "message": str(exc)}}, status=exc.status_code)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    body: dict[str, Any] = {"code": "error", "message": _flatten(response.data)}
    if isinstance(exc, exceptions.APIException):
        body["code"] = exc.default_code
        if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
            body["fields"] = response.data
            body["message"] = _flatten(response.data)
        elif isinstance(response.data, dict) and "detail" in response.data:
            body["message"] = str(response.data["detail"])
    if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS:
        body["code"] = "throttled"
    response.data = {"error": body}
    return response
