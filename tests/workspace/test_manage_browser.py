"""The management and browsing pages in real headless Chromium against gunicorn, with
screenshots at 1280x800 and 1920x1080 (``test-artifacts/screens/manage-*.png``): the
dashboard's People and Pilot data cards, a preview answered as an annotator (pilot data),
the data browser (scenes, a scene's images, the pairs sorted by disagreement and by the
metric's miss, a pair in the annotators' viewer), the delete and add-scenes pages, and
times in the viewer's own time zone with UTC on hover."""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from analysis import tasks as agreement_tasks
from annotation import services
from annotation.models import Image, Role, StudyMember, Trial, Vote
from scoring.models import Score
from tests.annotation.sessions import open_session, vote_after
from tests.browser import LOOK_MS, READY
from tests.conftest import ARTIFACTS, docs_screenshot, start_web_server, stop_web_server
from tests.images import write_scene_folder

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SCREENS = ARTIFACTS / "screens"
PASSWORD = "a long password 1"
SIZES = ((1280, 800), (1920, 1080))


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, media_root: Path):
    server = start_web_server(media=media_root, workers=1, threads=4)
    try:
        yield server
    finally:
        stop_web_server(server)


@pytest.fixture
def study(tmp_path):
    ada = get_user_model().objects.create_user("ada", password=PASSWORD)
    source = write_scene_folder(
        tmp_path / "src",
        {"bridge": ["reference", "jpeg", "blur"], "garden": ["reference", "jpeg", "blur"]},
        size=(320, 240),
    )
    study = services.study_import(
        source=source, slug="sharpness", title="Sharpness study", design="ref-vs-test",
        owner=ada, live=True, trials_per_session=4, practice_trials=0, votes_per_pair=3,
        stop_when_decided=False,  # every pair its three votes: one of them is split
    ).study  # fmt: skip
    for name, role in (("bob", Role.EDITOR), ("vic", Role.VIEWER)):
        user = get_user_model().objects.create_user(name)
        StudyMember.objects.create(study=study, user=user, role=role)
    # Three annotators: all prefer the reference to the blurred image; one of them prefers
    # the JPEG image to the reference (a split pair).
    for n in range(3):
        token = open_session(study, f"p{n}")
        while (issued := services.trial_next(token=token)) is not None:
            trial = Trial.objects.select_related("pair__image_a", "pair__image_b").get(
                pk=issued.trial_id
            )
            a_is_reference = trial.pair.image_a.role == Image.Role.REFERENCE
            test = trial.pair.image_b if a_is_reference else trial.pair.image_a
            reference_on_left = a_is_reference == trial.a_on_left
            prefers_test = n == 1 and test.condition == "jpeg"
            choice = "left" if reference_on_left != prefers_test else "right"
            vote_after(token, issued.trial_id, choice, 900)
    # A metric that calls every JPEG worse than the blur: it misses where people agree.
    for image in Image.objects.filter(scene__study=study):
        value = {"reference": 40.0, "jpeg": 30.0, "blur": 20.0}[image.condition]
        Score.objects.create(
            image=image, metric="psnr", version="1", value=value, lower_better=False
        )
    agreement_tasks.agreement_snapshot_refresh(study.pk, "counted")  # the human scale
    return study


def log_in(page, server, next_path: str) -> None:
    page.goto(f"{server.url}/login/?next={next_path}")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def scale_of(thumb) -> float:
    return float(thumb.text_content().split("people:")[1].split()[0])


