"""Who reaches what on the researcher side: one rule, from ``annotation.selectors``.

A researcher reaches the studies they own or are a member of; staff reach every study;
an annotator's session token and anonymous callers reach nothing. A study the caller
may not see answers 404, exactly like one that does not exist.
"""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from rest_framework.permissions import IsAuthenticated
from rest_framework.throttling import SimpleRateThrottle

from annotation.models import Study
from annotation.selectors import studies_visible, study_get_visible

__all__ = ["IsResearcher", "LoginThrottle", "login_required", "studies_visible", "study_for"]


class IsResearcher(IsAuthenticated):
    """A logged-in (session or token) active user; which studies they reach is the
    selectors' rule, applied per object through ``study_for``."""

    def has_permission(self, request, view) -> bool:
        return super().has_permission(request, view) and request.user.is_active


def study_for(request, slug: str) -> Study:
    """The study ``slug`` as the request's user may see it, else ``NotFound`` (404)."""
    return study_get_visible(user=request.user, slug=slug)


class LoginThrottle(SimpleRateThrottle):
    """Attempts to log in (the login page and ``POST auth/token`` together) per client
    address, at ``IQA_LOGIN_RATE``, counted in the Django cache (shared by the web
    processes when ``IQA_CACHE_URL`` points at Redis)."""

    scope = "login"

    def get_rate(self) -> str:
        return settings.IQA_LOGIN_RATE

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
