"""The annotator page when the study has no work left for a participant, when every trial
left is held by others, and when a participant id's session lives in another browser: in
real headless Chromium against gunicorn, with screenshots at 1280x800 and 1920x1080."""

import pytest

from annotation import services
from annotation.models import AnnotatorSession
from tests.frontend.conftest import screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROLIFIC_ID = "5f1e2d3c4b5a69788796a5b4"
SIZES = ((1280, 800), (1920, 1080))


def prolific_url(site, slug: str, participant: str, session: str) -> str:
    return f"{site.url}/annotate/{slug}/?PROLIFIC_PID={participant}&STUDY_ID=s&SESSION_ID={session}"


def start(page) -> None:
    page.wait_for_selector("[data-screen=consent]:not([hidden])")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-screen=instructions]:not([hidden])")
    page.keyboard.press("Enter")


def take_every_pair(study) -> None:
    """Someone else answers every pair the study has."""
    token = services.session_open(
        study_slug=study.slug, participant_id="a" * 24, source="prolific"
    ).session.token
    while (trial := services.trial_next(token=token)) is not None:
        services.vote_submit(token=token, trial_id=trial.trial_id, choice="left")


def test_a_participant_who_finds_the_study_full_is_told_so_without_a_code(site, open_page):
    """No code without work: the page says the study is full and what to do on Prolific
    (return the submission); no completion code, no redirect to the completion URL."""
    study = site.study(
        slug="full", scenes=1, tests_per_scene=1, trials_per_session=3,
        completion_url="https://app.prolific.com/submissions/complete?cc=C",
    )  # fmt: skip
    take_every_pair(study)
    for n, (width, height) in enumerate(SIZES):
        url = prolific_url(site, study.slug, f"{PROLIFIC_ID[:-1]}{n}", f"late-{n}")
        page = open_page(url, width=width, height=height)
        start(page)
        page.wait_for_selector("[data-screen=full]:not([hidden])")
        screenshot(page, f"study-full-{width}x{height}")
        text = page.inner_text("[data-screen=full]")
        assert "This study is full" in text
        assert "return your submission" in text
        assert not page.is_visible("[data-screen=done]")
        assert page.inner_text("#completion-code") == ""
        page.wait_for_timeout(1500)
        assert page.url.startswith(site.url)  # not sent to the completion URL
    assert {
        s.outcome for s in AnnotatorSession.objects.filter(participant_id__startswith="5f")
    } == {"full"}


def test_a_participant_id_started_in_another_browser_is_sent_back_there(site, open_page):
    """A session belongs to its browser: a participant id opened from a link without the
    recruiter's participation id (SESSION_ID), then from a fresh browser, is told to go
    back to the first one; with a link that carries it, the same participation resumes in
    any browser."""
    study = site.study(slug="mine", scenes=1, tests_per_scene=3)
    bare = f"{site.url}/annotate/{study.slug}/?PROLIFIC_PID={PROLIFIC_ID}"
    first = open_page(bare)
    start(first)
    first.wait_for_selector("#answer-left:not([disabled])")
    for width, height in SIZES:
        other = open_page(bare, width=width, height=height)
        other.wait_for_selector("[data-screen=consent]:not([hidden])")
        other.keyboard.press("Enter")
        other.wait_for_selector("[data-screen=elsewhere]:not([hidden])")
        screenshot(other, f"started-elsewhere-{width}x{height}")
        assert "started this study in another browser" in other.inner_text(
            "[data-screen=elsewhere]"
        )
    assert AnnotatorSession.objects.count() == 1
    with_submission = prolific_url(site, study.slug, PROLIFIC_ID, "sub-1")
    start(open_page(with_submission))
    token = AnnotatorSession.objects.get(assignment_id="sub-1").token
    again = open_page(with_submission)
    start(again)
    again.wait_for_selector("#answer-left:not([disabled])")  # that participation, resumed
    stored = again.evaluate(f"localStorage.getItem('iqa:{study.slug}:{PROLIFIC_ID}')")
    assert token in stored
    assert AnnotatorSession.objects.count() == 2


def test_a_participant_waits_while_every_trial_left_is_held_then_learns_the_study_is_full(
    site, open_page
):
    """Every pair left held by someone answering: the page says so and waits (the server
    answers 409 trials_held with Retry-After), then, once that answer comes, shows the
    study full."""
    study = site.study(slug="held", scenes=1, tests_per_scene=1)
    holder = services.session_open(study_slug=study.slug).session.token
    trial = services.trial_next(token=holder)
    page = open_page(f"{site.url}/annotate/{study.slug}/")
    start(page)
    page.wait_for_selector("#stage-message:has-text('being answered')")
    screenshot(page, "trials-held-1280x800")
    assert "waiting for one to come free" in page.inner_text("#stage-message")
    services.vote_submit(token=holder, trial_id=trial.trial_id, choice="left")
    page.wait_for_selector("[data-screen=full]:not([hidden])", timeout=15_000)
    assert "This study is full" in page.inner_text("[data-screen=full]")
