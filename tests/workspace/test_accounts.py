"""Researcher accounts: the login page, logging out, changing the password, the account
page's API token, and ``manage.py create_researcher``."""

import hashlib
import re
import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client, override_settings
from knox.models import AuthToken
from rest_framework.test import APIClient

from workspace import services

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def researcher():
    return User.objects.create_user("ada", password="an old secret 1")


def log_in(client: Client, username: str, password: str, next_url: str = ""):
    return client.post("/login/", {"username": username, "password": password, "next": next_url})


# --- logging in and out ---------------------------------------------------------------


def test_the_login_page_is_the_platforms_own_and_logs_in_to_next(client, researcher):
    """The login page is the workspace's (not the admin's), labelled, with CSRF; a good
    password lands on ``next``; a logged-in visitor is sent on."""
    page = client.get("/login/?next=/studies/")
    assert page.status_code == 200
    assert [t.name for t in page.templates][:2] == ["workspace/login.html", "workspace/base.html"]
    html = page.content.decode()
    assert '<label for="id_username">' in html
    assert '<label for="id_password">' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'name="next" value="/studies/"' in html
    assert "create_researcher" in html  # how accounts are made: there is no sign-up
    response = log_in(client, "ada", "an old secret 1", "/studies/")
    assert response.status_code == 302
    assert response["Location"] == "/studies/"
    assert client.get("/login/")["Location"] == "/studies/"


def test_next_naming_the_login_page_itself_lands_on_the_study_list(client, researcher):
    """``/login/?next=/login/`` (a bookmark of a redirect) is no loop and no error."""
    response = log_in(client, "ada", "an old secret 1", "/login/?next=/login/")
    assert (response.status_code, response["Location"]) == (302, "/studies/")
    again = client.get("/login/?next=/login/")
    assert (again.status_code, again["Location"]) == (302, "/studies/")


def test_a_wrong_password_or_inactive_account_is_refused_on_the_page(client, researcher):
    """A wrong password and an inactive account get the same message, and no session;
    missing fields are named."""
    for password in ("wrong", "an old secret 1"):
        if password != "wrong":
            researcher.is_active = False
            researcher.save()
        response = log_in(client, "ada", password)
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.content.decode()
        assert "_auth_user_id" not in client.session
    empty = client.post("/login/", {"username": "", "password": ""}).content.decode()
    assert empty.count("This field is required.") == 2
    assert 'aria-invalid="true"' in empty


@override_settings(AXES_FAILURE_LIMIT=3)
def test_failed_logins_lock_that_username_from_that_address_on_the_page(client, researcher):
    """Past IQA_LOGIN_FAILURES the page answers 429 for that username from that address,
    even with the right password, and says so; another address is not held up."""
    assert [log_in(client, "ada", "wrong").status_code for _ in range(3)] == [200, 200, 429]
    held = log_in(client, "ada", "an old secret 1")
    assert held.status_code == 429
    assert "Too many failed logins for this username" in held.content.decode()
    assert "_auth_user_id" not in client.session
    other = Client(REMOTE_ADDR="192.0.2.7")
    assert log_in(other, "ada", "an old secret 1").status_code == 302


def test_logging_out_takes_a_post_and_lands_on_the_login_page(client, researcher):
    client.force_login(researcher)
    assert client.get("/logout/").status_code == 405  # a link cannot log anyone out
    response = client.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert client.get("/account/").status_code == 302


# --- changing the password ------------------------------------------------------------


