"""The account pages in real headless Chromium against gunicorn: log in, make an API
token and copy it, use it from a script, change the password, log out. Screenshots of
each page at 1280x800 and 1920x1080 land in test-artifacts/screens/."""

import hashlib
import json
import urllib.request

import pytest
from django.contrib.auth import get_user_model

from tests.conftest import ARTIFACTS
from tests.factories import StudyFactory
from workspace.services import researcher_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SCREENS = ARTIFACTS / "screens"
SIZES = {"1280": (1280, 800), "1920": (1920, 1080)}


def screens(page, name: str) -> None:
    """Keep the page at both sizes (test-artifacts/screens/workspace-<name>-<width>.png)."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    for label, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=SCREENS / f"workspace-{name}-{label}.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})


def test_a_researcher_logs_in_makes_a_token_changes_the_password_and_logs_out(chromium, web_server):
    user, password = researcher_create(username="ada")
    StudyFactory(slug="ada-study", title="Ada's study", owner=user)
    StudyFactory(slug="someone-elses", title="Someone else's")
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_server.url)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        # / -> /studies/ -> the login page, which comes back to the studies.
        page.goto(f"{web_server.url}/")
        assert page.url == f"{web_server.url}/login/?next=/studies/"
        screens(page, "login")
        page.get_by_label("Username").fill("ada")
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_selector("[role=alert]")
        assert "correct username and password" in page.inner_text("[role=alert]")
        screens(page, "login-refused")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{web_server.url}/studies/")
        assert "ada-study" in page.content()
        assert "someone-elses" not in page.content()

        # The account page: make a token, see it once, copy it.
        page.get_by_role("link", name="ada", exact=True).click()
        page.wait_for_url(f"{web_server.url}/account/")
        assert "You have no token." in page.inner_text("main")
        screens(page, "account")
        page.get_by_role("button", name="Create token").click()
        page.wait_for_selector("#token-key")
        key = page.inner_text("#token-key").strip()
        curl = page.inner_text("#token-curl")
        assert curl == f'curl -H "Authorization: Token {key}" {web_server.url}/api/v1/studies'
        page.get_by_role("button", name="Copy token").click()
        page.wait_for_function("() => document.querySelector('.copy-status').textContent !== ''")
        assert page.inner_text(".copy-status") == "Copied"
        assert page.evaluate("navigator.clipboard.readText()") == key
        screens(page, "account-new-token")

        # What the curl example does, from a script: the caller's studies only.
        request = urllib.request.Request(
            f"{web_server.url}/api/v1/studies", headers={"Authorization": f"Token {key}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert [s["slug"] for s in json.load(response)] == ["ada-study"]

        page.reload()
        assert key not in page.content()  # shown once
        screens(page, "account-with-token")

        # Change the password.
        page.get_by_role("link", name="Change password").click()
        page.wait_for_url(f"{web_server.url}/account/password/")
        screens(page, "password-change")
        page.get_by_label("Old password").fill(password)
        page.get_by_label("New password", exact=True).fill("correct horse battery staple")
        page.get_by_label("New password confirmation").fill("correct horse battery staple")
        page.get_by_role("button", name="Change password").click()
        page.wait_for_url(f"{web_server.url}/account/password/done/")
        screens(page, "password-changed")
        user.refresh_from_db()
        assert user.check_password("correct horse battery staple")

        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(f"{web_server.url}/login/")
        page.goto(f"{web_server.url}/account/")
        assert page.url == f"{web_server.url}/login/?next=/account/"
    finally:
        context.close()
    assert not errors, errors
    user = get_user_model().objects.get(username="ada")
    assert user.auth_token_set.get().digest == hashlib.sha512(key.encode()).hexdigest()
