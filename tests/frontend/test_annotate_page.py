"""The annotator page in real headless Chromium, against gunicorn on the test database.

Screenshots of every screen are kept in test-artifacts/screens. Over 400 lines: one browser
and server per module serve every screen's test.
"""

import re

import numpy as np
import pytest

from annotation.models import AnnotatorSession, Design, Image, Trial, Vote
from tests.browser import MIN_RESPONSE_MS, READY, wait_ready
from tests.conftest import docs_screenshot
from tests.frontend.conftest import media_pixels, screenshot, shot_pixels

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

KEY_CHOICE = {"1": "left", "2": "similar", "3": "right"}


def shown_urls(page) -> dict[str, str]:
    """The image each slot shows now, by slot (left, reference, right)."""
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#stage .box')].map(
            box => [box.dataset.slot, box.querySelector('img:not([hidden])').src]))"""
    )


def start(page) -> str:
    page.wait_for_selector("[data-screen=consent]:not([hidden])")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-screen=instructions]:not([hidden])")
    page.keyboard.press("Enter")
    return wait_ready(page)


def expected_preferred(trial: Trial, choice: str, left_url: str) -> str:
    """What a choice means for the pair, from the image the page showed on the left."""
    if choice == "similar":
        return "similar"
    a_left = left_url.endswith(trial.pair.image_a.file)
    assert a_left == trial.a_on_left, "the page showed the sides the server chose"
    return "a" if (choice == "left") == a_left else "b"


def test_a_study_is_completed_with_the_keyboard_alone(site, open_page):
    study = site.study(practice_trials=1, break_every=2, instructions="Look closely.")
    page = open_page(f"{site.url}/annotate/{study.slug}/")
    api_calls = []  # one round trip per trial: each answer's response brings the next trial
    page.on("request", lambda r: "/api/v1/" in r.url and api_calls.append((r.method, r.url)))
    page.wait_for_selector("[data-screen=consent]:not([hidden])")
    screenshot(page, "consent")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-screen=instructions]:not([hidden])")
    screenshot(page, "instructions")
    assert "Look closely." in page.inner_text("#instructions-text")
    page.keyboard.press("Enter")

    pressed = []
    keys = iter("1322")
    while True:
        page.wait_for_selector(
            "[data-screen=trial]:not([hidden]) " + READY
            + ", [data-screen=break]:not([hidden]), [data-screen=done]:not([hidden])"
        )  # fmt: skip
        screen = page.evaluate("iqaAnnotator.screen")
        if screen == "break":
            screenshot(page, "break")
            page.keyboard.press("Enter")
            continue
        if screen == "done":
            break
        trial_id = wait_ready(page)
        if not pressed:
            screenshot(page, "trial-ref-vs-test")
            docs_screenshot(page, "trial-page-ref-vs-test")
        key = next(keys)
        pressed.append((trial_id, KEY_CHOICE[key], shown_urls(page)["left"]))
        page.keyboard.press(key)

    screenshot(page, "done")
    assert page.inner_text("#completion-code") == study.completion_code
    assert len(pressed) == 4  # 1 practice + the 3 pairs left for this session
    votes = {str(v.trial_id): v for v in Vote.objects.select_related("trial__pair__image_a")}
    assert len(votes) == 4
    for trial_id, choice, left_url in pressed:
        vote = votes[trial_id]
        assert vote.choice == choice
        assert vote.preferred == expected_preferred(vote.trial, choice, left_url)
        assert vote.client_info["device_pixel_ratio"] == 1
        assert vote.client_info["viewport_width"] == 1280
        assert vote.response_ms >= MIN_RESPONSE_MS
    assert Vote.objects.order_by("created_at").first().kind == "practice"
    session = AnnotatorSession.objects.get()
    assert session.completed_at is not None
    asked = [url for method, url in api_calls if "/next-trial" in url]
    sent = [url for method, url in api_calls if method == "POST" and "/votes" in url]
    calls = [(m, u.rsplit("/", 1)[-1]) for m, u in api_calls]
    assert len(asked) == 1, calls  # the first trial; every other came with an answer
    assert len(sent) == 4, api_calls
    assert all(url.endswith("/votes?next=1&ahead=1") for url in sent)


def test_a_study_is_completed_with_the_mouse_and_returns_to_prolific(site, open_page):
    study = site.study(
        slug="mouse",
        design=Design.PAIRWISE,
        show_reference=True,
        scenes=1,
        tests_per_scene=3,
        votes_per_pair=1,
        reference_is_candidate=False,
    )
    study.completion_url = f"{site.url}/healthz?cc={study.completion_code}"
    study.save()
    page = open_page(
        f"{site.url}/annotate/{study.slug}/?PROLIFIC_PID=p123&STUDY_ID=s9&SESSION_ID=x7"
    )
    page.click("#consent-agree")
    page.click("#instructions-start")
    clicks = []
    buttons = ["#answer-right", "#answer-left", "#answer-similar"]
    while page.evaluate("iqaAnnotator.screen") != "done" and len(clicks) < 10:
        page.wait_for_selector(READY + ", [data-screen=done]:not([hidden])")
        if page.evaluate("iqaAnnotator.screen") == "done":
            break
        trial_id = wait_ready(page)
        urls = shown_urls(page)
        assert set(urls) == {"left", "reference", "right"}
        if not clicks:
            screenshot(page, "trial-pairwise-with-reference")
            docs_screenshot(page, "trial-page")
            assert page.inner_text(".slot-reference figcaption") == "Reference"
        button = buttons[len(clicks) % 3]
        clicks.append((trial_id, page.get_attribute(button, "data-choice"), urls["left"]))
        page.click(button)

    assert len(clicks) == 3  # C(3, 2) pairs of test images, one vote each
    for trial_id, choice, left_url in clicks:
        vote = Vote.objects.select_related("trial__pair__image_a").get(trial_id=trial_id)
        assert vote.choice == choice
        assert vote.preferred == expected_preferred(vote.trial, choice, left_url)
    session = AnnotatorSession.objects.get()
    assert (session.participant_id, session.source) == ("p123", "prolific")
    assert session.external_ids == {"STUDY_ID": "s9", "SESSION_ID": "x7"}
    page.wait_for_selector("[data-screen=done]:not([hidden])")
    assert page.inner_text("#completion-code") == study.completion_code
    assert page.get_attribute("#completion-link", "href") == study.completion_url
    # The page takes the annotator back to the recruiter after a few seconds.
    page.wait_for_url(study.completion_url, timeout=15_000)


@pytest.mark.parametrize("dpr", [1, 2])
def test_images_are_shown_at_native_resolution(site, open_page, dpr):
    """One image pixel on one device pixel: CSS size = natural size / devicePixelRatio, and
    the screen shows exactly the file's pixels."""
    study = site.study(slug=f"native-{dpr}", size=(96, 64))
    page = open_page(f"{site.url}/annotate/{study.slug}/", dpr=dpr)
    start(page)
    screenshot(page, f"trial-dpr{dpr}")
    boxes = page.query_selector_all("#stage .box")
    assert len(boxes) == 2
    for box in boxes:
        img = box.query_selector("img:not([hidden])")
        size = img.evaluate(
            """img => ({w: img.getBoundingClientRect().width, h: img.getBoundingClientRect().height,
                        nw: img.naturalWidth, nh: img.naturalHeight,
                        rendering: getComputedStyle(img).imageRendering})"""
        )
        assert (size["nw"], size["nh"]) == (96, 64)
        assert (size["w"], size["h"]) == (96 / dpr, 64 / dpr)
        assert size["rendering"] == "pixelated"
        shown = shot_pixels(page, box)
        expected = media_pixels(site.media, img.get_attribute("src"))
        assert shown.shape == expected.shape
        assert np.array_equal(shown, expected)


