"""``POST /api/v1/auth/token``: a researcher's API token for a username and password;
tokens are stored as digests; failed logins count per username and address."""

import base64
import hashlib

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.annotation.test_api_schema import AUTH_TOKEN, STUDIES, Api
from tests.factories import StudyFactory

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def researcher():
    return User.objects.create_user("ada", password="a good secret 1")


@pytest.fixture
def api() -> Api:
    """A client whose every response is checked against the live schema."""
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    return Api(APIClient(), schema)


def test_a_token_for_a_username_and_password(api, researcher):
    """200 ``{"token"}``: a new token, which authenticates the researcher API (their
    studies only). The database holds its digest, never the key; asking again replaces it
    (one token per researcher) and the old key stops working."""
    own = StudyFactory(owner=researcher)
    StudyFactory()  # someone else's
    body = {"username": "ada", "password": "a good secret 1"}
    first = api.call("post", AUTH_TOKEN, 200, body=body)["token"]
    stored = AuthToken.objects.get(user=researcher)
    assert stored.digest == hashlib.sha512(first.encode()).hexdigest()
    assert first not in {stored.digest, stored.token_key}
    assert len(first) >= 64
    scripted = Api(APIClient(HTTP_AUTHORIZATION=f"Token {first}"), api.schema)
    assert [s["slug"] for s in scripted.call("get", STUDIES, 200)] == [own.slug]
    second = api.call("post", AUTH_TOKEN, 200, body=body)["token"]
    assert second != first
    assert AuthToken.objects.filter(user=researcher).count() == 1
    assert APIClient(HTTP_AUTHORIZATION=f"Token {first}").get(STUDIES).status_code == 403
    assert APIClient(HTTP_AUTHORIZATION=f"Token {second}").get(STUDIES).status_code == 200


def test_wrong_credentials_and_inactive_accounts_get_400_in_the_one_error_format(api, researcher):
    """A wrong password, an unknown user and an inactive account get the same 400; missing
    fields name the field; nothing is made."""
    wrong = api.call("post", AUTH_TOKEN, 400, body={"username": "ada", "password": "nope"})
    assert wrong["error"] == {
        "code": "invalid_credentials",
        "message": "wrong username or password",
        "field": None,
    }
    assert api.call("post", AUTH_TOKEN, 400, body={"username": "eve", "password": "x"}) == wrong
    researcher.is_active = False
    researcher.save()
    body = {"username": "ada", "password": "a good secret 1"}
    assert api.call("post", AUTH_TOKEN, 400, body=body) == wrong
    missing = api.call("post", AUTH_TOKEN, 400, body={"username": "ada"})
    assert missing["error"]["field"] == "password"
    assert not AuthToken.objects.exists()


def test_a_session_or_token_is_not_needed_nor_used(researcher):
    """Scripts post without a CSRF token; a stale token header does not get in the way."""
    client = APIClient(enforce_csrf_checks=True, HTTP_AUTHORIZATION="Token stale")
    response = client.post(
        AUTH_TOKEN, {"username": "ada", "password": "a good secret 1"}, format="json"
    )
    assert response.status_code == 200


@override_settings(AXES_FAILURE_LIMIT=3)
def test_failed_logins_lock_a_username_from_that_address_only(api, researcher):
    """One count of failed logins for the login page, the admin's and the token endpoint,
    per username and address (django-axes): past IQA_LOGIN_FAILURES that address gets 429
    with Retry-After for that username, even with the right password; the right password
    from another address, and another username from the same one, still log in."""
    User.objects.create_user("bob", password="bobs good secret")
    api.client.post("/login/", {"username": "ada", "password": "nope"})
    api.client.post("/admin/login/", {"username": "ada", "password": "nope"})
    third = api.call("post", AUTH_TOKEN, 429, body={"username": "ada", "password": "nope"})
    assert third["error"]["code"] == "throttled"  # the failure that reaches the limit
    body = {"username": "ada", "password": "a good secret 1"}
    locked = api.client.post(AUTH_TOKEN, body, format="json")
    api.check("post", AUTH_TOKEN, locked)
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "throttled"
    assert int(locked["Retry-After"]) == 15 * 60
    page = api.client.post("/login/", {"username": "ada", "password": "a good secret 1"})
    assert page.status_code == 429
    assert b"Too many failed logins for this username" in page.content
    assert api.client.post("/admin/login/", {"username": "ada", "password": "x"}).status_code == 429
    other = APIClient(REMOTE_ADDR="192.0.2.8")
    assert other.post(AUTH_TOKEN, body, format="json").status_code == 200
    bob = {"username": "bob", "password": "bobs good secret"}
    assert api.client.post(AUTH_TOKEN, bob, format="json").status_code == 200


def test_a_password_on_each_request_is_not_accepted(researcher):
    """No HTTP basic auth: the password goes only to the throttled token endpoint."""
    basic = base64.b64encode(b"ada:a good secret 1").decode()
    client = APIClient(HTTP_AUTHORIZATION=f"Basic {basic}")
    assert client.get(STUDIES).status_code == 403
