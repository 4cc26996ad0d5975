"""``config.cache.cache_count``: a counter in one Redis round trip (``IQA_CACHE_URL``), and
the same counts through Django's ``add``/``incr`` on any other cache."""

import pytest
import redis
from django.core.cache import caches
from django.test import override_settings

from config.cache import cache_count

REDIS_URL = "redis://127.0.0.1:6379/9"  # a database of its own (14 is the tests' broker)


@pytest.fixture(params=["redis", "locmem"])
def backend(request):
    if request.param == "locmem":
        config = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    else:
        config = {"BACKEND": "config.cache.RedisCache", "LOCATION": REDIS_URL}
    with override_settings(CACHES={"default": config}):
        caches["default"].clear()
        yield request.param
        caches["default"].clear()


def test_a_counter_starts_at_one_and_counts_up_in_the_key_get_reads(backend):
    assert [cache_count("votes:a") for _ in range(3)] == [1, 2, 3]
    assert cache_count("votes:b") == 1
    assert caches["default"].get("votes:a") == 3


def test_a_counter_without_timeout_never_expires_and_one_with_lives_that_long():
    with override_settings(
        CACHES={"default": {"BACKEND": "config.cache.RedisCache", "LOCATION": REDIS_URL}}
    ):
        server = redis.Redis.from_url(REDIS_URL)
        server.flushdb()
        cache_count("forever")
        cache_count("window", timeout=60)
        cache_count("window", timeout=5)  # an existing counter keeps its expiry
        (forever,) = server.keys("*forever")
        (window,) = server.keys("*window")
        assert server.ttl(forever) == -1
        assert 59 <= server.ttl(window) <= 60
        assert int(server.get(window)) == 2
        server.flushdb()