def test_changing_the_password(client, researcher):
    """The old password is checked and the new one validated; afterwards the new one logs
    in, the old one does not, and the researcher stays logged in."""
    client.force_login(researcher)
    page = client.get("/account/password/")
    assert page.status_code == 200
    assert "workspace/base.html" in [t.name for t in page.templates]
    wrong = client.post(
        "/account/password/",
        {"old_password": "nope", "new_password1": "x", "new_password2": "x"},
    )
    assert wrong.status_code == 200
    assert "Your old password was entered incorrectly" in wrong.content.decode()
    weak = client.post(
        "/account/password/",
        {"old_password": "an old secret 1", "new_password1": "abc", "new_password2": "abc"},
    )
    assert "This password is too short" in weak.content.decode()
    new = "a brand new secret 2"
    done = client.post(
        "/account/password/",
        {"old_password": "an old secret 1", "new_password1": new, "new_password2": new},
    )
    assert done.status_code == 302
    assert done["Location"] == "/account/password/done/"
    assert "Password changed" in client.get(done["Location"]).content.decode()
    assert client.get("/account/").status_code == 200  # still logged in
    assert log_in(Client(), "ada", "an old secret 1").status_code == 200
    assert log_in(Client(), "ada", new).status_code == 302


def test_passwords_pass_djangos_four_validators_at_twelve_characters(client):
    """All digits, close to the username, common, or shorter than 12 characters: each is
    refused with Django's own message (the issue's "84729103845" and "bobbobbob" among
    them); a long, unrelated one is taken."""
    user = User.objects.create_user("bartholomew", password="an old secret 1")
    client.force_login(user)
    cases = {
        "84729103845": "This password is entirely numeric.",
        "bobbobbob": "at least 12 characters",
        "bartholomew1": "The password is too similar to the username.",
        "password1234": "This password is too common.",
    }
    for weak, message in cases.items():
        body = {"old_password": "an old secret 1", "new_password1": weak, "new_password2": weak}
        page = client.post("/account/password/", body).content.decode()
        assert message in page, weak
    strong = "tulips under a quiet moon"
    body = {"old_password": "an old secret 1", "new_password1": strong, "new_password2": strong}
    assert client.post("/account/password/", body).status_code == 302


# --- the API token on the account page -------------------------------------------------


