"""Fixtures of the annotation tests: both implementations of the annotator hot path."""

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from annotation.services import assignment, statements


@pytest.fixture(params=["statements", "orm"])
def impl(request, monkeypatch):
    """Runs a test with the PostgreSQL statements and with the portable ORM path (what
    SQLite uses), so the two stay equivalent."""
    if request.param == "orm":
        monkeypatch.setattr(statements, "use_fast_path", lambda: False)
    return request.param


@pytest.fixture
def sweep_not_due() -> Iterator[None]:
    """next-trial's throttled lease sweep has just run, so it is not due during the test:
    query counts then do not depend on the second in which the test runs."""
    cache.set(assignment.SWEEP_THROTTLE_KEY, True, timeout=600)
    yield
    cache.delete(assignment.SWEEP_THROTTLE_KEY)
