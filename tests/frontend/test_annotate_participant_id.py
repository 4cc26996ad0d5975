"""The annotator page of a study that requires a recruiter's participant id, in real
headless Chromium against gunicorn: a participant arriving without one (or with a
malformed one) is told what to do, and no session is opened for them."""

import pytest

from annotation.models import AnnotatorSession
from tests.frontend.conftest import screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROLIFIC_ID = "5f1e2d3c4b5a69788796a5b4"


def test_a_participant_without_an_id_is_told_to_come_back_from_the_recruiter(site, open_page):
    study = site.study(slug="paid", completion_url="https://app.prolific.com/x?cc=C")
    assert study.require_participant_id  # on by default with a completion URL
    for width, height in ((1280, 800), (1920, 1080)):
        page = open_page(f"{site.url}/annotate/{study.slug}/", width=width, height=height)
        page.wait_for_selector("[data-screen=no-id]:not([hidden])")
        screenshot(page, f"no-participant-id-{width}x{height}")
    text = page.inner_text("[data-screen=no-id]")
    assert "Please open this study from Prolific or MTurk" in text
    assert "does not carry a valid participant id" in text
    assert not AnnotatorSession.objects.exists()

    # An id the recruiter would never send (its placeholder left unfilled): the server
    # refuses it when the session opens, and the page says why.
    page = open_page(
        f"{site.url}/annotate/{study.slug}/?PROLIFIC_PID=%7B%7B%25PROLIFIC_PID%25%7D%7D"
    )
    page.wait_for_selector("[data-screen=consent]:not([hidden])")
    page.click("#consent-agree")
    page.wait_for_selector("[data-screen=no-id]:not([hidden])")
    assert "is not a Prolific id (24 hexadecimal digits)" in page.inner_text("#no-id-detail")
    screenshot(page, "malformed-participant-id")
    assert not AnnotatorSession.objects.exists()

    page = open_page(f"{site.url}/annotate/{study.slug}/?PROLIFIC_PID={PROLIFIC_ID}")
    page.wait_for_selector("[data-screen=consent]:not([hidden])")
    page.click("#consent-agree")
    page.wait_for_selector("[data-screen=instructions]:not([hidden])")
    assert AnnotatorSession.objects.get().participant_id == PROLIFIC_ID