def box_pixels(page, slot: str) -> np.ndarray:
    return shot_pixels(page, page.query_selector(f"#stage .box[data-slot={slot}]"))


def test_crops_zoom_and_pan_show_the_same_region_of_every_image(site, open_page):
    """A window too small for the images shows synchronised native-pixel crops, never a
    downscaled image; zoom (nearest neighbour) and pan move every image together."""
    study = site.study(slug="crop", size=(480, 400), scenes=1)
    page = open_page(f"{site.url}/annotate/{study.slug}/", width=760, height=560)
    start(page)
    urls = shown_urls(page)
    sources = {slot: media_pixels(site.media, url) for slot, url in urls.items()}

    def check(zoom: int) -> dict:
        view = page.evaluate("iqaAnnotator.viewer")
        assert view["zoom"] == zoom
        assert view["cropped"]
        for slot, source in sources.items():
            shown = box_pixels(page, slot)
            zoomed = np.repeat(np.repeat(source, zoom, axis=0), zoom, axis=1)
            x, y = view["pan"]["x"], view["pan"]["y"]
            h, w = shown.shape[:2]
            assert w < source.shape[1] * zoom  # a crop, not a downscaled image
            assert np.array_equal(shown, zoomed[y : y + h, x : x + w]), (slot, zoom, x, y)
        return view["pan"]

    screenshot(page, "trial-cropped")
    first = check(1)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    moved = check(1)
    assert moved["x"] > first["x"]
    page.keyboard.press("+")
    check(2)
    screenshot(page, "trial-zoom-2")
    # Dragging one image moves all of them.
    box = page.query_selector("#stage .box[data-slot=left]").bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.mouse.down()
    page.mouse.move(box["x"] + 60, box["y"] + 80, steps=4)
    page.mouse.up()
    dragged = check(2)
    assert dragged != moved
    page.keyboard.press("0")
    check(1)


