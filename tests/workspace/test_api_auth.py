"""``POST /api/v1/auth/token``: a researcher's API token for a username and password."""

import base64

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from rest_framework.authtoken.models import Token
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
    """200 ``{"token"}``: made on first use, the same one after; it then authenticates
    the researcher API (their studies only)."""
    own = StudyFactory(owner=researcher)
    StudyFactory()  # someone else's
    body = {"username": "ada", "password": "a good secret 1"}
    first = api.call("post", AUTH_TOKEN, 200, body=body)
    assert first == {"token": Token.objects.get(user=researcher).key}
    assert api.call("post", AUTH_TOKEN, 200, body=body) == first
    assert Token.objects.count() == 1
    scripted = Api(APIClient(HTTP_AUTHORIZATION=f"Token {first['token']}"), api.schema)
    assert [s["slug"] for s in scripted.call("get", STUDIES, 200)] == [own.slug]


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
    assert not Token.objects.exists()


def test_a_session_or_token_is_not_needed_nor_used(researcher):
    """Scripts post without a CSRF token; a stale token header does not get in the way."""
    client = APIClient(enforce_csrf_checks=True, HTTP_AUTHORIZATION="Token stale")
    response = client.post(
        AUTH_TOKEN, {"username": "ada", "password": "a good secret 1"}, format="json"
    )
    assert response.status_code == 200


@override_settings(IQA_LOGIN_RATE="2/min")
def test_attempts_per_address_are_throttled(api, researcher):
    """Past IQA_LOGIN_RATE an address gets 429 (with Retry-After), even with the right
    password; the count is shared with the login page."""
    api.client.post("/login/", {"username": "ada", "password": "nope"})
    api.call("post", AUTH_TOKEN, 400, body={"username": "ada", "password": "nope"})
    body = {"username": "ada", "password": "a good secret 1"}
    throttled = api.client.post(AUTH_TOKEN, body, format="json")
    api.check("post", AUTH_TOKEN, throttled)
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "throttled"
    assert 0 < int(throttled["Retry-After"]) <= 60
    other = APIClient(REMOTE_ADDR="192.0.2.8")
    assert other.post(AUTH_TOKEN, body, format="json").status_code == 200


def test_a_password_on_each_request_is_not_accepted(researcher):
    """No HTTP basic auth: the password goes only to the throttled token endpoint."""
    basic = base64.b64encode(b"ada:a good secret 1").decode()
    client = APIClient(HTTP_AUTHORIZATION=f"Basic {basic}")
    assert client.get(STUDIES).status_code == 403
