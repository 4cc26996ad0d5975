"""The study dashboard in real headless Chromium against gunicorn: the votes-per-hour chart
renders under the server's Content-Security-Policy, which has no 'unsafe-eval' (Vega's
expressions go through vega-interpreter), a recruiting link copies, and the numbers update
in place."""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from annotation import services
from tests.annotation.sessions import vote_after
from tests.conftest import ARTIFACTS, docs_screenshot, start_web_server, stop_web_server
from tests.factories import LiveStudyFactory, make_gold_pair, make_pairs

pytestmark = pytest.mark.django_db(transaction=True)

SCREENS = ARTIFACTS / "screens"


def answer(study, participant: str, n: int) -> None:
    token = services.session_open(study_slug=study.slug, participant_id=participant).session.token
    for i in range(n):
        trial = services.trial_next(token=token)
        if trial is None:
            return
        vote_after(token, trial.trial_id, "left", 700 + 40 * i)


@pytest.fixture
def server(media_root: Path):
    server = start_web_server(
        media=media_root, workers=1, threads=4, extra_env={"IQA_DASHBOARD_REFRESH_SECONDS": "0"}
    )
    try:
        yield server
    finally:
        stop_web_server(server)


def test_the_dashboard_draws_its_chart_without_eval_copies_a_link_and_updates(server, chromium):
    user = get_user_model().objects.create_user("ada", password="a long password 1")
    study = LiveStudyFactory(owner=user, title="Sharpness study", slug="sharpness")
    make_pairs(study, 24, votes=3, scenes=8)
    make_gold_pair(study)
    answer(study, "p1", 20)
    answer(study, "p2", 9)

    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    errors, console = [], []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: console.append(message.text))
    try:
        page.goto(f"{server.url}/login/?next=/studies/{study.slug}/")
        page.fill("#id_username", "ada")
        page.fill("#id_password", "a long password 1")
        page.click("button[type=submit]")
        page.wait_for_url(f"**/studies/{study.slug}/")
        assert "script-src 'self';" in page.evaluate(
            "async () => (await fetch(location.href)).headers.get('content-security-policy')"
        )
        # The policy is in force: an inline script does not run (DevTools' own evaluation,
        # which page.evaluate uses, is exempt from it, so it cannot show eval blocked).
        assert (
            page.evaluate(
                "() => { const s = document.createElement('script');"
                " s.textContent = 'window.inlineRan = true'; document.body.append(s);"
                " return window.inlineRan === true; }"
            )
            is False
        )
        page.wait_for_selector("#chart-votes-per-hour[data-chart-ready] svg .mark-rect path")
        assert page.locator("#chart-votes-per-hour svg.marks").count() == 1
        assert page.locator("[data-scene-row]").count() == 9  # the gold pair has a scene
        counted = page.locator("[data-field='counted_votes']").first
        before = counted.text_content()

        page.click("button[data-copy='link-prolific']")
        page.wait_for_selector("text=Copied")
        copied = page.evaluate("() => navigator.clipboard.readText()")
        assert copied == (
            f"{server.url}/annotate/{study.slug}/?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}"
            "&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
        )
        SCREENS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENS / "study-dashboard-1280.png")
        docs_screenshot(page, "study-dashboard")
        page.screenshot(path=SCREENS / "study-dashboard-1280-full.png", full_page=True)

        # Half-typed settings survive the live update.
        page.fill("#id_title", "typing...")
        answer(study, "p3", 12)
        page.wait_for_function(
            "before => document.querySelector(\"[data-field='counted_votes']\").textContent"
            " !== before",
            arg=before,
            timeout=30_000,
        )
        assert int(counted.text_content()) > int(before)
        assert page.input_value("#id_title") == "typing..."
        page.set_viewport_size({"width": 1920, "height": 1080})
        page.screenshot(path=SCREENS / "study-dashboard-1920.png")
    finally:
        context.close()
    assert not errors, errors
    refused = [line for line in console if "Content Security Policy" in line]
    # One refusal, the probe's inline script; nothing of the page's (no eval, no inline).
    assert len(refused) == 1, refused
    assert "Executing inline script" in refused[0]


def test_the_dashboard_shows_what_each_sampling_policy_spent(server, chromium):
    """Active sampling: votes spent against the uniform design's cost and each scene's
    uncertainty; stopping when decided: pairs decided early and votes saved."""
    from analysis.services import sampling_plan
    from annotation.models import Design, Pair, Scene
    from tests.factories import ImageFactory, PairFactory, SceneFactory

    user = get_user_model().objects.create_user("ada", password="a long password 1")
    active = LiveStudyFactory(
        owner=user, slug="sr-active", design=Design.PAIRWISE, votes_per_pair=10,
        sampling="active", sampling_every=5,
    )  # fmt: skip
    for s in range(3):
        scene = SceneFactory(study=active, name=f"scene-{s}")
        images = [ImageFactory(scene=scene) for _ in range(5)]
        for k, a in enumerate(images):
            for b in images[k + 1 :]:
                PairFactory(scene=scene, image_a=a, image_b=b, target_votes=1)
    for participant in ("p1", "p2", "p3"):
        answer(active, participant, 15)
    planned = [
        sampling_plan(scene_id=pk)
        for pk in Scene.objects.filter(study=active).values_list("pk", flat=True)
    ]
    assert all(p is not None for p in planned)
    labels = LiveStudyFactory(
        owner=user, slug="diffiqa", design=Design.REF_VS_TEST, votes_per_pair=3,
        stop_when_decided=True,
    )  # fmt: skip
    make_pairs(labels, 6, votes=3)
    answer(labels, "q1", 6)
    answer(labels, "q2", 6)  # every answer "left": about half the pairs agree twice
    decided = Pair.objects.filter(study=labels, decided_at__isnull=False).count()

    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{server.url}/login/?next=/studies/{active.slug}/")
        page.fill("#id_username", "ada")
        page.fill("#id_password", "a long password 1")
        page.click("button[type=submit]")
        page.wait_for_url(f"**/studies/{active.slug}/")
        line = page.locator("[data-policy='active']")
        assert "45 of 300 votes spent" in " ".join(line.text_content().split())
        sds = page.locator("[data-scene-sd]").all_text_contents()
        assert len(sds) == 3
        assert all(float(sd) > 0 for sd in sds)
        assert "of budget" in page.locator("table.scenes thead").text_content()
        SCREENS.mkdir(parents=True, exist_ok=True)
        page.locator("#progress").scroll_into_view_if_needed()
        page.screenshot(path=SCREENS / "study-dashboard-active-1280.png")
        page.set_viewport_size({"width": 1920, "height": 1080})
        page.screenshot(path=SCREENS / "study-dashboard-active-1920.png")

        page.goto(f"{server.url}/studies/{labels.slug}/")
        line = page.locator("[data-policy='early-stop']")
        text = " ".join(line.text_content().split())
        assert f"{decided} pairs decided early, {decided} votes saved of" in text
        assert "uniform design's 18" in text
        page.locator("#progress").scroll_into_view_if_needed()
        page.screenshot(path=SCREENS / "study-dashboard-early-stop-1920.png")
        page.set_viewport_size({"width": 1280, "height": 800})
        page.screenshot(path=SCREENS / "study-dashboard-early-stop-1280.png")
    finally:
        context.close()
    assert decided > 0
    assert not errors, errors