def test_flicker_swaps_the_images_in_place(site, open_page):
    study = site.study(
        slug="flicker",
        design=Design.PAIRWISE,
        show_reference=True,
        scenes=1,
        tests_per_scene=2,
        reference_is_candidate=False,
    )
    page = open_page(f"{site.url}/annotate/{study.slug}/")
    start(page)
    urls = shown_urls(page)
    pixels = {slot: media_pixels(site.media, url) for slot, url in urls.items()}
    rects = {s: page.query_selector(f"#stage .box[data-slot={s}]").bounding_box() for s in urls}

    page.keyboard.down(" ")
    assert np.array_equal(box_pixels(page, "left"), pixels["right"])
    assert np.array_equal(box_pixels(page, "right"), pixels["left"])
    assert np.array_equal(box_pixels(page, "reference"), pixels["reference"])
    assert page.inner_text(".slot-left figcaption") == "A: showing B"
    screenshot(page, "trial-flicker")
    page.keyboard.up(" ")
    assert np.array_equal(box_pixels(page, "left"), pixels["left"])

    page.keyboard.down("r")
    assert np.array_equal(box_pixels(page, "left"), pixels["reference"])
    assert np.array_equal(box_pixels(page, "right"), pixels["reference"])
    page.keyboard.up("r")
    assert np.array_equal(box_pixels(page, "right"), pixels["right"])
    # In place: nothing moved.
    assert rects == {
        s: page.query_selector(f"#stage .box[data-slot={s}]").bounding_box() for s in urls
    }
    # The on-screen button does the same while held.
    page.hover("#flicker")
    page.mouse.down()
    assert np.array_equal(box_pixels(page, "left"), pixels["right"])
    page.mouse.up()
    assert np.array_equal(box_pixels(page, "left"), pixels["left"])


def test_an_aborted_vote_is_retried_and_stored_once(site, open_page):
    study = site.study(slug="retry")
    page = open_page(f"{site.url}/annotate/{study.slug}/")
    attempts = []

    def flaky(route):
        attempts.append(route.request.post_data_json)
        if len(attempts) == 1:
            route.abort()
        else:
            route.continue_()

    page.route("**/votes*", flaky)
    trial_id = start(page)
    page.keyboard.press("1")
    page.wait_for_function("() => iqaAnnotator.pendingAnswers === 0")
    assert len(attempts) >= 2
    assert {a["trial_id"] for a in attempts} == {trial_id}
    assert {a["choice"] for a in attempts} == {"left"}
    assert Vote.objects.filter(trial_id=trial_id).count() == 1
    assert Vote.objects.count() == 1
    # The next trial (preloaded) is already showing.
    assert wait_ready(page) != trial_id


