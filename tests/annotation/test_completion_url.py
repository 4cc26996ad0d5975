"""The completion URL, where an annotator's browser goes when done, is an https URL (plain
http only on the researcher's own machine): the one settings table refuses anything else
for the import, the commands, the dashboard's form and the API alike
(tests/annotation/test_study_settings.py, tests/workspace/test_dashboard.py), and the
annotator API never sends a stored URL that breaks the rule."""

import logging

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from annotation import services
from annotation.errors import InvalidSetting
from annotation.study_settings import study_settings_validate, web_url_allowed
from tests.factories import LiveStudyFactory, make_pairs

pytestmark = pytest.mark.django_db

ACCEPTED = [
    "https://app.prolific.com/submissions/complete?cc=C0DE42",
    "https://www.mturk.com/done",
    "http://localhost:8000/x",
    "http://127.0.0.1/done?cc=1",
    "http://[::1]:8000/done",
]
REFUSED = [
    "javascript:alert(1)//",
    "JavaScript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "http://example.com",
    "http://localhost.example.com/x",
    "ftp://example.org/x",
    "//example.org/x",
    # Browsers go to evil.example; Python's parser would see localhost.
    "http://evil.example\\@localhost/",
    "http://evil.example%5C@localhost/",
    "https://user:secret@example.org/x",
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_https_and_local_http_are_accepted(url):
    assert web_url_allowed(url)
    settings = study_settings_validate({"completion_url": url}, partial=True)
    assert settings == {"completion_url": url}


@pytest.mark.parametrize("url", REFUSED)
def test_other_schemes_and_plain_http_elsewhere_are_refused(url):
    assert not web_url_allowed(url)
    with pytest.raises(InvalidSetting) as caught:
        study_settings_validate({"completion_url": url}, partial=True)
    assert caught.value.field == "completion_url"
    assert str(caught.value).startswith(f"completion_url {url!r} ")


def test_configure_study_refuses_a_javascript_url():
    study = LiveStudyFactory(completion_url="https://example.org/done")
    with pytest.raises(CommandError, match=r"completion_url 'javascript:alert\(1\)//' is not an"):
        call_command("configure_study", study.slug, "--completion-url", "javascript:alert(1)//")
    study.refresh_from_db()
    assert study.completion_url == "https://example.org/done"


@pytest.mark.parametrize("url", ["javascript:alert(1)//", "http://example.com/done"])
def test_the_researcher_api_refuses_it_naming_the_setting(url):
    owner = get_user_model().objects.create_user("ada", password="pw")
    study = LiveStudyFactory(owner=owner, completion_url="https://example.org/done")
    api = APIClient()
    api.force_authenticate(owner)
    response = api.patch(f"/api/v1/studies/{study.slug}", {"completion_url": url}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == "completion_url"
    assert url in error["message"]
    study.refresh_from_db()
    assert study.completion_url == "https://example.org/done"


def test_a_stored_url_that_breaks_the_rule_is_never_sent_to_the_annotator(caplog):
    """A row written before the rule (or by hand) stays readable; the session's answer
    leaves its completion URL out and the log says why."""
    study = LiveStudyFactory(slug="legacy", trials_per_session=1)
    make_pairs(study, 1, votes=1)
    token = services.session_open(study_slug=study.slug, participant_id="p1").session.token
    study.completion_url = "javascript:alert(1)//"
    study.save(update_fields=["completion_url"])  # the model's save does not validate
    session = services.session_get(token=token)
    session.completed_at = timezone.now()
    session.n_done = 1  # at its quota: the code is earned
    session.save(update_fields=["completed_at", "n_done"])
    with caplog.at_level(logging.WARNING, logger="annotation.serializers"):
        body = APIClient().get(f"/api/v1/sessions/{token}").json()
    assert body["completed"] is True
    assert body["completion_code"] == study.completion_code
    assert body["completion_url"] is None
    assert [r.getMessage() for r in caplog.records if r.name == "annotation.serializers"] == [
        "study legacy: completion_url 'javascript:alert(1)//' withheld (https only)"
    ]
