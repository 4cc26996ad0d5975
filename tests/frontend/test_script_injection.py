"""No script injection through the annotator page: MTurk's ``turkSubmitTo`` is taken only
when it names MTurk (anything else is ignored and logged, and the completion page posts
nowhere), and a study's own texts (title, instructions, consent) stay text on the
annotator page and the researcher's dashboard. In real headless Chromium against gunicorn,
under the server's real Content-Security-Policy."""

import json
import logging
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from annotation.models import AnnotatorSession, Study
from tests.browser import finish_with_keyboard, watch_csp
from tests.factories import LiveStudyFactory
from tests.frontend.conftest import make_study, screenshot

pytestmark = pytest.mark.django_db(transaction=True)

MTURK_ID = "A1B2C3D4E5F6G7"
SANDBOX_SUBMIT = "https://workersandbox.mturk.com/mturk/externalSubmit"
# Study texts an attacker (or a careless copy from a web page) could write.
EVIL = '<script>alert(1)</script><b>bold</b> "onerror=alert(2)" <img src=x onerror=alert(3)>'


@pytest.fixture(scope="module")
def server(module_web_server):
    return module_web_server


@pytest.fixture
def browser(chromium):
    """A fresh context at 1280 x 800; its CSP violations, page errors and dialogs fail
    the test."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    refused = watch_csp(context)
    dialogs: list[str] = []

    def on_page(page) -> None:
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    context.on("page", on_page)
    yield context
    context.close()
    assert not refused, refused
    assert not dialogs, f"a study's text ran as script: {dialogs}"


def page_config(response) -> dict:
    """The annotator page's configuration (its json_script)."""
    html = response.content.decode()
    found = re.search(r'<script id="annotate-config" type="application/json">(.*?)</script>', html)
    assert found, html[:500]
    return json.loads(found.group(1))


# --- turkSubmitTo ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "submit_url"),
    [
        ("https://workersandbox.mturk.com", SANDBOX_SUBMIT),
        ("https://www.mturk.com/", "https://www.mturk.com/mturk/externalSubmit"),
        ("javascript:alert(1)//", None),
        ("https://evil.example", None),
        ("https://www.mturk.com.evil.example", None),
        ("http://www.mturk.com", None),
    ],
)
def test_the_page_takes_turk_submit_to_only_when_it_is_mturk_and_logs_the_rest(
    caplog, given, submit_url
):
    study = LiveStudyFactory(slug="turk")
    query = {"workerId": MTURK_ID, "assignmentId": "A1", "hitId": "H1", "turkSubmitTo": given}
    with caplog.at_level(logging.WARNING, logger="frontend.views"):
        response = Client().get(f"/annotate/{study.slug}/", query)
    assert response.status_code == 200
    assert page_config(response)["mturk_submit_url"] == submit_url
    warnings = [r.getMessage() for r in caplog.records if r.name == "frontend.views"]
    if submit_url:
        assert warnings == []
    else:
        assert warnings == [
            f"annotator page /annotate/turk/: turkSubmitTo {given!r} ignored "
            "(not one of https://www.mturk.com, https://workersandbox.mturk.com)"
        ]
        assert given not in response.content.decode()


def test_without_turk_submit_to_nothing_is_logged(caplog):
    study = LiveStudyFactory(slug="prolific")
    with caplog.at_level(logging.WARNING, logger="frontend.views"):
        response = Client().get(f"/annotate/{study.slug}/?PROLIFIC_PID=p1")
    assert page_config(response)["mturk_submit_url"] is None
    assert not [r for r in caplog.records if r.name == "frontend.views"]


