"""Every page works under the server's real Content-Security-Policy (core/csp.py: only the
platform's own scripts and styles, no eval): headless Chromium visits each one, the
annotator page through a whole session to its done screen, the charts drawn, and any
policy violation (a ``securitypolicyviolation`` event or the console's report) or page
error fails the test."""

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from analysis.services import agreement_snapshot_refresh
from annotation import services
from annotation.models import Image
from scoring.models import Score
from tests.annotation.sessions import vote_after
from tests.browser import finish_with_keyboard, watch_csp
from tests.conftest import ARTIFACTS
from tests.frontend.conftest import make_study
from workspace.models import ImportJob

pytestmark = pytest.mark.django_db(transaction=True)

SCREENS = ARTIFACTS / "screens"
PASSWORD = "a long password 1"


@pytest.fixture(scope="module")
def server(module_web_server):
    return module_web_server


def vote(study, participant: str) -> None:
    """One annotator's whole session, 'left' on every trial, through the services."""
    token = services.session_open(study_slug=study.slug, participant_id=participant).session.token
    while (trial := services.trial_next(token=token)) is not None:
        vote_after(token, trial.trial_id, "left", 900)


def scored(study) -> None:
    """Two no-reference metrics' scores for every image, so that the report has rows."""
    rng = np.random.default_rng(3)
    Score.objects.bulk_create(
        Score(metric=metric, version="test", image=image, reference=None,
              value=float(rng.normal()), lower_better=metric == "niqe")
        for image in Image.objects.filter(scene__study=study)
        for metric in ("musiq", "niqe")
    )  # fmt: skip


def test_every_page_runs_under_the_policy_without_a_violation(server, chromium, tmp_path):
    admin = get_user_model().objects.create_superuser("ada", password=PASSWORD)
    # Votes from three annotators, and room left for the one in the browser.
    study = make_study(
        tmp_path, slug="policy", scenes=3, tests_per_scene=3, votes_per_pair=4, owner=admin
    )
    for participant in ("p1", "p2", "p3"):
        vote(study, participant)
    scored(study)
    assert agreement_snapshot_refresh(study=study, force=True).report is not None
    job = ImportJob.objects.create(
        owner=admin, slug="imported", status=ImportJob.Status.DONE, done=4, total=4,
        summary={"scenes": 1, "images": 4, "pairs": 3, "gold_pairs": 0, "files_stored": 4,
                 "per_scene": [{"scene": "s0", "images": 4, "pairs": 3}]},
    )  # fmt: skip

    context = chromium.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    refused = watch_csp(context)
    page = context.new_page()
    visited = []

    def visit(path: str, ready: str = "main") -> None:
        page.goto(f"{server.url}{path}")
        page.wait_for_selector(ready)
        visited.append(path)

    try:
        # The watcher sees a refusal: an inline script added by the test is one.
        visit("/login/")
        page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.inlineRan = true'; document.body.append(s); }"
        )
        page.wait_for_function("() => true")
        assert page.evaluate("window.inlineRan === undefined")
        page.wait_for_timeout(200)  # the report reaches the test through a binding
        assert refused, "the watcher saw no refusal"
        assert all("script-src" in line for line in refused), refused
        refused.clear()

        # The annotator's side: a whole session from an MTurk link, and the other screens.
        base = f"/annotate/{study.slug}/"
        visit(f"{base}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1",
              "[data-screen=preview]:not([hidden])")  # fmt: skip
        visit(
            f"{base}?workerId=A1B2C3D4E5F6G7&assignmentId=ASG1&hitId=H1"
            "&turkSubmitTo=https://workersandbox.mturk.com",
            "[data-screen=consent]:not([hidden])",
        )
        assert finish_with_keyboard(page)
        page.wait_for_selector("#mturk-form:not([hidden])")
        SCREENS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENS / "csp-annotator-done-1280.png")
        visit("/annotate/no-such-study/", "h1")

        # The admin's login page, before logging in; then the researcher's login.
        visit("/admin/login/", "#login-form")
        visit("/login/?next=/studies/", "#id_username")
        page.fill("#id_username", "ada")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/studies/")
        visit("/studies/", "main table")
        visit("/studies/new/", "main form")
        visit(f"/studies/imports/{job.pk}/", "table.summary")
        visit(f"/studies/{study.slug}/", "#chart-votes-per-hour[data-chart-ready] svg .mark-rect")
        # The per-scene bars take their widths from the script (no style attributes).
        assert page.evaluate(
            "[...document.querySelectorAll('[data-bar]')].every(b => b.style.width.endsWith('%'))"
        )
        # vega-embed's styles come from the linked stylesheet: its tooltip is positioned.
        page.hover("#chart-votes-per-hour svg .mark-rect path")
        page.wait_for_selector("#vg-tooltip-element.visible")
        assert (
            page.evaluate(
                "getComputedStyle(document.getElementById('vg-tooltip-element')).position"
            )
            == "fixed"
        )
        page.click("#chart-votes-per-hour summary")
        page.wait_for_selector("#chart-votes-per-hour .vega-actions a >> nth=0")
        with page.expect_download() as download:
            page.click("#chart-votes-per-hour .vega-actions a:has-text('PNG')")
        assert download.value.suggested_filename.endswith(".png")
        with page.expect_download() as download:
            page.click("#chart-votes-per-hour .vega-actions a:has-text('SVG')")
        assert download.value.suggested_filename.endswith(".svg")
        page.screenshot(path=SCREENS / "csp-study-dashboard-1280.png")
        visit(f"/studies/{study.slug}/agreement/", "#chart-bars[data-chart-ready] svg")
        for chart in ("heat", "scatter", "hist"):
            page.wait_for_selector(f"#chart-{chart}[data-chart-ready] svg")
        visit("/account/", "main")
        visit("/account/password/", "#id_old_password")
        # The API reference: the vendored Swagger UI draws every operation of the schema.
        visit("/api/docs/", "#swagger-ui .opblock-tag-section")
        page.click("#swagger-ui .opblock-tag-section h3 >> nth=0")
        page.wait_for_selector("#swagger-ui .opblock-summary-path")
        assert page.locator("#swagger-ui .opblock").count() > 20  # every operation listed
        page.screenshot(path=SCREENS / "api-docs-1280.png")
        visit("/admin/", "#content")
        visit("/admin/annotation/study/", "#result_list")
        visit(f"/admin/annotation/study/{study.pk}/change/", "#study_form")
    finally:
        context.close()
    assert len(visited) == 17, visited
    assert not refused, refused
