"""Throttles of the annotator API: a study's link is public, so the requests that cost the
most (opening sessions, asking for trials) are counted per client address and per study.

Counts live in the Django cache, as the vote throttle's do: one count for all web
processes when ``IQA_CACHE_URL`` is Redis, one per process with the local-memory default.
Each throttle counts in fixed windows (``cache.incr`` on one key per window: two Redis
round trips, whatever the rate), not DRF's sliding log, whose list of timestamps would be
read and written whole on every request at these rates. The client address is
``client_address``: an address a client writes into ``X-Forwarded-For`` itself is never
the one counted. A cache outage lets requests
through (logged): throttling must not take the study down with it.
"""

import logging
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


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


class WindowThrottle(BaseThrottle):
    """At most N requests per period and ``ident``, counted in the cache per window."""

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
            try:
                count = cache.incr(key)
            except ValueError:  # the window's first request (or its key was evicted)
                count = 1 if cache.add(key, 1, timeout=period + 1) else cache.incr(key)
        except Exception:
            logger.warning("cache unreachable for the %s throttle; allowing", self.scope)
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


class SessionOpenPerStudyThrottle(WindowThrottle):
    """Sessions opened per study, from all addresses (``IQA_SESSION_RATE_PER_STUDY``)."""

    scope = "session-study"
    rate_setting = "IQA_SESSION_RATE_PER_STUDY"

    def ident(self, request, view) -> str:
        return view.kwargs.get("slug", "")


class NextTrialPerAddressThrottle(WindowThrottle):
    """Next-trial requests per client address (``IQA_TRIAL_RATE``)."""

    scope = "trial-address"
    rate_setting = "IQA_TRIAL_RATE"

    def ident(self, request, view) -> str:
        return self.address(request)


class SessionVoteThrottle(SimpleRateThrottle):
    """Votes per session token (a person answers at most a few trials a second)."""

    scope = "vote"

    def get_rate(self) -> str:
        return settings.IQA_VOTE_RATE

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": view.kwargs.get("token", "")}
