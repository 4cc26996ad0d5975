"""Error pages with a way back, and the icon browsers ask for (issue 25)."""

import pytest
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory
from django.views import defaults

pytestmark = pytest.mark.django_db


def test_not_found_forbidden_and_server_error_pages_lead_back(client):
    """404, 403 and 500 are the platform's pages (its stylesheet, no inline script or
    style, as the Content-Security-Policy wants), each saying what happened with links to
    the studies and the login page; not Django's bare pages."""
    missing = client.get("/studies/no-such-study/nothing/")
    assert missing.status_code == 404
    request = RequestFactory().get("/somewhere/")
    pages = {
        404: missing.content.decode(),
        403: defaults.permission_denied(request, PermissionDenied()).content.decode(),
        500: defaults.server_error(request).content.decode(),
    }
    headings = {404: "Nothing here", 403: "Not allowed", 500: "Something went wrong"}
    for status, html in pages.items():
        assert headings[status] in html, status
        assert 'href="/studies/"' in html
        assert 'href="/login/"' in html
        assert "workspace/workspace.css" in html
        assert "<script" not in html
        assert "style=" not in html


def test_the_favicon_is_served_not_a_404(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 301
    assert icon["Location"] == "/static/workspace/favicon.svg"
    svg = client.get(icon["Location"])
    assert svg.status_code == 200
    assert b"<svg" in b"".join(svg.streaming_content)
