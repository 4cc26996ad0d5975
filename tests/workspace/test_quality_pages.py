"""The dashboard's annotators and downloads panels in real headless Chromium, against
gunicorn and a real Celery worker: sort the quality-control table, exclude and re-include
annotators by hand through the dialog (the row changes without a reload), build an export
and download its zip (screenshots in test-artifacts/screens)."""

import io
import zipfile

import pandas as pd
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from annotation.models import ExclusionDecision, Vote
from dataset.export import EXPORT_STEPS
from tests.conftest import start_web_server, start_worker, stop_web_server, stop_worker
from tests.factories import LiveStudyFactory, make_pairs
from tests.frontend.conftest import SCREENS
from tests.workspace.test_annotators import HONEST, answer_all
from workspace.models import ExportJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

User = get_user_model()


@pytest.fixture
def stack(media_root, tmp_path):
    """gunicorn and a worker sharing one exports folder; the server queues to the worker."""
    env = {"IQA_EXPORT_DIR": str(tmp_path / "exports")}
    worker = start_worker(
        name="exports", broker_url=settings.CELERY_BROKER_URL, media=media_root, extra_env=env
    )
    server = start_web_server(
        media=media_root, extra_env={**env, "CELERY_TASK_DEFAULT_QUEUE": worker.queue}
    )
    try:
        yield server
    finally:
        stop_web_server(server)
        stop_worker(worker)


def shoot(page, name: str, selector: str) -> None:
    """The panel at 1280x800 and 1920x1080."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    for width, height in ((1280, 800), (1920, 1080)):
        page.set_viewport_size({"width": width, "height": height})
        page.locator(selector).scroll_into_view_if_needed()
        page.evaluate(f"document.querySelector('{selector}').scrollIntoView()")
        page.screenshot(path=SCREENS / f"{name}-{width}.png")
    page.set_viewport_size({"width": 1280, "height": 800})


def test_a_researcher_excludes_an_annotator_and_downloads_the_export(stack, chromium):
    server = stack
    ada = User.objects.create_user("ada", password="a good secret 1")
    # The older rules (a rate against its threshold, on any evidence): on 12 answers the
    # default tests would leave everyone "not judged" (test_not_judged_browser.py).
    study = LiveStudyFactory(
        owner=ada, gold_rate=0.0, slug="qc", title="Quality control", qc_test="threshold",
        qc_correction="none", qc_min_answers=0, qc_min_gold=0,
    )  # fmt: skip
    make_pairs(study, 12, votes=4)
    lefty = answer_all(study, "lefty", lambda n: "left")
    honest = [answer_all(study, who, lambda n: ("left", "right")[n % 2]) for who in HONEST]

    context = chromium.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{server.url}/login/")
        page.fill("#id_username", "ada")
        page.fill("#id_password", "a good secret 1")
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/studies/")
        page.goto(f"{server.url}/studies/qc/")
        rows = page.locator("#annotators tbody tr")
        rows.first.wait_for()
        assert rows.count() == 4
        assert "4 annotators, 1 excluded" in page.inner_text("[data-annotators-status]")
        excluded_row = page.locator(f'#annotators tr[data-annotator="{lefty}"]')
        assert excluded_row.get_attribute("class") == "excluded"
        assert "side bias: 100% left" in excluded_row.inner_text()
        shoot(page, "dashboard-annotators", "#annotators")

        # Sorting: by answers' side, descending on the second press.
        header = page.locator("#annotators th", has=page.locator("[data-sort=left_share]"))
        page.click("#annotators [data-sort=left_share]")
        assert header.get_attribute("aria-sort") == "ascending"
        page.click("#annotators [data-sort=left_share]")
        assert header.get_attribute("aria-sort") == "descending"
        assert rows.first.get_attribute("data-annotator") == lefty
        first_header = page.locator("#annotators th", has=page.locator("[data-sort=annotator]"))
        assert first_header.get_attribute("aria-sort") is None

        # Exclude an honest annotator: the dialog asks why; the row changes in place.
        page.evaluate("window.notReloaded = true")
        target = page.locator(f'#annotators tr[data-annotator="{honest[0]}"]')
        target.locator("button").click()
        dialog = page.locator("#annotators dialog")
        assert dialog.is_visible()
        dialog.locator("button[type=submit]").click()  # no reason: refused in the page
        assert "reason" in dialog.locator("[data-dialog-error]").inner_text()
        page.fill("#exclusion-reason", "answered from a phone")
        shoot(page, "dashboard-exclusion-dialog", "#annotators")
        dialog.locator("button[type=submit]").click()
        page.wait_for_selector("#annotators dialog", state="hidden")
        assert target.get_attribute("class") == "excluded"
        assert "excluded by hand: answered from a phone" in target.inner_text()
        assert target.locator("button").inner_text() == "Re-include…"
        assert page.evaluate("window.notReloaded") is True
        assert "2 excluded (1 decided by hand)" in page.inner_text("[data-annotators-status]")

        # Re-include the one the rules exclude.
        page.locator(f'#annotators tr[data-annotator="{lefty}"] button').click()
        page.fill("#exclusion-reason", "left was really better")
        dialog.locator("button[type=submit]").click()
        page.wait_for_selector("#annotators dialog", state="hidden")
        assert excluded_row.get_attribute("class") in ("", None)
        assert "re-included by hand" in excluded_row.inner_text()
        decisions = ExclusionDecision.objects.order_by("decided_at")
        assert [(d.session.pseudonym, d.excluded, d.decided_by) for d in decisions] == [
            (honest[0], True, ada),
            (lefty, False, ada),
        ]
        shoot(page, "dashboard-annotators-decided", "#annotators")

        # Build the export and download the zip.
        page.select_option("#export-format", "parquet")
        page.click("[data-export-build]")
        page.wait_for_selector("[data-export-status] a", timeout=120_000)
        assert page.locator("#downloads table.exports tbody tr").count() == 1
        shoot(page, "dashboard-downloads", "#downloads")
        with page.expect_download() as info:
            page.click("[data-export-status] a")
        download = info.value
        assert download.suggested_filename.startswith("qc-parquet-")
        with zipfile.ZipFile(download.path()) as archive:
            votes = pd.read_parquet(io.BytesIO(archive.read("votes.parquet")))
            annotators = pd.read_parquet(io.BytesIO(archive.read("annotators.parquet")))
        stored = dict(Vote.objects.filter(pair__study=study).values_list("id", "choice"))
        assert dict(zip(votes["vote_id"], votes["choice"], strict=True)) == {
            str(k): v for k, v in stored.items()
        }
        assert set(votes.loc[votes["excluded"], "annotator"]) == {honest[0]}
        decided = annotators.set_index("annotator")["manual_decision"]
        assert (decided[honest[0]], decided[lefty]) == ("excluded", "included")

        # An export under way (held at 4 of its steps): the page follows it with a bar.
        ExportJob.objects.create(
            study=study, owner=ada, format="csv", status="running", done=4, total=EXPORT_STEPS
        )
        page.reload()
        page.wait_for_selector("[data-export-progress]:not([hidden])")
        assert page.get_attribute("#export-progress-bar", "value") == "4"
        assert page.is_disabled("[data-export-build]")
        assert "4 of 10 steps" in page.inner_text("[data-export-status]")
        shoot(page, "dashboard-downloads-progress", "#downloads")
    finally:
        context.close()
    assert not errors, errors