def shoot(page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(150)
        page.screenshot(path=SCREENS / f"manage-{name}-{width}.png")


def test_a_researcher_previews_browses_and_manages_a_study(server, chromium, study):
    context = chromium.new_context(
        viewport={"width": 1280, "height": 800}, timezone_id="America/New_York"
    )
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        log_in(page, server, f"/studies/{study.slug}/")
        # Times: local (New York), UTC on hover.
        as_of = page.locator("time[data-field='as-of']")
        page.wait_for_function("document.querySelector(\"time[data-field='as-of']\").title !== ''")
        assert "UTC" in as_of.get_attribute("title")
        assert "UTC" not in as_of.text_content()
        people = page.locator("#people")
        assert people.locator("tr[data-member='bob'] select").input_value() == "editor"
        assert people.locator("tr[data-member='vic'] select").input_value() == "viewer"
        shoot(page, "dashboard")

        # Preview: a new tab on the annotator page, answers kept as pilot data.
        with context.expect_page() as opened:
            page.click("text=Preview as annotator")
        preview = opened.value
        preview.on("pageerror", lambda error: errors.append(f"preview: {error}"))
        preview.wait_for_selector("[data-screen=instructions]:not([hidden])")
        assert "#pilot=" not in preview.url  # the token left the address
        assert preview.locator(".preview-banner").is_visible()
        preview.keyboard.press("Enter")
        for _ in range(4):
            preview.wait_for_selector(READY)
            preview.wait_for_timeout(LOOK_MS)
            preview.keyboard.press("1")
        preview.wait_for_selector("[data-screen=preview-done]:not([hidden])")
        assert preview.locator("#preview-count").text_content() == "4"
        shoot(preview, "preview-done")
        preview.close()
        assert Vote.objects.filter(pair__study=study, pilot=True).count() == 4
        page.reload()
        assert "1 preview session, 4 pilot votes." in page.locator("#pilot").text_content()
        # The annotators' counted votes are unchanged: 3 sessions x 4 trials.
        assert page.locator("[data-field='counted_votes']").first.text_content() == "12"

        # The data: scenes, then pairs by disagreement, then by the metric's miss.
        page.click("text=Browse data")
        page.wait_for_url("**/data/")
        assert page.locator("table.browse-scenes tbody tr").count() == 2
        shoot(page, "data")
        docs_screenshot(page, "data-browser")
        page.select_option("#sort", "disagreement")
        page.click("form.browse-controls button[type=submit]")
        page.wait_for_url("**sort=disagreement**")
        first = page.locator("table.pairs tbody tr").first
        assert "jpeg" in first.text_content()  # the split pairs first
        page.select_option("#sort", "miss")
        page.click("form.browse-controls button[type=submit]")
        page.wait_for_url("**sort=miss**")
        first = page.locator("table.pairs tbody tr").first
        assert "jpeg" in first.text_content()  # psnr calls the JPEG better than people do
        shoot(page, "pairs-by-miss")

        page.goto(f"{server.url}/studies/{study.slug}/data/")
        page.click("table.browse-scenes a >> text=bridge")
        page.wait_for_selector("ul.thumbs img")
        assert page.locator("ul.thumbs li").count() == 3
        # Each compared image's place on the human scale; the blurred one lowest.
        blur = page.locator("ul.thumbs li", has_text="bridge/blur.png")
        jpeg = page.locator("ul.thumbs li", has_text="bridge/jpeg.png")
        assert "people:" in blur.text_content()
        assert scale_of(blur) < scale_of(jpeg)
        page.wait_for_function(
            "[...document.querySelectorAll('ul.thumbs img')]"
            ".every(i => i.complete && i.naturalWidth === 320)"
        )
        shoot(page, "scene")

        page.locator("table.pairs tbody tr th a").first.click()
        page.wait_for_selector("#stage img, #stage canvas")
        page.wait_for_function(
            "document.getElementById('view-status').textContent.startsWith('Zoom')"
        )
        votes = page.locator("section[aria-labelledby=votes-title] tbody tr")
        assert votes.count() == 4  # three annotators and the preview, marked pilot
        assert votes.filter(has_text="pilot").count() == 1
        shoot(page, "pair")

        page.goto(f"{server.url}/studies/{study.slug}/scenes/add/")
        shoot(page, "scenes-add")
        services.study_configure(study=study, status="closed")
        page.goto(f"{server.url}/studies/{study.slug}/delete/")
        assert "4 sessions and 16 votes (pilot data included)" in page.content()
        shoot(page, "delete")

        # Archive from the dashboard: the study moves to the archived list.
        page.goto(f"{server.url}/studies/{study.slug}/")
        page.click("text=Archive: hide from the list, read-only")
        page.wait_for_url("**/studies/")
        assert "Sharpness study" not in page.locator("main").text_content()
        page.click("text=Archived (1)")
        page.wait_for_url("**archived=1")
        assert page.locator("table tbody tr").count() == 1
        shoot(page, "archived-list")

        # Accounts: the reset page, reached from the login page.
        page.click("button:has-text('Log out')")
        page.click("text=Forgot your password?")
        page.wait_for_url("**/password/reset/")
        shoot(page, "password-reset")
    finally:
        context.close()
    assert not errors, errors
