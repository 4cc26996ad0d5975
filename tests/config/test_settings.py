"""Settings come from the environment, with laptop defaults when nothing is set."""

import json
import re
import secrets
import subprocess
import sys

import yaml

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
    assert found["cache"] == "config.cache.RedisCache"  # Django's, one client per pool


def production_vars(**extra: str) -> dict[str, str]:
    """docker-compose's web service's variables, as compose fills them in with a secret
    key and a database password given (PostgreSQL and Redis are not contacted by what
    these tests run)."""
    given = {"DJANGO_SECRET_KEY": "k" + secrets.token_urlsafe(60), "POSTGRES_PASSWORD": "pw"}

    def fill(value: object) -> str:
        def one(match: re.Match) -> str:
            name, operator, default = match.groups()
            return given.get(name, default if operator == ":-" else "")

        return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, str(value))

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    variables = {k: fill(v) for k, v in compose["services"]["web"]["environment"].items()}
    return {"DJANGO_SETTINGS_MODULE": "config.settings", **variables, **extra}


def production_env(data_dir, **extra: str) -> dict[str, str]:
    env = embedded_env(data_dir, **production_vars(**extra))
    # compose's data folder is a volume; here, one that is not there.
    env.update(IQA_DATA_DIR=str(data_dir), IQA_MEDIA_ROOT=str(data_dir / "media"))
    env["IQA_WEIGHTS_DIR"] = str(data_dir / "weights")
    # Set for the tests' browser steps (tests/conftest.py); never in a deployment.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def test_production_settings_pass_the_deployment_checks_and_write_no_file(tmp_path):
    """``manage.py check --deploy --fail-level WARNING`` exits cleanly with a deployment's
    variables, and neither it nor importing the settings creates the data folder (which
    the laptop defaults would fill with a secret key)."""
    data_dir = tmp_path / "data"  # not there; its parent stands for a read-only disk
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=production_env(data_dir),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
    imported = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env=production_env(data_dir),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(imported.stdout.strip().splitlines()[-1])["debug"] is False
    assert not data_dir.exists()


def test_the_deployment_checks_fail_without_https_settings(tmp_path):
    """The check is not vacuous: turning the secure cookies off is reported."""
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=production_env(tmp_path, DJANGO_SECURE_COOKIES="0"),
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "security.W012" in done.stderr  # SESSION_COOKIE_SECURE


SECURITY_PROBE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "redirect": settings.SECURE_SSL_REDIRECT,
    "cookies": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
    "hsts": settings.SECURE_HSTS_SECONDS,
    "proxy": settings.SECURE_PROXY_SSL_HEADER,
}))
"""


def test_https_is_required_in_production_and_the_laptop_keeps_plain_http(tmp_path):
    def security(env):
        done = subprocess.run(
            [sys.executable, "-c", SECURITY_PROBE],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    laptop = security(embedded_env(tmp_path, DJANGO_SETTINGS_MODULE="config.settings"))
    assert laptop == {"redirect": False, "cookies": [False, False], "hsts": 0, "proxy": None}
    deployed = security(production_env(tmp_path / "d", DJANGO_SECURE_HSTS_SECONDS="3600"))
    assert deployed == {
        "redirect": True,
        "cookies": [True, True],
        "hsts": 3600,
        "proxy": ["HTTP_X_FORWARDED_PROTO", "https"],
    }
