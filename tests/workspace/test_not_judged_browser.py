"""The dashboard's annotators panel shows "not judged" for annotators with too few answers
for any rule (issue 18), beside one the default tests exclude, in headless Chromium."""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from annotation import services
from tests.annotation.sessions import vote_after
from tests.conftest import start_web_server, stop_web_server
from tests.factories import LiveStudyFactory, make_pairs
from tests.workspace.test_quality_pages import shoot

pytestmark = pytest.mark.django_db(transaction=True)


def answer(study, participant: str, n: int, *choices: str) -> str:
    """``n`` answers cycling through ``choices``; returns the pseudonym."""
    opened = services.session_open(study_slug=study.slug, participant_id=participant)
    token = opened.session.token
    for i in range(n):
        trial = services.trial_next(token=token)
        choice = choices[i % len(choices)]
        vote_after(token, trial.trial_id, choice, 1500)
    return opened.session.pseudonym


@pytest.fixture
def server(media_root: Path):
    server = start_web_server(media=media_root, workers=1, threads=4)
    try:
        yield server
    finally:
        stop_web_server(server)


def test_short_sessions_show_as_not_judged(server, chromium):
    ada = get_user_model().objects.create_user("ada", password="a good secret 1")
    study = LiveStudyFactory(owner=ada, gold_rate=0.0, slug="qc", title="Quality control")
    make_pairs(study, 40, votes=3)
    lefty = answer(study, "lefty", 40, "left")  # 40 answers, all left: excluded
    short = answer(study, "short", 3, "similar")  # 3 answers: no rule can judge it
    answer(study, "honest", 25, "left", "right", "similar")
    page = chromium.new_context(viewport={"width": 1280, "height": 800}).new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server.url}/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "a good secret 1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/studies/")
    page.goto(f"{server.url}/studies/qc/")
    page.locator("#annotators tbody tr").first.wait_for()
    status = page.inner_text("[data-annotators-status]")
    assert "3 annotators, 1 excluded" in status
    assert "not judged (too few answers for any rule)" in status
    excluded = page.locator(f'#annotators tr[data-annotator="{lefty}"]').inner_text()
    assert "side bias: 100% left (40/40)" in excluded
    assert "Holm" in excluded
    row = page.locator(f'#annotators tr[data-annotator="{short}"]').inner_text()
    assert "not judged" in row
    assert "Not enough evidence for:" in row
    assert "one-sided exact binomial test" in page.inner_text("#annotators")
    shoot(page, "dashboard-annotators-not-judged", "#annotators")
    assert errors == []
