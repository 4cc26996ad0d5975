"""Settings come from the environment, with laptop defaults when nothing is set."""

import json
import subprocess
import sys

from tests.conftest import REPO, embedded_env

PROBE = """
import json, django
from django.conf import settings
django.setup()
from config.celery import app
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "name": str(settings.DATABASES["default"]["NAME"]),
    "broker": app.conf.broker_url,
    "options": app.conf.broker_transport_options,
    "media": str(settings.MEDIA_ROOT),
    "debug": settings.DEBUG,
    "cache": settings.CACHES["default"]["BACKEND"],
    "db_options": settings.DATABASES["default"].get("OPTIONS", {}),
}))
"""


def probe(tmp_path, **env) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env=embedded_env(tmp_path, DJANGO_SETTINGS_MODULE="config.settings", **env),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_with_nothing_configured_the_platform_uses_sqlite_and_the_file_system_broker(tmp_path):
    found = probe(tmp_path)
    assert found["engine"] == "django.db.backends.sqlite3"
    assert found["name"] == str(tmp_path / "db.sqlite3")
    assert found["broker"] == "filesystem://"
    assert found["options"]["data_folder_in"] == str(tmp_path / "broker" / "queue")
    assert found["media"] == str(tmp_path / "media")
    assert found["debug"] is False
    # A laptop gets a random secret key kept out of the code, in the data folder.
    assert len((tmp_path / "secret_key").read_text()) >= 50


def test_database_and_broker_urls_select_postgresql_and_redis(tmp_path):
    found = probe(
        tmp_path,
        DATABASE_URL="postgres://someone@db.example:5433/iqa",
        CELERY_BROKER_URL="redis://cache.example:6379/2",
    )
    assert found["engine"] == "django.db.backends.postgresql"
    assert found["name"] == "iqa"
    assert found["broker"] == "redis://cache.example:6379/2"
    assert found["options"]["visibility_timeout"] >= 3600
    # The annotator hot path may prepare its statements; Django's own queries never do.
    assert found["db_options"]["prepare_threshold"] >= 10**6


def test_prepared_statements_can_be_turned_off_for_transaction_poolers(tmp_path):
    found = probe(
        tmp_path,
        DATABASE_URL="postgres://someone@db.example:5433/iqa",
        DB_PREPARED_STATEMENTS="0",
    )
    assert "prepare_threshold" not in found["db_options"]


def test_a_cache_url_shares_the_vote_throttle_through_redis(tmp_path):
    """Several web processes count votes per session in one place when IQA_CACHE_URL is set."""
    assert probe(tmp_path)["cache"].endswith("LocMemCache")
    found = probe(tmp_path, IQA_CACHE_URL="redis://127.0.0.1:6379/14")
    assert found["cache"] == "django.core.cache.backends.redis.RedisCache"
