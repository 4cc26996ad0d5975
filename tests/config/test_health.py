"""/healthz says whether the database and the broker answer: ok or failing per service to
anyone, the details (vendor, broker address, the error's text) to logged-in staff only."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from config.celery import app as celery_app

pytestmark = pytest.mark.django_db

DOWN = "redis://127.0.0.1:1/0"  # port 1 on loopback: nothing listens there


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_user("ops", password="x" * 12, is_staff=True)
    client.force_login(user)
    return client


def test_healthz_tells_anyone_each_service_is_ok_and_nothing_more(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": {"ok": True}, "broker": {"ok": True}}


def test_healthz_shows_staff_the_details(staff_client):
    body = staff_client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "vendor": "postgresql"}
    assert body["broker"]["ok"] is True
    assert body["broker"]["url"].startswith("redis://")


def test_a_failing_broker_is_named_to_anyone_and_its_error_shown_to_staff_only(
    client, staff_client, monkeypatch, caplog
):
    # Celery publishes through broker_write_url.
    monkeypatch.setattr(celery_app.conf, "broker_write_url", DOWN)
    staff = staff_client.get("/healthz")
    assert staff.status_code == 503
    body = staff.json()
    assert body["status"] == "error"
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is False
    assert "127.0.0.1:1" in body["broker"]["url"]
    assert body["broker"]["error"]

    client.logout()
    anyone = client.get("/healthz")
    assert anyone.status_code == 503
    assert anyone.json() == {"status": "error", "database": {"ok": True}, "broker": {"ok": False}}
    assert "127.0.0.1:1" not in anyone.content.decode()
    assert "healthz: the broker is failing" in caplog.text  # the operator's log has it


def test_a_failing_database_is_named_without_its_error_text(client, monkeypatch):
    """The database's exception text (which can name hosts, users and databases) is never
    shown to a visitor."""
    secret = 'connection to server at "db.internal" (10.0.0.7), port 5432 failed'

    def refuse(*args, **kwargs):
        raise RuntimeError(secret)

    monkeypatch.setattr(connection, "cursor", refuse)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "database": {"ok": False},
        "broker": {"ok": True},
    }
    assert "db.internal" not in response.content.decode()