def test_an_answer_survives_a_reload_and_the_study_resumes(site, open_page):
    study = site.study(slug="reload", scenes=2, tests_per_scene=3)
    page = open_page(f"{site.url}/annotate/{study.slug}/")
    first = start(page)
    page.keyboard.press("2")
    second = wait_ready(page)
    # The network goes away: the answer waits in the browser.
    page.route("**/votes*", lambda route: route.abort())
    page.keyboard.press("3")
    third = wait_ready(page)
    page.wait_for_selector("#save-status[data-state=offline]")
    screenshot(page, "trial-offline")
    assert page.evaluate("iqaAnnotator.pendingAnswers") == 1
    assert not Vote.objects.filter(trial_id=second).exists()

    page.unroute("**/votes*")
    page.reload()
    # Straight back to the trials, at the trial that was showing.
    assert wait_ready(page) == third
    page.wait_for_function("() => iqaAnnotator.pendingAnswers === 0")
    assert dict(Vote.objects.values_list("trial_id", "choice")) == {
        Trial.objects.get(pk=first).pk: "similar",
        Trial.objects.get(pk=second).pk: "right",
    }


def test_a_double_click_or_a_held_key_answers_one_trial(site, open_page):
    study = site.study(slug="double", scenes=2, tests_per_scene=3)
    page = open_page(f"{site.url}/annotate/{study.slug}/")
    first = start(page)
    page.dblclick("#answer-left")
    second = wait_ready(page)
    page.wait_for_function("() => iqaAnnotator.pendingAnswers === 0")
    assert second != first
    page.keyboard.down("3")
    page.keyboard.down("3")  # auto-repeat
    page.keyboard.down("3")
    page.keyboard.up("3")
    third = wait_ready(page)
    page.wait_for_function("() => iqaAnnotator.pendingAnswers === 0")
    page.wait_for_timeout(300)
    assert dict(Vote.objects.values_list("trial_id", "choice")) == {
        Trial.objects.get(pk=first).pk: "left",
        Trial.objects.get(pk=second).pk: "right",
    }
    assert third not in {first, second}


def test_a_browser_zoom_change_pauses_the_trial_until_it_is_back(site, open_page):
    study = site.study(slug="zoom")
    page = open_page(f"{site.url}/annotate/{study.slug}/")
    trial_id = start(page)
    cdp = page.context.new_cdp_session(page)
    metrics = {"width": 1280, "height": 800, "mobile": False}
    cdp.send("Emulation.setDeviceMetricsOverride", {**metrics, "deviceScaleFactor": 1.25})
    page.wait_for_selector("#pause:not([hidden])")
    assert "125%" in page.inner_text("#pause-message")
    assert page.is_disabled("#answer-left")
    page.keyboard.press("1")
    screenshot(page, "paused")  # (Playwright's screenshot may restore the scale itself)
    cdp.send("Emulation.setDeviceMetricsOverride", {**metrics, "deviceScaleFactor": 1})
    page.wait_for_selector("#pause", state="hidden")
    assert wait_ready(page) == trial_id
    assert not Vote.objects.exists()  # the key pressed while paused did nothing
    page.keyboard.press("1")
    page.wait_for_function("() => iqaAnnotator.pendingAnswers === 0")
    assert Vote.objects.get().trial_id.hex == trial_id.replace("-", "")


def test_focus_is_visible_and_every_control_is_a_labelled_button(site, open_page):
    study = site.study(slug="a11y")
    page = open_page(f"{site.url}/annotate/{study.slug}/")
    start(page)
    controls = page.evaluate(
        """() => [...document.querySelectorAll('[data-screen=trial] button')]
             .filter(b => !b.hidden).map(b => ({tag: b.tagName, name: b.innerText.trim()}))"""
    )
    assert controls
    assert all(c["tag"] == "BUTTON" and c["name"] for c in controls)
    page.focus("#answer-similar")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [document.activeElement.id, s.outlineStyle, parseFloat(s.outlineWidth)]; }"
    )
    assert outline[0] == "answer-similar"
    assert outline[1] != "none"
    assert outline[2] >= 3


