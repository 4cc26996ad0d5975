"""The API's one error format: ``{"error": {"code", "message", "field", "fields"}}``.

Domain errors raised by services and DRF's own errors (validation, parsing, throttling,
authentication) all come out in it, with the field at fault named where there is one.
"""

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import DomainError


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(detail, dict):
        fields: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            fields.update(_flatten(value, name))
        return fields
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        fields = {}
        for index, item in enumerate(detail):
            fields.update(_flatten(item, f"{prefix}[{index}]"))
        return fields
    return {prefix or "non_field_errors": [str(detail)]}


def error_body(code: str, message: str, field: str | None = None, fields=None) -> dict:
    error = {"code": code, "message": message, "field": field}
    if fields:
        error["fields"] = fields
    return {"error": error}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DomainError):
        response = Response(
            error_body(exc.code, str(exc), exc.field, getattr(exc, "fields", None)),
            status=exc.status_code,
        )
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            response["Retry-After"] = str(retry_after)
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "not found")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        message = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in fields.items())
        body = error_body("invalid", message, next(iter(fields), None), fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        body = error_body(str(code), str(detail))
    response.data = body
    return response


API_PREFIX = "/api/"
NO_ROUTE = (
    "no API route matches this path (a slug is letters, digits, '-' and '_'; an id is a UUID)"
)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 404 for a path no route matches (``handler404``): under /api/ the one error
    body, as the schema documents (a path parameter of the wrong form, such as a slug with a
    space, never reaches a view); elsewhere Django's page."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(error_body("not_found", NO_ROUTE), status=404)
    return page_not_found(request, exception)