def test_the_account_page_makes_shows_once_replaces_and_revokes_the_token(client, researcher):
    """Create shows the key once with a copy button and a curl example; the key works on
    the API; replace makes the old key fail; revoke leaves none."""
    client.force_login(researcher)
    page = client.get("/account/").content.decode()
    assert "ada" in page
    assert 'href="/account/password/"' in page
    assert "You have no token." in page
    assert "Revoke token" not in page

    response = client.post("/account/token/")
    assert response.status_code == 302
    assert response["Location"] == "/account/"
    page = client.get("/account/").content.decode()
    key = re.search(r'<pre class="copy" id="token-key">([0-9a-f]+)</pre>', page).group(1)
    digest = hashlib.sha512(key.encode()).hexdigest()
    assert AuthToken.objects.get(user=researcher).digest == digest  # the key is not stored
    assert f'<pre class="copy" id="token-key">{key}</pre>' in page
    assert 'data-copy="token-key"' in page
    assert f'curl -H "Authorization: Token {key}" http://testserver/api/v1/studies' in page
    assert "workspace/copy.js" in page
    assert "<script>" not in page
    again = client.get("/account/").content.decode()
    assert key not in again  # shown once
    assert key[:6] in again
    assert "Replace token" in again

    api = APIClient()
    assert api.get("/api/v1/studies", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    client.post("/account/token/")
    page = client.get("/account/").content.decode()
    new_key = re.search(r'<pre class="copy" id="token-key">([0-9a-f]+)</pre>', page).group(1)
    assert new_key != key
    assert api.get("/api/v1/studies", HTTP_AUTHORIZATION=f"Token {key}").status_code == 403
    assert api.get("/api/v1/studies", HTTP_AUTHORIZATION=f"Token {new_key}").status_code == 200

    client.post("/account/token/revoke/")
    assert not AuthToken.objects.filter(user=researcher).exists()
    assert api.get("/api/v1/studies", HTTP_AUTHORIZATION=f"Token {new_key}").status_code == 403
    assert "You have no token." in client.get("/account/").content.decode()


def test_token_actions_take_a_post_with_its_csrf_token(researcher):
    """A cross-site form cannot make or revoke a token: the POST needs the CSRF token,
    and a GET changes nothing."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher)
    assert client.post("/account/token/").status_code == 403
    assert client.get("/account/token/").status_code == 405
    assert not AuthToken.objects.exists()
    page = client.get("/account/").content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert client.post("/account/token/", {"csrfmiddlewaretoken": csrf}).status_code == 302
    assert AuthToken.objects.filter(user=researcher).exists()


def test_token_services_keep_one_token_per_researcher(researcher):
    _, first = services.token_create(user=researcher)
    stored, second = services.token_create(user=researcher)
    assert list(AuthToken.objects.values_list("digest", flat=True)) == [stored.digest]
    assert stored.digest == hashlib.sha512(second.encode()).hexdigest()
    assert first != second
    assert services.token_revoke(user=researcher) is True
    assert services.token_revoke(user=researcher) is False


@pytest.mark.django_db(transaction=True)
def test_two_clicks_at_once_on_new_token_each_succeed_and_leave_one_token(researcher):
    """Token creation takes the researcher's row lock: concurrent requests replace the
    token in turn (no IntegrityError on the one-token-per-user rule)."""
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def click() -> None:
        try:
            barrier.wait()
            for _ in range(5):
                services.token_create(user=researcher)
        except BaseException as exc:  # every failure is the finding
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert AuthToken.objects.filter(user=researcher).count() == 1


# --- manage.py create_researcher --------------------------------------------------------


def test_create_researcher_prints_a_password_that_logs_in(client, capsys):
    call_command("create_researcher", "grace")
    out = capsys.readouterr().out
    password = re.search(r"Created researcher 'grace' with password: (\S+)", out).group(1)
    user = User.objects.get(username="grace")
    assert user.is_active
    assert not user.is_staff
    assert not user.is_superuser
    assert len(password) >= 16
    assert log_in(client, "grace", password, "/studies/")["Location"] == "/studies/"


def test_create_researcher_staff(capsys):
    call_command("create_researcher", "boss", "--staff")
    assert "Created staff researcher 'boss'" in capsys.readouterr().out
    user = User.objects.get(username="boss")
    assert user.is_staff
    assert not user.is_superuser


def test_create_researcher_refuses_an_existing_or_invalid_username(researcher):
    """An existing username is a clear error and changes nothing (not even its password);
    so is a name Django does not accept."""
    before = User.objects.get(username="ada").password
    with pytest.raises(CommandError, match="a user named 'ada' exists already"):
        call_command("create_researcher", "ada", "--staff")
    after = User.objects.get(username="ada")
    assert after.password == before
    assert not after.is_staff
    with pytest.raises(CommandError, match="username 'no spaces please'"):
        call_command("create_researcher", "no spaces please")
    assert User.objects.count() == 1


def test_there_is_no_sign_up_page(client):
    for path in ("/signup/", "/register/", "/accounts/signup/"):
        assert client.get(path).status_code == 404


def test_tokens_made_before_digests_keep_working_and_the_clear_table_goes(researcher):
    """The migration to digests: a key from DRF's table (kept in clear) is stored as its
    digest, authenticates as before, and the table of clear keys is dropped."""
    import importlib

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("workspace.migrations.0003_tokens_as_digests")
    key = "0123456789abcdef0123456789abcdef01234567"  # DRF's 40 hexadecimal digits
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamp with time zone NOT NULL, user_id integer NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, now() - interval '30 days', %s)",
            [key, researcher.pk],
        )
    with connection.schema_editor() as editor:
        migration.keys_to_digests(apps, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    stored = AuthToken.objects.get(user=researcher)
    assert stored.digest == hashlib.sha512(key.encode()).hexdigest()
    assert stored.token_key == key[:15]  # the lookup prefix; the key itself is not kept
    response = APIClient().get("/api/v1/studies", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200
