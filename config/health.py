"""``/healthz``: database and broker status as JSON (200 when both answer, else 503)."""

from django.db import connection
from django.http import HttpRequest, JsonResponse
from kombu.utils.url import maybe_sanitize_url

from config.celery import app as celery_app


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure is reported, not raised: this is the health page
        return {"ok": False, "vendor": connection.vendor, "error": str(exc)}
    return {"ok": True, "vendor": connection.vendor}


def _broker() -> dict:
    url = celery_app.conf.broker_write_url or celery_app.conf.broker_url
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            transport = conn.transport_cls
    except Exception as exc:
        return {"ok": False, "url": maybe_sanitize_url(url), "error": str(exc)}
    return {"ok": True, "url": maybe_sanitize_url(url), "transport": str(transport)}


def healthz(request: HttpRequest) -> JsonResponse:
    database, broker = _database(), _broker()
    ok = database["ok"] and broker["ok"]
    return JsonResponse(
        {"status": "ok" if ok else "error", "database": database, "broker": broker},
        status=200 if ok else 503,
    )