@pytest.mark.parametrize(
    "given",
    [
        "javascript:alert(document.domain)//",
        "https://evil.example",
        "https://workersandbox.mturk.com",
    ],
)
def test_the_completion_page_posts_to_mturk_only(server, browser, tmp_path, given):
    """A whole short session from an MTurk link; on the done screen the HIT's form is
    shown only for MTurk's own host, and posts there (the policy's form-action allows it)."""
    study = make_study(tmp_path, slug="hit", scenes=1, tests_per_scene=2)
    page = browser.new_page()
    page.goto(
        f"{server.url}/annotate/{study.slug}/?workerId={MTURK_ID}&assignmentId=ASG1"
        f"&hitId=HIT1&turkSubmitTo={given}"
    )
    assert finish_with_keyboard(page)
    assert page.inner_text("#completion-code") == study.completion_code
    form = page.locator("#mturk-form")
    if given.startswith("https://workersandbox.mturk.com"):
        screenshot(page, "done-mturk-sandbox")
        assert form.is_visible()
        assert form.get_attribute("action") == SANDBOX_SUBMIT
        posted = []

        def mturk(route) -> None:
            posted.append(route.request.post_data)
            route.fulfill(status=200, content_type="text/plain", body="HIT submitted")

        page.route(f"{SANDBOX_SUBMIT}*", mturk)
        page.click("#mturk-form button[type=submit]")
        page.wait_for_url(SANDBOX_SUBMIT)
        assert posted == [f"assignmentId=ASG1&completion_code={study.completion_code}"]
    else:
        assert form.is_hidden()
        assert form.get_attribute("action") is None
        assert page.evaluate("document.querySelector('#mturk-form').action") == page.url
    session = AnnotatorSession.objects.get()
    assert session.completed_at is not None
    assert (session.source, session.participant_id) == ("mturk", MTURK_ID)


# --- a study's texts ---------------------------------------------------------------------------


def test_a_studys_html_and_script_are_shown_as_text(server, browser, tmp_path):
    """Imported texts holding HTML and script appear literally on the annotator page
    (consent, instructions; the title is the researchers' and never shown there) and the
    dashboard (title, settings form); no element is made from them and nothing runs (no
    dialog, no policy violation)."""
    owner = get_user_model().objects.create_user("ada", password="a long password 1")
    study = make_study(
        tmp_path, slug="evil", title=f"T {EVIL}"[:200], instructions=f"I {EVIL}",
        consent=f"C {EVIL}", owner=owner,
    )  # fmt: skip
    assert Study.objects.get(pk=study.pk).instructions == f"I {EVIL}"
    page = browser.new_page()
    page.goto(f"{server.url}/annotate/{study.slug}/?PROLIFIC_PID=p1")
    page.wait_for_selector("[data-screen=consent]:not([hidden])")
    assert page.title() == "Image comparison study"
    assert page.inner_text("[data-screen=consent] .study-title") == "Image comparison study"
    assert page.inner_text("#consent-text") == f"C {EVIL}"
    page.click("#consent-agree")
    page.wait_for_selector("[data-screen=instructions]:not([hidden])")
    assert page.inner_text("#instructions-text") == f"I {EVIL}"
    made = "() => document.querySelectorAll('b, img[src=x], [onerror]').length"
    assert page.evaluate(made) == 0
    # The page's own two: its configuration (JSON, never run) and its module.
    scripts = page.evaluate("[...document.scripts].map(s => s.type + ' ' + s.src)")
    assert scripts == ["application/json ", f"module {server.url}/static/frontend/annotate/main.js"]

    page.goto(f"{server.url}/login/?next=/studies/{study.slug}/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "a long password 1")
    page.click("button[type=submit]")
    page.wait_for_url(f"**/studies/{study.slug}/")
    assert page.inner_text("main h1") == f"T {EVIL}"
    assert page.input_value("#id_title") == f"T {EVIL}"
    assert page.input_value("#id_instructions") == f"I {EVIL}"
    assert page.input_value("#id_consent") == f"C {EVIL}"
    assert page.evaluate(made) == 0
    assert page.evaluate("[...document.scripts].every(s => s.src || s.type === 'application/json')")
    page.goto(f"{server.url}/studies/")
    assert f"T {EVIL}" in page.inner_text("main table")
    assert page.evaluate(made) == 0
