"""Throttles of the annotator API: a study's link is public, so the requests that cost the
most (opening sessions, asking for trials, voting) are counted per client address (votes
per session token). There is no limit per study: a few addresses could use one up for
everyone (what keeps scripts from a study's work is assignment rules 12 and 13).

Every count is shared by all web processes, so a limit is what its setting says: in the
Redis cache when ``IQA_CACHE_URL`` is set (``config.cache.cache_count``: one atomic round
trip with the backend that setting configures), otherwise in the database
(``RateWindow``, one upsert per request), never in one process's memory. Each throttle
counts in fixed windows (one key per window), not DRF's sliding log, whose list of
timestamps would be read and written whole on every request at these rates. The client
address is ``client_address``: an address a client writes into ``X-Forwarded-For`` itself
is never the one counted. A store outage lets requests through (logged): throttling must
not take the study down with it.
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework.throttling import BaseThrottle

from annotation.models import RateWindow
from annotation.services.statements import statement_scope
from config.cache import cache_count

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
LOCAL_CACHES = ("django.core.cache.backends.locmem.LocMemCache",)


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"120/min"`` -> (120, 60); empty: no limit. DRF's rate format."""
    if not rate:
        return None
    number, _, period = rate.partition("/")
    return int(number), PERIODS[period.strip()[0]]


def client_address(request) -> str:
    """The client's address: ``REMOTE_ADDR``, or behind ``IQA_TRUSTED_PROXY_COUNT``
    proxies the address the outermost of them appended to ``X-Forwarded-For`` (the N-th
    from the right). Entries to its left were written by the client and are ignored.
    DRF's rule for ``NUM_PROXIES``, which config/settings.py sets to the same count."""
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.IQA_TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies <= 0 or not forwarded:
        return remote
    hops = [hop.strip() for hop in forwarded.split(",")]
    return hops[-min(proxies, len(hops))] or remote


def shared_cache() -> bool:
    """Whether the default cache is shared by the web processes (Redis), not per process."""
    return settings.CACHES["default"]["BACKEND"] not in LOCAL_CACHES


UPSERT = (
    'INSERT INTO annotation_ratewindow ("key", "count", expires_at) VALUES (%s, 1, %s) '
    'ON CONFLICT ("key") DO UPDATE SET "count" = annotation_ratewindow."count" + 1 '
    'RETURNING "count"'
)


def window_count(key: str, period: int) -> int:
    """Add one to ``key``'s count (a window's key) and return it; the count lives
    ``period`` seconds past now, in the shared store: the cache when it is shared (with
    Redis in one round trip, ``config.cache.cache_count``), else the database."""
    if shared_cache():
        return cache_count(key, timeout=period + 1)
    # PostgreSQL and SQLite (3.35+) both take this upsert; one statement, atomic (in a
    # savepoint when a transaction is open, so that a failure leaves it usable).
    with statement_scope(), connection.cursor() as cursor:
        cursor.execute(UPSERT, [key, timezone.now() + timedelta(seconds=period + 1)])
        return cursor.fetchone()[0]


def rate_windows_sweep() -> int:
    """Delete the database's expired windows (the beat runs it); how many."""
    deleted, _ = RateWindow.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted


class WindowThrottle(BaseThrottle):
    """At most N requests per period and ``ident``, counted per window in the shared
    store (``window_count``)."""

    scope = ""
    rate_setting = ""

    def ident(self, request, view) -> str:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        rate = parse_rate(getattr(settings, self.rate_setting))
        if rate is None:
            return True
        limit, period = rate
        now = time.time()
        window = int(now // period)
        self.retry_after = (window + 1) * period - now
        key = f"throttle:{self.scope}:{self.ident(request, view)[:200]}:{window}"
        try:
            count = window_count(key, period)
        except Exception:
            logger.warning("throttle store unreachable for %s; allowing", self.scope)
            return True
        return count <= limit

    def wait(self) -> float:
        return self.retry_after

    def address(self, request) -> str:
        return client_address(request)


class SessionOpenPerAddressThrottle(WindowThrottle):
    """Sessions opened per client address (``IQA_SESSION_RATE``)."""

    scope = "session-address"
    rate_setting = "IQA_SESSION_RATE"

    def ident(self, request, view) -> str:
        return self.address(request)


class PasswordResetPerAddressThrottle(WindowThrottle):
    """Password reset e-mails asked for per client address (``IQA_PASSWORD_RESET_RATE``)."""

    scope = "password-reset-address"
    rate_setting = "IQA_PASSWORD_RESET_RATE"

    def ident(self, request, view) -> str:
        return self.address(request)


class NextTrialPerAddressThrottle(WindowThrottle):
    """Next-trial requests per client address (``IQA_TRIAL_RATE``)."""

    scope = "trial-address"
    rate_setting = "IQA_TRIAL_RATE"

    def ident(self, request, view) -> str:
        return self.address(request)


class SessionVoteThrottle(WindowThrottle):
    """Votes per session token (a person answers at most a few trials a second)."""

    scope = "vote"
    rate_setting = "IQA_VOTE_RATE"

    def ident(self, request, view) -> str:
        return view.kwargs.get("token", "")