def test_mturk_preview_shows_the_task_without_opening_a_session(site, open_page):
    study = site.study(slug="preview", instructions="Compare carefully.")
    page = open_page(
        f"{site.url}/annotate/{study.slug}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=h1"
    )
    page.wait_for_selector("[data-screen=preview]:not([hidden])")
    assert "Compare carefully." in page.inner_text("[data-screen=preview]")
    assert not AnnotatorSession.objects.exists()


@pytest.mark.parametrize("dpr", [1, 2])
def test_a_tiff_study_is_shown_pixel_exact_through_its_display_pngs(site, open_page, dpr):
    """TIFF images (which browsers cannot show) are shown as their display PNGs, and the
    screen shows exactly the original TIFF's pixels, one image pixel per device pixel."""
    import PIL.Image

    from annotation.services import study_import

    rng = np.random.default_rng(11)
    src = site.tmp / f"tiff-{dpr}"
    originals = {}
    for scene in ("s0", "s1"):
        (src / scene).mkdir(parents=True)
        for stem in ("reference", "t0"):
            pixels = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
            PIL.Image.fromarray(pixels).save(src / scene / f"{stem}.tif", format="TIFF")
            originals[f"{scene}/{stem}.tif"] = pixels
    study_import(
        source=src, slug=f"tiff-{dpr}", design=Design.REF_VS_TEST, live=True,
        votes_per_pair=1, practice_trials=0,
    )  # fmt: skip
    by_url = {
        f"/media/{image.display_file}": originals[image.name]
        for image in Image.objects.filter(scene__study__slug=f"tiff-{dpr}")
    }
    page = open_page(f"{site.url}/annotate/tiff-{dpr}/", dpr=dpr)
    start(page)
    screenshot(page, f"trial-tiff-dpr{dpr}")
    boxes = page.query_selector_all("#stage .box")
    assert len(boxes) == 2
    for box in boxes:
        img = box.query_selector("img:not([hidden])")
        src_url = img.get_attribute("src")
        assert src_url.endswith(".png")
        shown = shot_pixels(page, box)
        assert shown.shape == (64, 96, 3)
        assert np.array_equal(shown, by_url[src_url])


# The word that names each answer, per design, in the buttons' order (keys 1, 2, 3).
ANSWER_WORDS = {
    Design.REF_VS_TEST: ("better", "similar", "worse"),
    Design.PAIRWISE: ("A", "similar", "B"),
    Design.NR_PAIRWISE: ("A", "similar", "B"),
}


@pytest.mark.parametrize("design", list(ANSWER_WORDS))
def test_the_question_names_the_answers_in_the_order_of_the_buttons(site, open_page, design):
    """Issue 25: the ref-vs-test question read "worse, similar or better" over buttons
    ordered better, similar, worse, so an annotator following the question answered the
    other way round. For every design the question names the answers in the order the
    buttons stand on the screen (left to right, keys 1 to 3), and so does the instructions'
    table of keys."""
    study = site.study(slug=f"order-{design}", design=design)
    page = open_page(f"{site.url}/annotate/{study.slug}/")
    page.wait_for_selector("[data-screen=consent]:not([hidden])")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-screen=instructions]:not([hidden])")
    keys = page.locator(".keys .answer-label").all_inner_texts()
    page.keyboard.press("Enter")
    page.wait_for_selector(READY)
    question = page.inner_text("[data-screen=trial] .question-text")
    buttons = sorted(page.locator("button[data-choice]").all(), key=lambda b: b.bounding_box()["x"])
    labels = [b.inner_text().split(maxsplit=1)[1] for b in buttons]  # after the key
    assert [b.get_attribute("data-choice") for b in buttons] == ["left", "similar", "right"]
    assert keys == labels
    words = ANSWER_WORDS[design]

    def where(word: str, text: str) -> int:
        # A and B as capital letters alone; the others as words, in any case.
        flags = 0 if len(word) == 1 else re.IGNORECASE
        found = re.search(rf"\b{word}\b", text, flags)
        return found.start() if found else -1

    for word, label in zip(words, labels, strict=True):
        assert where(word, label) >= 0, (word, label)
    positions = [where(word, question) for word in words]
    assert all(p >= 0 for p in positions), question
    assert positions == sorted(positions), question
    screenshot(page, f"question-{design}")
