"""A study created through gunicorn and imported by a real Celery worker: the API with a
token, and the pages in real headless Chromium (screenshots in test-artifacts/screens)."""

import json
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from knox.models import AuthToken

from annotation.models import Study
from tests.conftest import (
    start_web_server,
    start_worker,
    stop_web_server,
    stop_worker,
    wait_until,
)
from tests.frontend.conftest import SCREENS
from tests.workspace.uploads import multipart_post, study_zip
from workspace.models import ImportJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

User = get_user_model()


@pytest.fixture
def stack(media_root, tmp_path):
    """gunicorn and a worker sharing one uploads folder; the server queues to the worker."""
    uploads = tmp_path / "uploads"
    env = {"IQA_UPLOAD_DIR": str(uploads), "IQA_UPLOAD_MAX_BYTES": str(4 * 1024**2)}
    worker = start_worker(
        name="upload", broker_url=settings.CELERY_BROKER_URL, media=media_root, extra_env=env
    )
    server = start_web_server(
        media=media_root, extra_env={**env, "CELERY_TASK_DEFAULT_QUEUE": worker.queue}
    )
    try:
        yield server, uploads
    finally:
        stop_web_server(server)
        stop_worker(worker)


def get_json(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_an_upload_through_the_api_is_imported_by_the_worker(stack, tmp_path):
    """POST /api/v1/studies with a token streams the zip to disk, the worker imports it,
    and GET imports/{id} reaches done with the summary; nothing is left under uploads/. A
    body over IQA_UPLOAD_MAX_BYTES is answered 413 and leaves nothing either."""
    server, uploads = stack
    user = User.objects.create_user("ada", password="x")
    token = AuthToken.objects.create(user=user, expiry=None)[1]
    archive = tmp_path / "study.zip"
    archive.write_bytes(study_zip(tmp_path, scenes=3))
    headers = {"Authorization": f"Token {token}"}
    fields = {"slug": "api-study", "design": "pairwise", "votes_per_pair": "4"}

    status, body = multipart_post(f"{server.url}/api/v1/studies", fields, archive, headers)
    assert status == 202, body
    url = server.url + json.loads(body)["import"]["url"]
    wait_until(
        lambda: get_json(url, token)["status"] in ("done", "failed"), timeout=60, what="import"
    )
    job = get_json(url, token)
    assert job["status"] == "done", job
    assert (job["done"], job["total"]) == (9, 9)
    assert job["summary"]["scenes"] == 3
    assert job["summary"]["pairs"] == 9
    study = Study.objects.get(slug="api-study")
    assert (study.owner, study.votes_per_pair) == (user, 4)
    wait_until(lambda: not any(uploads.iterdir()), timeout=10, what="uploads cleared")

    big = tmp_path / "big.zip"
    big.write_bytes(b"\0" * (5 * 1024**2))
    status, body = multipart_post(
        f"{server.url}/api/v1/studies", {**fields, "slug": "big"}, big, headers
    )
    assert status == 413
    assert json.loads(body)["error"]["code"] == "too_large"
    assert not any(uploads.iterdir())
    assert not ImportJob.objects.filter(slug="big").exists()


def shoot(page, name: str) -> Path:
    SCREENS.mkdir(parents=True, exist_ok=True)
    paths = []
    for width, height in ((1280, 800), (1920, 1080)):
        page.set_viewport_size({"width": width, "height": height})
        path = SCREENS / f"{name}-{width}x{height}.png"
        page.screenshot(path=path, full_page=True)
        paths.append(path)
    page.set_viewport_size({"width": 1280, "height": 800})
    return paths[0]


def test_a_researcher_creates_a_study_in_the_browser(stack, tmp_path, chromium):
    """Log in, fill the form, upload a zip, watch the import reach its summary and follow
    the link to the study; a bad zip shows its one-line error and the form again."""
    server, _ = stack
    User.objects.create_user("ada", password="a good secret 1")
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{server.url}/login/")
        page.fill("#id_username", "ada")
        page.fill("#id_password", "a good secret 1")
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/studies/")
        page.click("text=New study")
        page.wait_for_url(f"{server.url}/studies/new/")
        shoot(page, "study-new")
        # "Show the reference" applies to the pairwise design only.
        page.check("input[name=design][value=ref-vs-test]")
        assert page.is_disabled("#id_show_reference")
        page.check("input[name=design][value=pairwise]")
        assert page.is_enabled("#id_show_reference")

        archive = tmp_path / "browser.zip"
        archive.write_bytes(study_zip(tmp_path, scenes=4))
        page.fill("#id_slug", "browser-study")
        page.fill("#id_title", "Made in the browser")
        page.check("#id_show_reference")
        page.set_input_files("#id_file", str(archive))
        page.click("#create")
        page.wait_for_selector("table.summary", timeout=60_000)
        assert "/studies/imports/" in page.url
        assert page.inner_text("table.summary tfoot").split() == ["Total", "12", "12", "0"]
        shoot(page, "import-done")
        assert Study.objects.get(slug="browser-study").show_reference

        # Bad settings: every error at once, next to its field.
        page.goto(f"{server.url}/studies/new/")
        page.fill("#id_slug", "Bad Slug")
        page.check("input[name=design][value=ref-vs-test]")
        page.fill("#id_votes_per_pair", "0")
        page.fill("#id_gold_rate", "2")
        page.set_input_files("#id_file", str(archive))
        page.click("#create")
        page.wait_for_selector("#id_slug_error")
        assert page.is_visible("#id_votes_per_pair_error")
        assert page.is_visible("#id_gold_rate_error")
        shoot(page, "study-new-errors")

        # A zip refused by the worker: the error, and the way back with the values kept.
        bad = tmp_path / "bad.zip"
        bad.write_bytes(b"not a zip at all")
        page.goto(f"{server.url}/studies/new/")
        page.fill("#id_slug", "bad-zip")
        page.fill("#id_title", "Kept title")
        page.check("input[name=design][value=nr-pairwise]")
        page.set_input_files("#id_file", str(bad))
        page.click("#create")
        page.wait_for_selector(".import-error", timeout=60_000)
        assert "not a zip file" in page.inner_text(".import-error")
        shoot(page, "import-failed")
        page.click("text=Back to the form")
        assert page.input_value("#id_title") == "Kept title"
        assert page.is_checked("input[name=design][value=nr-pairwise]")

        # The progress bar, as a running import shows it (a job held at 120 of 400).
        owner = User.objects.get(username="ada")
        running = ImportJob.objects.create(
            owner=owner, slug="running", status="running", done=120, total=400
        )
        page.goto(f"{server.url}/studies/imports/{running.pk}/")
        page.wait_for_function("() => document.getElementById('import-progress').max === 400")
        time.sleep(1.2)  # one poll
        assert page.inner_text("#import-status") == "120 of 400 images checked"
        shoot(page, "import-running")
    finally:
        context.close()
    assert not errors, errors
