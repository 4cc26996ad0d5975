"""``config.cache.cache_count``: a counter in one Redis round trip (``IQA_CACHE_URL``), and
the same counts through Django's ``add``/``incr`` on any other cache."""

import pytest
import redis
from django.core.cache import caches
from django.test import override_settings

from config.cache import cache_count
from tests.conftest import CACHE_REDIS_URL


@pytest.fixture(params=["redis", "locmem"])
def backend(request):
    if request.param == "locmem":
        config = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    else:
        config = {"BACKEND": "config.cache.RedisCache", "LOCATION": CACHE_REDIS_URL}
    with override_settings(CACHES={"default": config}):
        caches["default"].clear()
        yield request.param
        caches["default"].clear()


def test_a_counter_starts_at_one_and_counts_up_in_the_key_get_reads(backend):
    assert [cache_count("votes:a") for _ in range(3)] == [1, 2, 3]
    assert cache_count("votes:b") == 1
    assert caches["default"].get("votes:a") == 3


@pytest.fixture
def server(redis_cache):
    return redis.Redis.from_url(CACHE_REDIS_URL)


def test_a_counter_without_timeout_never_expires_and_one_with_lives_that_long(server):
    cache_count("forever")
    cache_count("window", timeout=60)
    cache_count("window", timeout=5)  # an existing counter keeps its expiry
    (forever,) = server.keys("*forever")
    (window,) = server.keys("*window")
    assert server.ttl(forever) == -1
    assert 59 <= server.ttl(window) <= 60
    assert int(server.get(window)) == 2


def test_with_redis_a_count_is_one_round_trip_never_djangos_exists_then_incrby(server):
    cache_count("warm")  # the client's connection is made

    def calls() -> dict:
        stats = server.info("commandstats")
        return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0)
                for name in ("incr", "incrby", "exists", "set", "exec")}  # fmt: skip

    before = calls()
    cache_count("plain")
    cache_count("window", timeout=60)
    after = calls()
    # redis-py's ``incr`` sends INCRBY: one per count; the window's SET NX EX goes in the
    # same MULTI/EXEC. Django's ``add`` then ``incr`` would add an EXISTS before each
    # INCRBY and a SET for the plain counter's first use.
    assert {k: after[k] - before[k] for k in after} == {
        "incr": 0, "incrby": 2, "exists": 0, "set": 1, "exec": 1
    }  # fmt: skip


def test_a_counter_timeout_that_is_not_positive_is_refused(server):
    with pytest.raises(ValueError, match="must be positive or None"):
        cache_count("window", timeout=0)
