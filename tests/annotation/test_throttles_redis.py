"""The throttles' counts in Redis (``IQA_CACHE_URL``, as deployed), against the real server
on 127.0.0.1, and the cache backend that keeps one Redis client per pool."""

import threading

import pytest
import redis
from django.core.cache import caches
from django.test import override_settings
from rest_framework.test import APIClient

from annotation.throttles import window_count
from tests.conftest import CACHE_REDIS_URL as REDIS_URL
from tests.factories import LiveStudyFactory, make_pairs


def test_a_window_counts_up_and_expires_one_second_after_its_period(redis_cache):
    assert [window_count("throttle:test:a:1", 60) for _ in range(3)] == [1, 2, 3]
    assert window_count("throttle:test:b:1", 60) == 1
    # The same key Django's cache API reads, with the window's expiry.
    assert redis_cache.get("throttle:test:a:1") == 3
    server = redis.Redis.from_url(REDIS_URL)
    (key,) = server.keys("*throttle:test:a:1")
    assert 59 <= server.ttl(key) <= 61


def test_one_redis_client_serves_every_cache_operation_of_a_thread(redis_cache):
    client = redis_cache._cache.get_client("x", write=True)
    redis_cache.set("k", 1)
    assert redis_cache.get("k") == 1
    assert redis_cache._cache.get_client("y", write=True) is client
    assert redis_cache._cache.get_client("y") is client  # one server: reads use its pool too
    # Another thread has its own backend (Django's cache handler is per thread), so its
    # own client and pool.
    other = {}
    thread = threading.Thread(
        target=lambda: other.update(client=caches["default"]._cache.get_client("x", write=True))
    )
    thread.start()
    thread.join()
    assert other["client"] is not client
    assert other["client"].connection_pool is not client.connection_pool


@pytest.mark.django_db
@override_settings(IQA_VOTE_RATE="3/min")
def test_votes_are_throttled_per_session_in_redis(redis_cache):
    api = APIClient()
    study = LiveStudyFactory()
    make_pairs(study, 5)
    token = api.post(f"/api/v1/studies/{study.slug}/sessions", {}, format="json").json()["token"]
    trial_id = api.get(f"/api/v1/sessions/{token}/next-trial").json()["trial_id"]
    body = {"trial_id": trial_id, "choice": "left", "response_ms": 900}
    statuses = [
        api.post(f"/api/v1/sessions/{token}/votes", body, format="json").status_code
        for _ in range(4)
    ]
    assert statuses == [201, 200, 200, 429]
