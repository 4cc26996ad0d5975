"""/healthz reports the database and the broker."""

import pytest

from config.celery import app as celery_app

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_and_broker_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "vendor": "postgresql"}
    assert body["broker"]["ok"] is True
    assert body["broker"]["url"].startswith("redis://")


def test_healthz_answers_503_naming_the_broker_when_it_is_down(client, monkeypatch):
    # Port 1 on loopback: nothing listens there. Celery publishes through broker_write_url.
    monkeypatch.setattr(celery_app.conf, "broker_write_url", "redis://127.0.0.1:1/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is False
    assert "127.0.0.1:1" in body["broker"]["url"]
    assert body["broker"]["error"]
