"""The security headers every response carries: a Content-Security-Policy (core/csp.py)
allowing only the platform's own scripts, nosniff and a same-origin Referrer-Policy; only
the annotator page may be framed, and only by MTurk (which shows it in a frame)."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from core.csp import HEADER, csp_header, csp_replace
from tests.factories import LiveStudyFactory

pytestmark = pytest.mark.django_db

MTURK = "https://www.mturk.com https://workersandbox.mturk.com"
# Live HITs are shown in a frame on the worker site; the sandbox's worker site is its host.
MTURK_FRAMES = f"https://worker.mturk.com {MTURK}"


def policy(response) -> dict[str, str]:
    """The Content-Security-Policy as {directive: sources}."""
    directives = [part.strip().split(" ", 1) for part in response[HEADER].split(";")]
    return {name: sources for name, sources in directives}


def assert_common(response) -> dict[str, str]:
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    directives = policy(response)
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["style-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["img-src"] == "'self' data: blob:"
    assert directives["connect-src"] == "'self'"
    return directives


def test_the_annotator_page_may_be_framed_by_mturk_and_post_to_it():
    study = LiveStudyFactory(slug="framed")
    response = Client().get(f"/annotate/{study.slug}/?workerId=W&assignmentId=A&hitId=H")
    assert response.status_code == 200
    directives = assert_common(response)
    assert directives["frame-ancestors"] == f"'self' {MTURK_FRAMES}"
    assert directives["form-action"] == f"'self' {MTURK}"
    # frame-ancestors governs: X-Frame-Options would keep MTurk's frame empty.
    assert "X-Frame-Options" not in response


def test_a_missing_study_is_the_annotator_page_too():
    response = Client().get("/annotate/nope/")
    assert response.status_code == 404
    assert policy(response)["frame-ancestors"] == f"'self' {MTURK_FRAMES}"


@pytest.mark.parametrize(
    ("path", "status", "logged_in"),
    [
        ("/login/", 200, False),
        ("/studies/", 200, True),
        ("/account/", 200, True),
        ("/admin/login/", 200, False),
        ("/api/v1/ping", 200, False),
        ("/api/v1/studies", 200, True),
        ("/api/v1/studies/nope", 404, True),
        ("/healthz", 200, False),
    ],
)
def test_researcher_pages_admin_and_the_api_may_not_be_framed(path, status, logged_in):
    client = Client()
    if logged_in:
        client.force_login(get_user_model().objects.create_user("ada", password="pw"))
    response = client.get(path)
    assert response.status_code == status, response.content[:300]
    directives = assert_common(response)
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert response["X-Frame-Options"] == "DENY"


def test_a_view_replaces_only_known_directives_with_plain_sources():
    header = csp_header({"frame-ancestors": ("'self'",)})
    assert "frame-ancestors 'self';" in header or header.endswith("frame-ancestors 'self'")
    with pytest.raises(ValueError, match="frame-ancestor is not a directive of the policy"):
        csp_replace(frame_ancestor=["'self'"])
    with pytest.raises(ValueError, match="form-action: each source must be one non-empty"):
        csp_replace(form_action=["'self'; script-src *"])
    with pytest.raises(ValueError, match="form-action: each source must be one non-empty"):
        csp_replace(form_action=[])
    with pytest.raises(ValueError, match="script-src: each source must be one non-empty"):
        csp_replace(script_src=["'self' 'unsafe-inline'"])
