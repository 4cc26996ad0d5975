"""``/healthz``: whether the database and the broker answer, as JSON (200 when both do,
else 503). Anyone sees ok/failing per service; the details (vendor, broker address, the
error's text) go to logged-in staff only, and every failure is logged."""

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse
from kombu.utils.url import maybe_sanitize_url

from config.celery import app as celery_app

logger = logging.getLogger(__name__)


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
    services = {"database": _database(), "broker": _broker()}
    for name, found in services.items():
        if not found["ok"]:
            logger.warning("healthz: the %s is failing: %s", name, found["error"])
    ok = all(found["ok"] for found in services.values())
    staff = request.user.is_authenticated and request.user.is_staff
    if not staff:
        services = {name: {"ok": found["ok"]} for name, found in services.items()}
    return JsonResponse({"status": "ok" if ok else "error", **services}, status=200 if ok else 503)
