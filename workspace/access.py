"""Who reaches what on the researcher side: one rule, from ``annotation.selectors``.

A researcher reaches the studies they own or are a member of; staff reach every study;
an annotator's session token and anonymous callers reach nothing. A study the caller
may not see answers 404, exactly like one that does not exist. What they may do with a
study they see is their role's (``Role``): a viewer reads and downloads; an editor also
changes settings and status, scores, exports, excludes, adds scenes and deletes pilot
data; an owner (the study's owner, an owner member, staff) also manages members,
archives and deletes. A request above the caller's role answers 403 ``role_required``.
"""

import math

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from rest_framework.permissions import IsAuthenticated

from annotation.errors import RoleRequired
from annotation.models import Role, Study
from annotation.selectors import studies_visible, study_get_visible
from core.errors import NotFound

__all__ = [
    "IsResearcher",
    "Role",
    "login_locked_out",
    "login_required",
    "studies_visible",
    "study_for",
    "study_for_page",
]


class IsResearcher(IsAuthenticated):
    """A logged-in (session or token) active user; which studies they reach is the
    selectors' rule, applied per object through ``study_for``."""

    def has_permission(self, request, view) -> bool:
        return super().has_permission(request, view) and request.user.is_active


def study_for(request, slug: str, role: str = Role.VIEWER) -> Study:
    """The study ``slug`` as the request's user may see it, else ``NotFound`` (404);
    ``RoleRequired`` (403) when their role on it is below ``role``. ``study.role`` is
    theirs."""
    return study_get_visible(user=request.user, slug=slug, role=role)


def study_for_page(request, slug: str, role: str = Role.VIEWER) -> Study:
    """``study_for`` for a page: a study the caller may not see is the 404 page, a role
    too low the 403 page, which says what the request needs."""
    try:
        return study_for(request, slug, role)
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    except RoleRequired as exc:
        raise PermissionDenied(str(exc)) from exc


def login_locked_out(
    request: HttpRequest, credentials: dict | None, *args, **kwargs
) -> HttpResponse:
    """django-axes' answer to a login from a username and address that failed
    ``IQA_LOGIN_FAILURES`` times within ``IQA_LOGIN_COOLOFF_MINUTES`` (the platform's login
    page, the admin's, ``POST auth/token``): 429 with ``Retry-After``, the API's error body
    under /api/, the login page (saying so) elsewhere. The right password from another
    address, or for another username, is not refused."""
    seconds = math.ceil(settings.AXES_COOLOFF_TIME.total_seconds())
    minutes = max(1, round(seconds / 60))
    message = (
        f"too many failed logins for this username from this address: try again in {minutes} min"
    )
    if request.path.startswith("/api/"):
        body = {"error": {"code": "throttled", "message": message, "field": None}}
        response = JsonResponse(body, status=429)
    else:
        context = {"locked_minutes": minutes, "form": None, "admin": "/admin/" in request.path}
        response = render(request, "workspace/login.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response
