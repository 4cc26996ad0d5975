"""The agreement page of a study with no votes and no metric scores yet (what a researcher
sees at a study's start): every chart that needs them says why it is empty instead of
drawing empty axes or a collapsed heat map (the votes-per-pair histogram shows its one bar),
the subset list holds "all", and the metric list is disabled."""

import pytest
from django.contrib.auth import get_user_model

from analysis.services import agreement_snapshot_refresh
from tests.conftest import ARTIFACTS
from tests.frontend.conftest import make_study

pytestmark = pytest.mark.django_db(transaction=True)

SCREENS = ARTIFACTS / "screens"
PASSWORD = "a long password 1"
# (the votes-per-pair histogram is not empty: one bar, every pair at 0 votes)
CHARTS = ["delta", "bars", "heat", "scatter"]


def test_a_report_without_votes_or_scores_says_why_each_chart_is_empty(
    module_web_server, chromium, tmp_path
):
    owner = get_user_model().objects.create_user("ada", password=PASSWORD)
    study = make_study(tmp_path, slug="fresh", scenes=2, tests_per_scene=3, owner=owner)
    assert agreement_snapshot_refresh(study=study, force=True).votes == 0
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        page.goto(f"{module_web_server.url}/login/?next=/studies/fresh/agreement/")
        page.fill("#id_username", "ada")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_function("() => document.querySelector('[data-rendered-votes]') !== null")
        for name in CHARTS:
            chart = page.locator(f"#chart-{name}")
            assert chart.get_attribute("data-rows") == "0", name
            shown = page.evaluate(
                "id => getComputedStyle(document.getElementById(id), '::after').content",
                f"chart-{name}",
            )
            assert shown == f'"{chart.get_attribute("data-empty")}"', (name, shown)
            assert len(shown) > 10
        assert page.locator("#chart-hist").get_attribute("data-rows") == "1"
        assert page.locator("#ctl-metric").is_disabled()
        assert page.eval_on_selector_all(
            "select[name=subset] option", "options => options.map(o => o.value)"
        ) == ["all"]
        SCREENS.mkdir(parents=True, exist_ok=True)
        for width, height in ((1280, 800), (1920, 1080)):
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(300)
            page.screenshot(path=SCREENS / f"agreement-empty-{width}.png", full_page=True)
    finally:
        context.close()
