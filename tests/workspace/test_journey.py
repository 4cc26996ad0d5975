"""A researcher's whole journey in real headless Chromium, against gunicorn and a real
Celery worker, with no shell: log in, create a study by uploading a zip, watch the import
reach its summary, go live, let an annotator answer in a second browser context, see the
dashboard's progress and annotators table change, exclude the annotator by hand, and
download the export zip, whose votes equal the database's."""

import io
import zipfile

import pandas as pd
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from annotation.models import AnnotatorSession, ExclusionDecision, Study, Vote
from tests.browser import READY, wait_ready
from tests.conftest import (
    docs_screenshot,
    start_web_server,
    start_worker,
    stop_web_server,
    stop_worker,
)
from tests.frontend.conftest import SCREENS
from tests.workspace.uploads import study_zip

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

User = get_user_model()
PASSWORD = "a good secret 1"


@pytest.fixture
def stack(media_root, tmp_path):
    """gunicorn and a worker sharing the uploads and exports folders."""
    env = {"IQA_UPLOAD_DIR": str(tmp_path / "uploads"), "IQA_EXPORT_DIR": str(tmp_path / "x")}
    worker = start_worker(
        name="journey", broker_url=settings.CELERY_BROKER_URL, media=media_root, extra_env=env
    )
    server = start_web_server(
        media=media_root, extra_env={**env, "CELERY_TASK_DEFAULT_QUEUE": worker.queue}
    )
    try:
        yield server
    finally:
        stop_web_server(server)
        stop_worker(worker)


def shoot(page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    for width, height in ((1280, 800), (1920, 1080)):
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=SCREENS / f"journey-{name}-{width}.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})


def annotate_everything(page) -> int:
    """Consent, instructions, then "left" on every trial until the session is done."""
    page.wait_for_selector("[data-screen=consent]:not([hidden])")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-screen=instructions]:not([hidden])")
    page.keyboard.press("Enter")
    answered = 0
    while answered < 50:
        page.wait_for_selector(
            "[data-screen=trial]:not([hidden]) " + READY
            + ", [data-screen=break]:not([hidden]), [data-screen=done]:not([hidden])"
        )  # fmt: skip
        screen = page.evaluate("iqaAnnotator.screen")
        if screen == "done":
            return answered
        if screen == "break":
            page.keyboard.press("Enter")
            continue
        wait_ready(page)
        page.keyboard.press("1")
        answered += 1
    raise AssertionError("the session did not end")


def test_a_researcher_runs_a_study_from_the_browser_alone(stack, tmp_path, chromium):
    server = stack
    User.objects.create_user("ada", password=PASSWORD)
    researcher = chromium.new_context(
        viewport={"width": 1280, "height": 800}, accept_downloads=True
    )
    annotator = chromium.new_context(viewport={"width": 1280, "height": 800})
    page, errors = researcher.new_page(), []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{server.url}/login/")
        page.fill("#id_username", "ada")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/studies/")

        # Create the study by uploading a zip; the worker imports it.
        archive = tmp_path / "journey.zip"
        archive.write_bytes(study_zip(tmp_path, scenes=2))
        page.click("text=New study")
        page.fill("#id_slug", "journey")
        page.fill("#id_title", "A journey")
        page.check("input[name=design][value=pairwise]")
        page.fill("#id_practice_trials", "0")
        # One annotator does the whole study: 2 scenes of 3 pairs, its quota.
        page.fill("#id_trials_per_session", "6")
        page.set_input_files("#id_file", str(archive))
        docs_screenshot(page, "new-study")
        page.click("#create")
        page.wait_for_selector("table.summary", timeout=60_000)
        shoot(page, "import-done")
        docs_screenshot(page, "import-done")
        study = Study.objects.get(slug="journey")
        pairs = study.pairs.filter(gold_answer="").count()
        assert pairs > 0

        # The dashboard: go live.
        page.goto(f"{server.url}/studies/journey/")
        assert page.inner_text("#lifecycle .badge") == "Draft"
        page.click("#lifecycle button.primary")  # "Go live: annotators can start"
        page.wait_for_selector("#lifecycle .badge.live")
        annotator_url = page.input_value("#link-annotator")

        # An annotator answers every trial in a second browser context.
        worker_page = annotator.new_page()
        worker_page.on("pageerror", lambda error: errors.append(str(error)))
        worker_page.goto(annotator_url)
        answered = annotate_everything(worker_page)
        assert answered == Vote.objects.filter(pair__study=study).count() > 0
        counted = Vote.objects.filter(pair__study=study, kind="label").count()

        # The dashboard follows: the counted votes and the annotators table.
        page.reload()
        page.wait_for_function(
            f"() => document.querySelector('[data-field=counted_votes]').textContent.trim() === "
            f"'{counted}'",
            timeout=30_000,
        )
        pseudonym = AnnotatorSession.objects.get(study=study).pseudonym
        row = page.locator(f'#annotators tr[data-annotator="{pseudonym}"]')
        row.wait_for(timeout=30_000)
        shoot(page, "dashboard")

        # Exclude the annotator by hand, with a reason.
        row.locator("button").click()
        page.fill("#exclusion-reason", "answered left every time")
        page.locator("#annotators dialog button[type=submit]").click()
        page.wait_for_selector("#annotators dialog", state="hidden")
        assert "excluded by hand: answered left every time" in row.inner_text()
        decision = ExclusionDecision.objects.get()
        assert (decision.excluded, decision.decided_by.username) == (True, "ada")

        # Download the export; its votes are the database's, the exclusion marked.
        page.select_option("#export-format", "csv")
        page.click("[data-export-build]")
        page.wait_for_selector("[data-export-status] a", timeout=120_000)
        with page.expect_download() as info:
            page.click("[data-export-status] a")
        with zipfile.ZipFile(info.value.path()) as zipped:
            votes = pd.read_csv(io.BytesIO(zipped.read("votes.csv")))
        stored = dict(Vote.objects.filter(pair__study=study).values_list("id", "choice"))
        assert dict(zip(votes["vote_id"], votes["choice"], strict=True)) == {
            str(key): value for key, value in stored.items()
        }
        assert votes["excluded"].all()
        shoot(page, "downloads")
    finally:
        researcher.close()
        annotator.close()
    assert not errors, errors
