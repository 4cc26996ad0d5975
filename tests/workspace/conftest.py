"""Fixtures of the researcher side's tests."""

from collections.abc import Iterator

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_login_throttle() -> Iterator[None]:
    """Each test starts with no login attempts counted (the throttle counts in the cache,
    per client address, and every test client comes from 127.0.0.1)."""
    cache.clear()
    yield
    cache.clear()
